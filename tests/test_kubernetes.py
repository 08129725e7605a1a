"""The chart and the platform's own use of the Kubernetes API, against a real API server (etcd and
kube-apiserver on loopback, tests/kube_cluster.py): the rendered chart for the local and the
production values is applied with a server-side dry run and then for real, and the replicas of a
service elect one leader through the Lease the chart lets them use."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import ROOT, eventually
from tests.kube_cluster import KubeCluster, control_plane_binaries, k8s, running_cluster

CHART = ROOT / "deploy" / "helm" / "ach-platform"
HELM = ROOT / "scripts" / "helm.sh"
RELEASE = "ach"
SERVICES = ("screening", "referrals", "directory", "measurement", "funding", "notifications", "identity")


@dataclass(frozen=True)
class Installed:
    namespace: str
    objects: list[dict[str, Any]]


def render(namespace: str, *values: Path, sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    args = [str(HELM), "template", RELEASE, str(CHART), "--namespace", namespace]
    for path in values:
        args += ["-f", str(path)]
    for assignment in sets:
        args += ["--set", assignment]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def apply_all(cluster: KubeCluster, namespace: str, objects: list[dict[str, Any]], dry_run: bool) -> None:
    dynamic: Any = importlib.import_module("kubernetes.dynamic")
    client = dynamic.DynamicClient(cluster.api_client())
    for obj in objects:
        resource = client.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        client.server_side_apply(
            resource,
            body=obj,
            namespace=namespace if resource.namespaced else None,
            field_manager="ach-tests",
            force_conflicts=True,
            dry_run="All" if dry_run else None,
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    with running_cluster(tmp_path_factory.mktemp("kube")) as running:
        yield running


@pytest.fixture(scope="module")
def installed(cluster: KubeCluster) -> dict[str, Installed]:
    """The chart as `make run`'s laptop cluster would have it (values-local.yaml) in ach-dev, and as a
    county's production release (examples/production.yaml, with the Prometheus Operator's CRDs) in
    ach-prod: each applied first as a server-side dry run (nothing stored), then for real."""

    api = cluster.api_client()
    _, etcd = control_plane_binaries()
    crds = [yaml.safe_load(path.read_text()) for path in sorted((etcd.parent / "crds").glob("*.yaml"))]
    apply_all(cluster, "", crds, dry_run=False)
    extensions = k8s.ApiextensionsV1Api(api)

    def established() -> bool | None:
        for crd in crds:
            got = extensions.read_custom_resource_definition(crd["metadata"]["name"])
            if not any(c.type == "Established" and c.status == "True" for c in got.status.conditions or []):
                return None
        return True

    eventually(established, 30, "the Prometheus Operator's CRDs established")
    releases = {
        "dev": ("ach-dev", render("ach-dev", CHART / "values-local.yaml")),
        "prod": (
            "ach-prod",
            render(
                "ach-prod",
                CHART / "examples" / "production.yaml",
                sets=("services.screening.image=registry.example/ach-screening@sha256:" + "0" * 64,),
            ),
        ),
    }
    core = k8s.CoreV1Api(api)
    done = {}
    for name, (namespace, objects) in releases.items():
        core.create_namespace({"metadata": {"name": namespace}})
        apply_all(cluster, namespace, objects, dry_run=True)
        stored = k8s.AppsV1Api(api).list_namespaced_deployment(namespace).items
        assert not stored, "a dry run stored something"
        apply_all(cluster, namespace, objects, dry_run=False)
        done[name] = Installed(namespace, objects)
    return done


def test_the_chart_applies_to_a_real_api_server_for_local_and_production_values(
    cluster: KubeCluster, installed: dict[str, Installed]
) -> None:

    api = cluster.api_client()
    apps, core, rbac = k8s.AppsV1Api(api), k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
    for release in installed.values():
        kinds = {(o["kind"], o["metadata"]["name"]) for o in release.objects}
        stored = {d.metadata.name: d for d in apps.list_namespaced_deployment(release.namespace).items}
        assert set(stored) == {n for k, n in kinds if k == "Deployment"}
        accounts = {a.metadata.name for a in core.list_namespaced_service_account(release.namespace).items}
        for service in SERVICES:
            assert stored[f"{RELEASE}-{service}"].spec.template.spec.service_account_name in accounts
        roles = {r.metadata.name for r in rbac.list_namespaced_role(release.namespace).items}
        assert f"{RELEASE}-referrals-leases" in roles
        jobs = {n for k, n in kinds if k == "Job"}
        assert any(n.startswith(f"{RELEASE}-topics-") for n in jobs), jobs
    # Production: replicas are the autoscalers' (no controller runs here to apply them); a network
    # policy per service.
    autoscalers = {
        h.metadata.name: h
        for h in k8s.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler("ach-prod").items
    }
    assert set(autoscalers) == {f"{RELEASE}-{s}" for s in SERVICES}
    assert autoscalers[f"{RELEASE}-screening"].spec.min_replicas == 3
    policies = k8s.NetworkingV1Api(api).list_namespaced_network_policy("ach-prod").items
    assert {p.metadata.name for p in policies} == {f"{RELEASE}-{s}" for s in SERVICES}
    assert not k8s.NetworkingV1Api(api).list_namespaced_network_policy("ach-dev").items
    dev = {d.metadata.name: d for d in apps.list_namespaced_deployment("ach-dev").items}
    assert {d.spec.replicas for d in dev.values()} == {1}
    custom = k8s.CustomObjectsApi(api)
    rules = custom.list_namespaced_custom_object("monitoring.coreos.com", "v1", "ach-prod", "prometheusrules")
    assert rules["items"], "the production values' PrometheusRule was not stored"


def test_the_api_server_refuses_a_manifest_the_schema_does_not_know(
    cluster: KubeCluster, installed: dict[str, Installed]
) -> None:
    """What makes the apply above a check: a misspelt field is refused by the server, not dropped."""
    from kubernetes.client.exceptions import ApiException

    deployment = next(o for o in installed["dev"].objects if o["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    with pytest.raises(ApiException) as refused:
        apply_all(cluster, "ach-dev", [broken], dry_run=True)
    assert "imagePullPolice" in str(refused.value.body)


def service_account_kubeconfig(cluster: KubeCluster, namespace: str, account: str) -> Path:
    """A kubeconfig holding a token the API server issued for the chart's service account (what a
    pod of that Deployment would be given)."""

    token = (
        k8s.CoreV1Api(cluster.api_client())
        .create_namespaced_service_account_token(account, namespace, {"spec": {"expirationSeconds": 3600}})
        .status.token
    )
    return cluster.kubeconfig_for_token(token, f"{namespace}-{account}")


class Candidate:
    LEASE_S, RENEW_S, RETRY_S = 4, 3, 0.25

    def __init__(self, name: str, kubeconfig: Path, namespace: str, lease: str, logs: Path) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "ACH_LEADER_ELECTION": "kubernetes",
            "POD_NAME": name,
            "POD_NAMESPACE": namespace,
            "ACH_LEASE_NAME": lease,
            "ACH_LEASE_DURATION_S": str(self.LEASE_S),
            "ACH_LEASE_RENEW_DEADLINE_S": str(self.RENEW_S),
            "ACH_LEASE_RETRY_S": str(self.RETRY_S),
            "PYTHONPATH": str(ROOT),
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.lease_candidate"], stdout=out, stderr=subprocess.STDOUT, env=env
            )
        eventually(lambda: "started" in self.log.read_text() or None, 30, f"{name} started")

    @property
    def says_leading(self) -> bool:
        lines = [line for line in self.log.read_text().splitlines() if line in ("leading", "following")]
        return bool(lines) and lines[-1] == "leading"

    def stop(self, sig: int) -> None:
        self.process.send_signal(sig)
        self.process.wait(15)


def holder(cluster: KubeCluster, namespace: str, lease: str) -> str:

    got = k8s.CoordinationV1Api(cluster.api_client()).read_namespaced_lease(lease, namespace)
    return got.spec.holder_identity or ""


def test_one_replica_leads_and_hands_over_when_stopped_or_killed(
    cluster: KubeCluster, installed: dict[str, Installed], tmp_path: Path
) -> None:
    """Replicas of referrals compete for their Lease as the chart's service account: exactly one
    leads; a graceful stop hands over at the others' next try, a killed leader after its lease ran out."""
    namespace, lease = "ach-prod", f"{RELEASE}-referrals"
    kubeconfig = service_account_kubeconfig(cluster, namespace, f"{RELEASE}-referrals")
    candidates: list[Candidate] = []
    try:
        a = Candidate("referrals-a", kubeconfig, namespace, lease, tmp_path)
        candidates.append(a)
        eventually(lambda: holder(cluster, namespace, lease) == "referrals-a" or None, 20, "a leads")
        b = Candidate("referrals-b", kubeconfig, namespace, lease, tmp_path)
        candidates.append(b)
        time.sleep(Candidate.LEASE_S / 2)
        assert holder(cluster, namespace, lease) == "referrals-a"
        assert a.says_leading and not b.says_leading, "two leaders at once"

        # A graceful stop (SIGTERM, as at a rolling update) releases the lease: b takes it at its
        # next try, long before the lease would have run out.
        stopped = time.monotonic()
        a.stop(signal.SIGTERM)
        assert "stopped" in a.log.read_text()
        eventually(lambda: holder(cluster, namespace, lease) == "referrals-b" or None, 10, "b leads")
        handed_over = time.monotonic() - stopped
        assert handed_over < Candidate.LEASE_S / 2, f"graceful hand-over took {handed_over:.1f} s"
        eventually(lambda: b.says_leading or None, 5, "b says it leads")

        # A killed leader (SIGKILL: no release) keeps the lease until it runs out; then c takes it.
        c = Candidate("referrals-c", kubeconfig, namespace, lease, tmp_path)
        candidates.append(c)
        time.sleep(1)
        assert not c.says_leading
        killed = time.monotonic()
        b.stop(signal.SIGKILL)
        eventually(lambda: holder(cluster, namespace, lease) == "referrals-c" or None, 15, "c leads")
        taken_over = time.monotonic() - killed
        lease_s, retry_s = Candidate.LEASE_S, Candidate.RETRY_S
        assert taken_over >= lease_s - 3 * retry_s, f"took a live lease ({taken_over:.1f} s)"
        assert taken_over <= lease_s + 4 * retry_s, f"hand-over took {taken_over:.1f} s"
        eventually(lambda: c.says_leading or None, 5, "c says it leads")
    finally:
        for candidate in candidates:
            if candidate.process.poll() is None:
                candidate.stop(signal.SIGKILL)


