"""Service configuration from the environment, checked once at start-up.

Every setting has an embedded default for the local stack (SQLite files under ``ACH_DATA_DIR``
and a broker on 127.0.0.1:9092), so a fresh clone runs with no configuration at all. A bad value
fails fast with one message that names the variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable and what is wrong."""


# Fixed, documented default ports of the local stack (README: "Services"), all below Linux's
# ephemeral range (32768-60999), so an outgoing connection can never hold a port a service needs.
DEFAULT_PORTS: dict[str, tuple[int, int]] = {
    # service: (gRPC, Prometheus metrics)
    "screening": (7051, 9464),
    "referrals": (7052, 9465),
    "directory": (7053, 9466),
    "measurement": (7054, 9467),
    "funding": (7055, 9468),
    "notifications": (7056, 9469),
    "identity": (7057, 9470),
}


def service_principal(service: str) -> str:
    """The Kafka principal (SCRAM user) a service connects as."""
    return f"ach-{service}"


# Names no partner may take: a partner's SCRAM credential would replace the service's (or the
# broker admin's), and its ACLs would add to the service's.
RESERVED_PRINCIPALS = frozenset({*(service_principal(s) for s in DEFAULT_PORTS), "ach-topic-admin", "admin"})


# Services that also answer plain HTTP (the directory's HSDS API), by default on this port.
DEFAULT_HTTP_PORTS: dict[str, int] = {"directory": 8080}

# Unless TOKEN_PORT / HEALTH_PORT say otherwise, a service's bearer-token port is its gRPC port + 100
# and its health-only port its gRPC port + 1000.
TOKEN_PORT_OFFSET = 100
HEALTH_PORT_OFFSET = 1000


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def data_dir() -> Path:
    return Path(os.environ.get("ACH_DATA_DIR", repo_root() / ".data"))


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise ConfigError(f"{name}={raw!r} is outside 0-65535")
    return value


def database_url(service: str) -> str:
    """The service's own database: DATABASE_URL (or <SERVICE>_DATABASE_URL), else a SQLite file."""
    url = os.environ.get(f"{service.upper()}_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not url:
        return f"sqlite:///{data_dir() / f'{service}.db'}"
    scheme = urlsplit(url).scheme.split("+")[0]
    if scheme not in {"sqlite", "postgresql", "postgres"}:
        raise ConfigError(
            f"DATABASE_URL scheme {scheme or '(none)'!r} is not supported: use postgresql://... or sqlite:///..."
        )
    return url


def kafka_bootstrap_servers() -> str:
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092").strip()
    for server in servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"KAFKA_BOOTSTRAP_SERVERS entry {server!r} is not host:port")
    return servers


@dataclass(frozen=True)
class ServiceSettings:
    service: str
    database_url: str
    kafka_bootstrap_servers: str
    grpc_port: int
    metrics_port: int
    # TLS with bearer tokens, for partners that cannot do mTLS (the gRPC port requires a client cert).
    token_port: int
    # Plaintext, health checks only: kubelet gRPC probes cannot speak TLS.
    health_port: int
    # How long start-up waits for the broker and the database before giving up.
    connect_timeout_s: float
    # Where the local stack finds the other services' gRPC APIs (host:port).
    peers: dict[str, str]
    # How soon a consumer subscribed by pattern sees a new matching topic (a partner's inbound
    # topic provisioned while the gateway runs): Kafka metadata refresh interval.
    topic_discovery_s: float = 30.0
    http_port: int = 0  # 0: no HTTP listener

    @classmethod
    def from_env(cls, service: str) -> ServiceSettings:
        if service not in DEFAULT_PORTS:
            raise ConfigError(f"unknown service {service!r}")
        grpc_default, metrics_default = DEFAULT_PORTS[service]
        timeout = _seconds("ACH_CONNECT_TIMEOUT_S", "20")
        discovery = _seconds("ACH_TOPIC_DISCOVERY_S", "30")
        peers = {
            name: os.environ.get(f"{name.upper()}_GRPC_ADDR", f"127.0.0.1:{ports[0]}")
            for name, ports in DEFAULT_PORTS.items()
        }
        ports = {
            "GRPC_PORT": _port("GRPC_PORT", grpc_default),
            "TOKEN_PORT": _port("TOKEN_PORT", grpc_default + TOKEN_PORT_OFFSET),
            "HEALTH_PORT": _port("HEALTH_PORT", grpc_default + HEALTH_PORT_OFFSET),
            "METRICS_PORT": _port("METRICS_PORT", metrics_default),
            "HTTP_PORT": _port("HTTP_PORT", DEFAULT_HTTP_PORTS.get(service, 0)),
        }
        # One port, one listener: two on the same port would share its connections between them.
        seen: dict[int, str] = {}
        for name, number in ports.items():
            if number and number in seen:
                raise ConfigError(f"{name} and {seen[number]} are both {number}: each needs its own port")
            seen[number] = name
        return cls(
            service=service,
            database_url=database_url(service),
            kafka_bootstrap_servers=kafka_bootstrap_servers(),
            grpc_port=ports["GRPC_PORT"],
            token_port=ports["TOKEN_PORT"],
            health_port=ports["HEALTH_PORT"],
            metrics_port=ports["METRICS_PORT"],
            http_port=ports["HTTP_PORT"],
            connect_timeout_s=timeout,
            peers=peers,
            topic_discovery_s=discovery,
        )


def _seconds(name: str, default: str) -> float:
    raw = os.environ.get(name, default)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be more than 0 seconds")
    return value
