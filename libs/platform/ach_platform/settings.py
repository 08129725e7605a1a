"""Service configuration from the environment, checked once at start-up.

Every service's settings are a class over ``Settings`` (pydantic-settings): one typed field per
variable, its default, its check. Every setting has an embedded default for the local stack (SQLite
files under ``ACH_DATA_DIR`` and a broker on 127.0.0.1:9092), so a fresh clone runs with no
configuration at all. A bad value fails fast with one message that names the variable. Nothing
outside the settings modules reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, model_validator
from pydantic_core import PydanticUseDefault
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable and what is wrong."""


_given_environment: ContextVar[Mapping[str, str] | None] = ContextVar("given_environment", default=None)


class _GivenEnvironment(EnvSettingsSource):
    """An environment handed over by the caller (a test, a tool checking a Secret's contents),
    read instead of the process's."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


class Settings(BaseSettings):
    """The base of every service's settings: frozen, unknown variables ignored, a checked field's
    empty variable the same as an unset one, and ``load()`` turning the first bad value into a
    ConfigError that names its variable (never quoting a secret)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        given = _given_environment.get()
        return (init_settings, env_settings if given is None else _GivenEnvironment(settings_cls, given))

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **values: Any) -> Self:
        """From the process's environment (or ``environ``); ``values`` win over both."""
        token = _given_environment.set(environ)
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(cls._explain(exc)) from None
        finally:
            _given_environment.reset(token)

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable a field is read from."""
        info = cls.model_fields.get(field)
        if info is not None and isinstance(info.validation_alias, str):
            return info.validation_alias.upper()
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()

    @classmethod
    def _explain(cls, exc: ValidationError) -> str:
        problems = []
        for error in exc.errors(include_url=False):
            field = str(error["loc"][0]) if error["loc"] else ""
            name = cls.variable(field) if field in cls.model_fields else field.upper()
            info = cls.model_fields.get(field)
            secret = info is not None and info.annotation in (SecretStr, SecretStr | None)
            msg = str(error["msg"]).removeprefix("Value error, ")
            shown = "" if secret else f"={str(error['input'])[:60]!r}"
            if msg.startswith(("is ", "must ", "needs ")):
                problems.append(f"{name}{shown} {msg}")
            else:
                problems.append(f"{name}{shown}: {msg[:1].lower()}{msg[1:]}")
        return "; ".join(problems)


def _checked(check: Callable[[str], Any]) -> Callable[[Any], Any]:
    def validate(raw: Any) -> Any:
        if not isinstance(raw, str):
            return raw
        if not raw.strip():
            raise PydanticUseDefault()
        return check(raw.strip())

    return validate


def _port_number(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("is not a port number") from None
    if not 0 <= value <= 65535:
        raise ValueError("is outside 0-65535")
    return value


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("is not a number of seconds") from None
    if value <= 0:
        raise ValueError("must be more than 0 seconds")
    return value


def whole_number(low: int, high: int, unit: str = "") -> Callable[[str], int]:
    """A check for a whole number from low to high (of days, attempts, ...)."""
    what = f"a whole number{' of ' + unit if unit else ''} from {low} to {high}"

    def check(raw: str) -> int:
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise ValueError(f"must be {what}")
        return int(raw)

    return check


def at_least(low: float) -> Callable[[str], float]:
    def check(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("must be a number") from None
        if value < low:
            raise ValueError(f"must be at least {low:g}")
        return value

    return check


Port = Annotated[int, BeforeValidator(_checked(_port_number))]
Seconds = Annotated[float, BeforeValidator(_checked(_seconds))]


def time_zone_name(name: str) -> str:
    """An IANA time zone name: the network's calendar (ACH_TIME_ZONE)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("is not an IANA time zone name (e.g. America/Los_Angeles)") from None
    return name


NETWORK_TIME_ZONE = "America/Los_Angeles"


def checked(check: Callable[[str], Any]) -> BeforeValidator:
    """A field's own check of the variable's text (raises ValueError("must ...") / ("is ...")."""
    return BeforeValidator(_checked(check))


def environment() -> Mapping[str, str]:
    """The environment settings are being read from: the one handed to ``load``, else the process's."""
    given = _given_environment.get()
    return os.environ if given is None else given


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
# The chart's topics Job authenticates as this principal: the only one that creates topics.
TOPIC_PROVISIONER = "ach-topics"
RESERVED_PRINCIPALS = frozenset(
    {*(service_principal(s) for s in DEFAULT_PORTS), TOPIC_PROVISIONER, "ach-topic-admin", "admin"}
)


# Services that also answer plain HTTP (the directory's HSDS API, the public scorecard page, the SMS
# gateway's replies), by default on this port.
DEFAULT_HTTP_PORTS: dict[str, int] = {"directory": 8080, "measurement": 8081, "notifications": 8082}

# Unless TOKEN_PORT / HEALTH_PORT say otherwise, a service's bearer-token port is its gRPC port + 100
# and its health-only port its gRPC port + 1000.
TOKEN_PORT_OFFSET = 100
HEALTH_PORT_OFFSET = 1000


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def data_dir() -> Path:
    """ACH_DATA_DIR: where the local stack keeps its SQLite files, keys and certificates."""
    return Path(environment().get("ACH_DATA_DIR") or repo_root() / ".data")


def pki_dir() -> Path:
    """ACH_PKI_DIR: the development certificates (make certs), by default under ACH_DATA_DIR."""
    return Path(environment().get("ACH_PKI_DIR") or data_dir() / "pki")


