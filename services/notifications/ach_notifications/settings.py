"""The notifications service's settings (NOTIFY_*, SMTP_*, SMS_*), and the delivery worker's policy
made from them. A bad value stops the service naming it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from ach_platform.dev_pki import DevPki
from ach_platform.settings import ConfigError, Settings, at_least, checked, pki_dir, whole_number
from ach_platform.vocabulary import NEED_DOMAINS
from pydantic import BeforeValidator, Field, SecretStr
from pydantic_settings import NoDecode, SettingsConfigDict

from ach_notifications import domain
from ach_notifications.destinations import DestinationPolicy

MANY = 1_000_000


@dataclass(frozen=True)
class DeliverySettings:
    """What the delivery worker does: its retry and circuit-breaker policies, where webhooks may go,
    the mail relay and the SMS gateway."""

    retry: domain.RetryPolicy = field(default_factory=domain.RetryPolicy)
    breaker: domain.BreakerPolicy = field(default_factory=domain.BreakerPolicy)
    timeout_s: float = 10.0
    poll_s: float = 1.0  # idle: new deliveries wake the worker on commit; this finds retries due
    concurrency: int = 32
    # Where webhooks may go: public addresses, and what NOTIFY_WEBHOOK_ALLOWLIST names.
    destinations: DestinationPolicy = field(default_factory=DestinationPolicy)
    smtp_host: str = ""
    smtp_port: int = 25
    mail_from: str = "notifications@ach.local"
    # Messages to residents by SMS: a Twilio-compatible "send a message" endpoint (form To, From, Body).
    sms_gateway_url: str = ""
    sms_user: str = ""
    sms_token: str = ""
    sms_from: str = ""
    # Where residents answer the question by e-mail: the public address of this service's HTTP port.
    answer_url: str = ""


def _silent_domains(text: object) -> object:
    if not isinstance(text, str):
        return text
    chosen = frozenset(d.strip() for d in text.split(",") if d.strip())
    unknown = sorted(chosen - NEED_DOMAINS)
    if unknown:
        raise ValueError(f"names what are not need domain codes: {', '.join(unknown)}")
    return chosen


class NotificationSettings(Settings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_")

    max_attempts: Annotated[int, checked(whole_number(1, MANY))] = 24
    backoff_base_s: Annotated[float, checked(at_least(0.001))] = 1.0
    backoff_cap_s: Annotated[float, checked(at_least(0.001))] = 600.0
    breaker_failures: Annotated[int, checked(whole_number(1, MANY))] = 5
    breaker_cooldown_s: Annotated[float, checked(at_least(0.001))] = 30.0
    timeout_s: Annotated[float, checked(at_least(0.1))] = 10.0
    poll_s: Annotated[float, checked(at_least(0.001))] = 1.0
    concurrency: Annotated[int, checked(whole_number(1, 10_000))] = 32
    webhook_allowlist: str = ""
    smtp_host: str = Field("", validation_alias="SMTP_HOST")
    smtp_port: Annotated[int, checked(whole_number(1, 65535)), Field(validation_alias="SMTP_PORT")] = 25
    mail_from: str = "notifications@ach.local"
    sms_gateway_url: str = Field("", validation_alias="SMS_GATEWAY_URL")
    sms_gateway_user: str = Field("", validation_alias="SMS_GATEWAY_USER")
    sms_gateway_token: SecretStr = Field(SecretStr(""), validation_alias="SMS_GATEWAY_TOKEN")
    sms_from: str = Field("", validation_alias="SMS_FROM")
    # The URL the SMS gateway posts residents' replies to (this service's HTTP port, path
    # /sms/replies, as the public sees it: the gateway signs it). Unset: no question is asked.
    sms_reply_url: str = Field("", max_length=500, pattern=r"^(https?://\S+)?$")
    # The public address of this service's HTTP port (https://...), where residents who chose
    # e-mail answer the question with one click (/answers/<token>). Unset: they are not asked.
    answer_url: str = Field("", max_length=500, pattern=r"^(https?://\S+)?$")
    # The ACH coordinator's partner id: escalations go to it too; it asks identity for addresses.
    coordinator: str = "ach-backbone"
    # Unset: the default silent domains; empty: none.
    resident_silent_domains: Annotated[frozenset[str] | None, NoDecode, BeforeValidator(_silent_domains)] = (
        None
    )
    # Fernet keys sealing webhook secrets at rest (none: a key made once under ACH_DATA_DIR).
    secrets_key_file: str = ""
    # Identity's gRPC address, for the addresses of messages to residents (none: no such messages),
    # and the client certificate notifications presents there (the coordinator's by default).
    identity_address: str = ""
    client_cert: str = ""
    client_key: str = ""
    server_ca: str = Field("", validation_alias="ACH_TLS_SERVER_CA")

    def delivery(self) -> DeliverySettings:
        return DeliverySettings(
            retry=domain.RetryPolicy(
                max_attempts=self.max_attempts, base_s=self.backoff_base_s, cap_s=self.backoff_cap_s
            ),
            breaker=domain.BreakerPolicy(
                failures_to_open=self.breaker_failures, cooldown_s=self.breaker_cooldown_s
            ),
            timeout_s=self.timeout_s,
            poll_s=self.poll_s,
            concurrency=self.concurrency,
            destinations=DestinationPolicy.parse(self.webhook_allowlist),
            smtp_host=self.smtp_host,
            smtp_port=self.smtp_port,
            mail_from=self.mail_from,
            sms_gateway_url=self.sms_gateway_url,
            sms_user=self.sms_gateway_user,
            sms_token=self.sms_gateway_token.get_secret_value(),
            sms_from=self.sms_from,
            answer_url=self.answer_url,
        )

    def silent_domains(self) -> frozenset[str]:
        if self.resident_silent_domains is None:
            return domain.DEFAULT_SILENT_DOMAINS
        return self.resident_silent_domains

    def identity_client(self) -> tuple[str, Path, Path, Path] | None:
        """Identity's address and the CA, certificate and key to call it with; None without
        NOTIFY_IDENTITY_ADDRESS. Each file is checked to be there."""
        if not self.identity_address:
            return None
        pki = DevPki(pki_dir())
        cert = Path(self.client_cert or pki.client_cert(self.coordinator))
        key = Path(self.client_key or pki.client_key(self.coordinator))
        ca = Path(self.server_ca or pki.ca_cert)  # the identity service's issuer
        for variable, path in (
            ("NOTIFY_CLIENT_CERT", cert),
            ("NOTIFY_CLIENT_KEY", key),
            ("ACH_TLS_SERVER_CA", ca),
        ):
            if not path.is_file():
                raise ConfigError(f"{variable}: no file at {path} (messages to residents need it)")
        return self.identity_address, ca, cert, key

    def answer_channels(self) -> frozenset[str]:
        """The channels residents' answers can come back by: texts when the gateway posts replies
        here, e-mail when the answer pages are reachable."""
        return frozenset({"sms"} if self.sms_reply_url else set()) | frozenset(
            {"email"} if self.answer_url else set()
        )
