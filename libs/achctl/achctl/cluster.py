"""What achctl reads from the Kubernetes API: the platform's Deployments and their pods' restarts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

PART_OF = "app.kubernetes.io/part-of=ach-platform"
REQUEST_TIMEOUT = (5, 15)  # connect, read (seconds): an unreachable cluster fails fast


class ClusterUnavailable(Exception):
    """The cluster could not be reached or refused us: the one line achctl prints."""


@dataclass(frozen=True)
class DeploymentHealth:
    service: str
    name: str
    desired: int
    ready: int
    updated: int
    restarts: int

    @property
    def healthy(self) -> bool:
        return self.ready >= self.desired > 0 or self.desired == 0


def api_client(kubeconfig: Path | None, context: str | None) -> Any:
    """A client for the kubeconfig given (else $KUBECONFIG or ~/.kube/config), or in-cluster."""
    from kubernetes import config

    if kubeconfig is not None and not kubeconfig.is_file():
        raise ClusterUnavailable(f"kubeconfig not found: {kubeconfig}")
    try:
        if kubeconfig is None and context is None:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
                from kubernetes import client

                return client.ApiClient()
            except config.ConfigException:
                pass
        return config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig) if kubeconfig else None, context=context
        )
    except FileNotFoundError as exc:
        raise ClusterUnavailable(f"kubeconfig not found: {exc.filename}") from None
    except Exception as exc:  # the client's ways of refusing a kubeconfig: YAML errors, ConfigException...
        where = str(kubeconfig) if kubeconfig else "the default kubeconfig"
        raise ClusterUnavailable(f"kubeconfig {where} is not usable: {_first_line(exc)}") from None


def deployment_health(client: Any, namespace: str) -> list[DeploymentHealth]:
    from kubernetes import client as k8s

    deployments = _call(
        k8s.AppsV1Api(client).list_namespaced_deployment,
        namespace,
        label_selector=PART_OF,
        _request_timeout=REQUEST_TIMEOUT,
    )
    pods = _call(
        k8s.CoreV1Api(client).list_namespaced_pod,
        namespace,
        label_selector=PART_OF,
        _request_timeout=REQUEST_TIMEOUT,
    )
    restarts: dict[str, int] = {}
    for pod in pods.items:
        service = (pod.metadata.labels or {}).get("app.kubernetes.io/name", "")
        statuses = (pod.status.container_statuses or []) if pod.status else []
        restarts[service] = restarts.get(service, 0) + sum(s.restart_count or 0 for s in statuses)
    found = []
    for item in deployments.items:
        service = (item.metadata.labels or {}).get("app.kubernetes.io/name", item.metadata.name)
        status = item.status
        found.append(
            DeploymentHealth(
                service=service,
                name=item.metadata.name,
                desired=item.spec.replicas if item.spec.replicas is not None else 1,
                ready=(status.ready_replicas or 0) if status else 0,
                updated=(status.updated_replicas or 0) if status else 0,
                restarts=restarts.get(service, 0),
            )
        )
    return sorted(found, key=lambda d: d.service)


def _call(method: Any, *args: Any, **kwargs: Any) -> Any:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return method(*args, **kwargs)
    except ApiException as exc:
        if exc.status in (401, 403):
            raise ClusterUnavailable(
                f"the cluster refused us ({exc.status} {exc.reason}): check the credentials"
            ) from None
        raise ClusterUnavailable(f"the cluster answered {exc.status} {exc.reason}") from None
    except (HTTPError, OSError) as exc:
        host = getattr(getattr(method, "__self__", None), "api_client", None)
        server = host.configuration.host if host is not None else "the cluster"
        raise ClusterUnavailable(f"Kubernetes API unreachable at {server} ({type(exc).__name__})") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