def kafka_namespace() -> str:
    """ACH_KAFKA_NAMESPACE, read at each use: tests and tools switch namespaces within a process."""
    return os.environ.get("ACH_KAFKA_NAMESPACE", "")


def active_failpoint() -> str:
    """ACH_FAILPOINT: the place where a test makes the process die (never set in deployments)."""
    return os.environ.get("ACH_FAILPOINT", "")


def _bootstrap_servers(raw: str) -> str:
    for server in raw.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"KAFKA_BOOTSTRAP_SERVERS entry {server!r} is not host:port")
    return raw


def _database_url(service: str) -> str:
    env = environment()
    url = env.get(f"{service.upper()}_DATABASE_URL") or env.get("DATABASE_URL")
    if not url:
        return f"sqlite:///{data_dir() / f'{service}.db'}"
    scheme = urlsplit(url).scheme.split("+")[0]
    if scheme not in {"sqlite", "postgresql", "postgres"}:
        raise ConfigError(
            f"DATABASE_URL scheme {scheme or '(none)'!r} is not supported: use postgresql://... or sqlite:///..."
        )
    return url


class BrokerSettings(Settings):
    """Where the Kafka brokers are (host:port, comma-separated)."""

    kafka_bootstrap_servers: Annotated[str, checked(_bootstrap_servers)] = "127.0.0.1:9092"


def kafka_bootstrap_servers() -> str:
    return BrokerSettings.load().kafka_bootstrap_servers


class ServiceSettings(BrokerSettings):
    """What the service host needs of every service: its database, the broker, its ports."""

    service: str
    # DATABASE_URL (or <SERVICE>_DATABASE_URL), else a SQLite file under ACH_DATA_DIR.
    database_url: str = Field("", validation_alias="ACH_DATABASE_URL_RESOLVED")
    grpc_port: Port = 0
    metrics_port: Port = 0
    # TLS with bearer tokens, for partners that cannot do mTLS (the gRPC port requires a client cert).
    token_port: Port = 0
    # Plaintext, health checks only: kubelet gRPC probes cannot speak TLS.
    health_port: Port = 0
    http_port: Port = 0  # 0: no HTTP listener
    # How long start-up waits for the broker and the database before giving up.
    connect_timeout_s: Seconds = Field(20.0, validation_alias="ACH_CONNECT_TIMEOUT_S")
    # How soon a consumer subscribed by pattern sees a new matching topic (a partner's inbound
    # topic provisioned while the gateway runs): Kafka metadata refresh interval.
    topic_discovery_s: Seconds = Field(30.0, validation_alias="ACH_TOPIC_DISCOVERY_S")
    # Where the local stack finds the other services' gRPC APIs (<NAME>_GRPC_ADDR, host:port).
    peers: dict[str, str] = Field(default_factory=dict, validation_alias="ACH_PEERS_RESOLVED")

    _PORTS: ClassVar[tuple[str, ...]] = (
        "grpc_port",
        "token_port",
        "health_port",
        "metrics_port",
        "http_port",
    )

    @model_validator(mode="before")
    @classmethod
    def _service_defaults(cls, data: Any) -> Any:
        service = data.get("service")
        if service not in DEFAULT_PORTS:
            raise ConfigError(f"unknown service {service!r}")
        grpc_default, metrics_default = DEFAULT_PORTS[service]
        grpc_port = _port_or(data.get("grpc_port"), "GRPC_PORT", grpc_default)
        env = environment()
        return {
            **data,
            "ACH_DATABASE_URL_RESOLVED": _database_url(service),
            "grpc_port": grpc_port,
            "token_port": data.get("token_port") or grpc_default + TOKEN_PORT_OFFSET,
            "health_port": data.get("health_port") or grpc_default + HEALTH_PORT_OFFSET,
            "metrics_port": data.get("metrics_port") or metrics_default,
            "http_port": data.get("http_port") or DEFAULT_HTTP_PORTS.get(service, 0),
            "ACH_PEERS_RESOLVED": {
                # The service itself (its own command line calling it) on the port it listens on.
                name: env.get(f"{name.upper()}_GRPC_ADDR")
                or f"127.0.0.1:{grpc_port if name == service else ports[0]}"
                for name, ports in DEFAULT_PORTS.items()
            },
        }

    @model_validator(mode="after")
    def _one_listener_per_port(self) -> Self:
        # One port, one listener: two on the same port would share its connections between them.
        seen: dict[int, str] = {}
        for field in self._PORTS:
            number, name = getattr(self, field), self.variable(field)
            if number and number in seen:
                raise ConfigError(f"{name} and {seen[number]} are both {number}: each needs its own port")
            seen[number] = name
        return self

    @classmethod
    def from_env(cls, service: str) -> ServiceSettings:
        return cls.load(service=service)


def _port_or(raw: Any, name: str, default: int) -> Any:
    # The gRPC port is checked here, before the other ports' defaults are derived from it.
    if raw is None or raw == "":
        return default
    try:
        return _port_number(str(raw).strip())
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} {exc}") from None


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(raw: str) -> str:
    if raw.upper() not in LOG_LEVELS:
        raise ValueError(f"is not one of {', '.join(LOG_LEVELS)}")
    return raw.upper()


class TelemetrySettings(Settings):
    log_level: Annotated[str, checked(_log_level)] = "INFO"
    # Traces to an OpenTelemetry collector (OTLP over gRPC), and/or to a file of JSON lines.
    otel_exporter_otlp_endpoint: str = ""
    trace_file: str = Field("", validation_alias="ACH_TRACE_FILE")
