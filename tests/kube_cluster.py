"""A real Kubernetes control plane for the tests: etcd and kube-apiserver (built from the Go module
proxy by scripts/kube/build.sh) on loopback, with a generated CA, an admin client certificate
(system:masters), a service-account signing key and an admin kubeconfig. No kubelet and no
controllers: objects are stored and validated, nothing runs; tests set status themselves."""

from __future__ import annotations

import datetime as dt
import importlib
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.harness import ROOT, free_port

BUILD = ROOT / "scripts" / "kube" / "build.sh"
# The kubernetes client's API classes, untyped: tests read what they just wrote, and its models
# make every field Optional.
k8s: Any = importlib.import_module("kubernetes.client")


@dataclass(frozen=True)
class KubeCluster:
    server: str
    kubeconfig: Path
    ca_file: Path
    directory: Path

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """A client as the admin (or as whoever ``kubeconfig`` names)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))  # type: ignore[no-untyped-call]

    def kubeconfig_for_token(self, token: str, name: str) -> Path:
        """A kubeconfig that authenticates with a bearer token (a service account's)."""
        path = self.directory / f"kubeconfig-{name}"
        path.write_text(yaml.safe_dump(_kubeconfig(self.server, self.ca_file, {"token": token})))
        return path


def control_plane_binaries() -> tuple[Path, Path]:
    """(kube-apiserver, etcd), built on first use (scripts/kube/build.sh, cached under .cache/)."""
    done = subprocess.run([str(BUILD)], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/kube/build.sh failed: {done.stderr.strip()[-2000:]}")
    binaries = Path(done.stdout.strip().splitlines()[-1])
    return binaries / "kube-apiserver", binaries / "etcd"


@contextmanager
def running_cluster(directory: Path) -> Iterator[KubeCluster]:
    apiserver, etcd = control_plane_binaries()
    directory.mkdir(parents=True, exist_ok=True)
    pki = _pki(directory)
    etcd_client, etcd_peer, secure_port = free_port(), free_port(), free_port()
    logs = directory / "logs"
    logs.mkdir(exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(
            _start(
                [
                    str(etcd),
                    "--data-dir", str(directory / "etcd"),
                    "--listen-client-urls", f"http://127.0.0.1:{etcd_client}",
                    "--advertise-client-urls", f"http://127.0.0.1:{etcd_client}",
                    "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                    "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                    "--initial-cluster", f"default=http://127.0.0.1:{etcd_peer}",
                    "--unsafe-no-fsync",
                    "--log-level", "warn",
                ],
                logs / "etcd.log",
            )
        )  # fmt: skip
        processes.append(
            _start(
                [
                    str(apiserver),
                    "--etcd-servers", f"http://127.0.0.1:{etcd_client}",
                    "--bind-address", "127.0.0.1",
                    "--advertise-address", "127.0.0.1",
                    "--secure-port", str(secure_port),
                    "--cert-dir", str(directory / "serving"),
                    "--client-ca-file", str(pki["ca"]),
                    "--authorization-mode", "RBAC",
                    "--service-account-issuer", "https://kubernetes.default.svc",
                    "--service-account-key-file", str(pki["sa.pub"]),
                    "--service-account-signing-key-file", str(pki["sa.key"]),
                    "--api-audiences", "https://kubernetes.default.svc",
                    "--service-cluster-ip-range", "10.96.0.0/16",
                    "--enable-priority-and-fairness=false",
                    "--endpoint-reconciler-type", "none",
                    "--v", "1",
                ],
                logs / "kube-apiserver.log",
            )
        )  # fmt: skip
        server = f"https://127.0.0.1:{secure_port}"
        kubeconfig = directory / "kubeconfig"
        admin = {"client-certificate": str(pki["admin.crt"]), "client-key": str(pki["admin.key"])}
        serving_ca = directory / "serving" / "apiserver.crt"
        cluster = KubeCluster(server, kubeconfig, serving_ca, directory)
        _wait_ready(cluster, admin, processes, logs)
        yield cluster
    finally:
        for process in processes:  # a throwaway cluster: no graceful shutdown to wait for
            process.kill()
            process.wait()


def _wait_ready(
    cluster: KubeCluster, admin: dict[str, str], processes: list[subprocess.Popen[bytes]], logs: Path
) -> None:
    import ssl
    import urllib.request

    deadline = time.monotonic() + 90
    while True:
        for process, log in zip(processes, ("etcd.log", "kube-apiserver.log"), strict=True):
            if process.poll() is not None:
                raise RuntimeError(f"{log[:-4]} exited: {(logs / log).read_text()[-3000:]}")
        # The serving certificate is self-signed at start-up: the kubeconfig trusts it once it exists.
        if cluster.ca_file.exists() and not cluster.kubeconfig.exists():
            cluster.kubeconfig.write_text(yaml.safe_dump(_kubeconfig(cluster.server, cluster.ca_file, admin)))
        if cluster.kubeconfig.exists():
            context = ssl.create_default_context(cafile=str(cluster.ca_file))
            context.load_cert_chain(admin["client-certificate"], admin["client-key"])
            try:
                with urllib.request.urlopen(f"{cluster.server}/readyz", context=context, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
        if time.monotonic() > deadline:
            tail = (logs / "kube-apiserver.log").read_text()[-3000:]
            raise RuntimeError(f"kube-apiserver not ready: {tail}")
        time.sleep(0.3)


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "GOGC": "200"})


def _kubeconfig(server: str, ca_file: Path, user: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "user"}}],
        "current-context": "test",
    }


def _pki(directory: Path) -> dict[str, Path]:
    """A client CA with an admin certificate in system:masters, and the service-account key pair."""
    pki = directory / "pki"
    pki.mkdir(exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ach-test-cluster-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "ach-test-admin"),
                ]
            )
        )
        .issuer_name(ca_name)
        .public_key(admin_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .sign(ca_key, hashes.SHA256())
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    files = {
        "ca": (pki / "ca.crt", ca.public_bytes(serialization.Encoding.PEM)),
        "admin.crt": (pki / "admin.crt", admin.public_bytes(serialization.Encoding.PEM)),
        "admin.key": (pki / "admin.key", _private(admin_key)),
        "sa.key": (pki / "sa.key", _private(sa_key)),
        "sa.pub": (
            pki / "sa.pub",
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        ),
    }
    for path, content in files.values():
        path.write_bytes(content)
    return {name: path for name, (path, _) in files.items()}


def _private(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
