"""How the platform's Kafka clients authenticate to the broker: TLS and SASL/SCRAM, read once from
the environment and applied alike to aiokafka, FastStream and kafka-python clients.

    KAFKA_SECURITY_PROTOCOL   PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL
    KAFKA_SASL_MECHANISM      SCRAM-SHA-512 (default) or SCRAM-SHA-256
    KAFKA_SASL_USERNAME       the client's principal (a service, or a partner's own user)
    KAFKA_SASL_PASSWORD_FILE  a file holding the password (a mounted Kubernetes Secret); or
    KAFKA_SASL_PASSWORD       the password itself (for local use only)
    KAFKA_SSL_CAFILE          CA bundle that signed the brokers' certificates
    KAFKA_SSL_CERTFILE / KAFKA_SSL_KEYFILE   a client certificate, where brokers ask for one

Secrets are never logged: ``describe()`` names the protocol, mechanism and user only.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ach_platform.settings import ConfigError

from ach_events.settings import KafkaSecuritySettings


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str = ""
    password: str = ""
    cafile: str = ""
    certfile: str = ""
    keyfile: str = ""

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in {"SSL", "SASL_SSL"}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSecurity:
        given = KafkaSecuritySettings.load(env)
        protocol = given.kafka_security_protocol
        password = given.kafka_sasl_password.get_secret_value()
        password_file = given.kafka_sasl_password_file
        if password_file:
            try:
                password = Path(password_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"KAFKA_SASL_PASSWORD_FILE {password_file}: {exc.strerror}") from None
        security = cls(
            protocol=protocol,
            mechanism=given.kafka_sasl_mechanism,
            username=given.kafka_sasl_username,
            password=password,
            cafile=given.kafka_ssl_cafile,
            certfile=given.kafka_ssl_certfile,
            keyfile=given.kafka_ssl_keyfile,
        )
        if security.sasl and not (security.username and security.password):
            raise ConfigError(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD_FILE"
            )
        for name, path in (
            ("KAFKA_SSL_CAFILE", security.cafile),
            ("KAFKA_SSL_CERTFILE", security.certfile),
            ("KAFKA_SSL_KEYFILE", security.keyfile),
        ):
            if path and not Path(path).is_file():
                raise ConfigError(f"{name} {path} is not a file")
        if bool(security.certfile) != bool(security.keyfile):
            raise ConfigError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together")
        return security

    def describe(self) -> str:
        return f"{self.protocol}" + (f" ({self.mechanism} as {self.username})" if self.sasl else "")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.cafile or None)
        if self.certfile:
            context.load_cert_chain(self.certfile, self.keyfile)
        return context

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.sasl:
            kwargs |= {
                "sasl_mechanism": self.mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        return kwargs

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's clients (the topic admin)."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            kwargs |= {"ssl_cafile": self.cafile or None, "ssl_certfile": self.certfile or None}
            kwargs |= {"ssl_keyfile": self.keyfile or None, "ssl_check_hostname": True}
        if self.sasl:
            kwargs |= {
                "sasl_mechanism": self.mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        return kwargs

    def faststream(self) -> Any:
        """The ``security`` argument of FastStream's KafkaBroker (None for plaintext)."""
        from faststream.security import BaseSecurity, SASLScram256, SASLScram512

        if self.sasl:
            scram = SASLScram512 if self.mechanism == "SCRAM-SHA-512" else SASLScram256
            return scram(self.username, self.password, ssl_context=self.ssl_context(), use_ssl=self.tls)
        if self.tls:
            return BaseSecurity(ssl_context=self.ssl_context(), use_ssl=True)
        return None


@cache
def broker_security() -> KafkaSecurity:
    """This process's broker security settings (read once)."""
    return KafkaSecurity.from_env()