def test_a_service_account_reaches_only_its_own_lease(
    cluster: KubeCluster, installed: dict[str, Installed]
) -> None:
    """The chart's Role names the service's own Lease: referrals cannot take identity's (and so stop
    its sweeps), nor read a Secret."""
    from kubernetes.client.exceptions import ApiException

    kubeconfig = service_account_kubeconfig(cluster, "ach-prod", f"{RELEASE}-referrals")
    api = cluster.api_client(kubeconfig)
    leases = k8s.CoordinationV1Api(api)
    body = {
        "metadata": {"name": f"{RELEASE}-identity"},
        "spec": {"holderIdentity": "referrals-x", "leaseDurationSeconds": 15},
    }
    k8s.CoordinationV1Api(cluster.api_client()).create_namespaced_lease("ach-prod", body)
    attempts: list[Callable[[], Any]] = [
        lambda: leases.read_namespaced_lease(f"{RELEASE}-identity", "ach-prod"),
        lambda: leases.replace_namespaced_lease(f"{RELEASE}-identity", "ach-prod", body),
        lambda: k8s.CoreV1Api(api).list_namespaced_secret("ach-prod"),
        lambda: leases.read_namespaced_lease(f"{RELEASE}-referrals", "ach-dev"),
    ]
    for attempt in attempts:
        with pytest.raises(ApiException) as refused:
            attempt()
        assert refused.value.status == 403


