"""The delivery worker's settings, from the environment (a bad value stops the service naming it)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ach_platform.settings import ConfigError

from ach_notifications import domain
from ach_notifications.destinations import DestinationPolicy


@dataclass(frozen=True)
class DeliverySettings:
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

    @classmethod
    def from_env(cls) -> DeliverySettings:
        def number(name: str, default: float, low: float) -> float:
            raw = os.environ.get(name, "")
            try:
                value = float(raw) if raw else default
            except ValueError:
                raise ConfigError(f"{name} must be a number, not {raw!r}") from None
            if value < low:
                raise ConfigError(f"{name} must be at least {low:g}, not {raw}")
            return value

        return cls(
            retry=domain.RetryPolicy(
                max_attempts=int(number("NOTIFY_MAX_ATTEMPTS", 24, 1)),
                base_s=number("NOTIFY_BACKOFF_BASE_S", 1.0, 0.001),
                cap_s=number("NOTIFY_BACKOFF_CAP_S", 600.0, 0.001),
            ),
            breaker=domain.BreakerPolicy(
                failures_to_open=int(number("NOTIFY_BREAKER_FAILURES", 5, 1)),
                cooldown_s=number("NOTIFY_BREAKER_COOLDOWN_S", 30.0, 0.001),
            ),
            timeout_s=number("NOTIFY_TIMEOUT_S", 10.0, 0.1),
            poll_s=number("NOTIFY_POLL_S", 1.0, 0.001),
            concurrency=int(number("NOTIFY_CONCURRENCY", 32, 1)),
            destinations=DestinationPolicy.from_env(),
            smtp_host=os.environ.get("SMTP_HOST", ""),
            smtp_port=int(number("SMTP_PORT", 25, 1)),
            mail_from=os.environ.get("NOTIFY_MAIL_FROM", "notifications@ach.local"),
            sms_gateway_url=os.environ.get("SMS_GATEWAY_URL", ""),
            sms_user=os.environ.get("SMS_GATEWAY_USER", ""),
            sms_token=os.environ.get("SMS_GATEWAY_TOKEN", ""),
            sms_from=os.environ.get("SMS_FROM", ""),
        )