ACHCTL = Path(sys.executable).parent / "achctl"


def achctl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ACHCTL), *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=120
    )


def one_line_error(done: subprocess.CompletedProcess[str], status: int, says: str) -> None:
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith("achctl: error: ") and says in done.stderr, done.stderr


def row(output: str, first: str) -> list[str]:
    """The cells of the table row that starts with ``first``."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.replace("┃", "│").split("│")]
        cells = [c for c in cells if c]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{output}")


def test_achctl_status_reads_deployments_lag_dead_letters_and_outboxes(
    cluster: KubeCluster,
    installed: dict[str, Installed],
    kafka_bootstrap: str,
    kafka_namespace: str,
    tmp_path: Path,
) -> None:
    """What county IT sees of a release: ready replicas and restarts as the API server has them (the
    tests play the kubelet), each consumer group's lag, dead letters retained and the outbox backlog."""
    from ach_events import topic_plan
    from ach_events.topics import REFERRAL_EVENTS, dead_letter_topic, namespaced
    from kafka.consumer import KafkaConsumer
    from kafka.producer import KafkaProducer
    from kafka.structs import OffsetAndMetadata, TopicPartition

    namespace = installed["dev"].namespace
    api = cluster.api_client()
    apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
    topic_plan.apply(kafka_bootstrap)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ACH_KAFKA_NAMESPACE": kafka_namespace,
        "ACH_DATA_DIR": str(tmp_path / "data"),
    }
    # The referrals database, with one event committed two minutes ago and not yet published.
    migrated = subprocess.run(
        [str(Path(sys.executable).parent / "ach-referrals"), "migrate"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stderr
    import sqlite3

    database = next((tmp_path / "data").glob("referrals*.db"))
    with sqlite3.connect(database) as db:
        db.execute(
            "INSERT INTO outbox_event (event_id, topic, key, event_type, headers, payload, created_at)"
            " VALUES ('e-1', 't', 'k', 'x', '[]', x'00', datetime('now', '-120 seconds'))"
        )

    # Two referral events the measurement group has not handled; one referrals dead letter.
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for n in range(2):
        producer.send(REFERRAL_EVENTS.physical_name, key=b"r", value=b"x%d" % n, partition=0).get(10)
    producer.close()
    group = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=namespaced("measurement"))
    group.commit({TopicPartition(REFERRAL_EVENTS.physical_name, 0): OffsetAndMetadata(0, "", -1)})
    group.close()
    dead = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    dead.send(dead_letter_topic("referrals").physical_name, key=b"r", value=b"y").get(10)
    dead.close()

    kubeconfig = str(cluster.kubeconfig)
    done = achctl("status", "-n", namespace, "--kubeconfig", kubeconfig, env=env)
    assert done.returncode == 1, done.stderr  # nothing is ready: no kubelet has started anything
    assert "8 Deployment(s) not ready" in done.stderr  # the seven services and the embedded broker
    for service in SERVICES:
        assert row(done.stdout, service)[1:] == ["0/1 (not ready)", "0", "0"], done.stdout

    # Play the kubelet: every Deployment ready; the referrals pod restarted three times.
    for deployment in apps.list_namespaced_deployment(namespace).items:
        desired = deployment.spec.replicas or 1
        status = {"replicas": desired, "readyReplicas": desired, "updatedReplicas": desired}
        apps.patch_namespaced_deployment_status(deployment.metadata.name, namespace, {"status": status})
    labels = {"app.kubernetes.io/part-of": "ach-platform", "app.kubernetes.io/name": "referrals"}
    pod = {
        "metadata": {"name": "ach-referrals-abc", "labels": labels},
        "spec": {
            "serviceAccountName": f"{RELEASE}-referrals",  # no controller makes a "default" one here
            "automountServiceAccountToken": False,
            "containers": [{"name": "referrals", "image": "ach-referrals:dev"}],
        },
    }
    core.create_namespaced_pod(namespace, pod)
    container = {
        "name": "referrals",
        "image": "ach-referrals:dev",
        "imageID": "",
        "ready": True,
        "restartCount": 3,
        "state": {"running": {"startedAt": "2026-12-01T00:00:00Z"}},
    }
    core.patch_namespaced_pod_status(
        "ach-referrals-abc", namespace, {"status": {"containerStatuses": [container]}}
    )

    done = achctl("status", "-n", namespace, "--kubeconfig", kubeconfig, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    deployments, events = done.stdout.split("Events", 1)
    assert row(deployments, "referrals")[1:] == ["1/1", "1", "3"], deployments
    assert row(deployments, "screening")[1:] == ["1/1", "1", "0"], deployments
    assert row(events, "measurement")[1] == "2", events  # lag: two events not handled
    assert row(events, "referrals")[2] == "1", events  # one dead letter
    outbox = row(events, "referrals")[3:]
    assert outbox[0] == "1" and outbox[2] == "0", events
    assert 110 <= int(outbox[1].removesuffix(" s")) <= 200, events
    assert row(events, "screening")[3].startswith("database unreadable"), events

    # What it cannot reach: one line and a non-zero exit.
    broken = tmp_path / "broken-kubeconfig"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: [}\n")
    one_line_error(achctl("status", "--kubeconfig", str(broken), env=env), 2, "kubeconfig")
    one_line_error(
        achctl("status", "--kubeconfig", str(tmp_path / "absent"), env=env), 2, "kubeconfig not found"
    )
    elsewhere = yaml.safe_load(cluster.kubeconfig.read_text())
    elsewhere["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    moved = tmp_path / "moved-kubeconfig"
    moved.write_text(yaml.safe_dump(elsewhere))
    one_line_error(achctl("status", "--kubeconfig", str(moved), env=env), 2, "Kubernetes API unreachable")
    stranger = cluster.kubeconfig_for_token("not-a-token", "stranger")
    one_line_error(achctl("status", "--kubeconfig", str(stranger), env=env), 2, "refused us (401")
    unreachable = {**env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    one_line_error(
        achctl("status", "-n", namespace, "--kubeconfig", kubeconfig, env=unreachable),
        2,
        "Kafka broker unreachable",
    )
