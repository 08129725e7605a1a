"""Every service's settings on one base: a bad value stops the service naming its variable (never
quoting a secret), defaults need no configuration, and nothing outside a settings module reads the
environment."""

from __future__ import annotations

import re

import pytest
from ach_directory.settings import DirectorySettings
from ach_events.kafka_security import KafkaSecurity
from ach_events.settings import BackboneSettings
from ach_funding.settings import FundingSettings
from ach_notifications.settings import NotificationSettings
from ach_platform.settings import ConfigError, ServiceSettings, Settings, TelemetrySettings
from ach_referrals.settings import ReferralSettings
from ach_screening.settings import ScreeningSettings

from tests.harness import ROOT

EVERY_CLASS: list[type[Settings]] = [
    BackboneSettings,
    DirectorySettings,
    FundingSettings,
    NotificationSettings,
    ReferralSettings,
    ScreeningSettings,
    TelemetrySettings,
]


@pytest.mark.parametrize("settings", EVERY_CLASS, ids=lambda c: c.__name__)
def test_the_defaults_need_no_configuration(settings: type[Settings]) -> None:
    assert settings.load({}) == settings.load({})


@pytest.mark.parametrize(
    ("settings", "environ", "message"),
    [
        (ServiceSettings, {"HEALTH_PORT": "80800"}, "HEALTH_PORT='80800' is outside 0-65535"),
        (ServiceSettings, {"ACH_TOPIC_DISCOVERY_S": "soon"}, "ACH_TOPIC_DISCOVERY_S='soon' is not a number"),
        (BackboneSettings, {"ACH_DLQ_RETENTION_DAYS": "90"}, "must be a whole number of days from 1 to 30"),
        (BackboneSettings, {"OUTBOX_KEEP_DAYS": "-1"}, "OUTBOX_KEEP_DAYS='-1' must be a whole number"),
        (DirectorySettings, {"ACH_TIME_ZONE": "Mars/Olympus"}, "ACH_TIME_ZONE='Mars/Olympus' is not an IANA"),
        (FundingSettings, {"FUNDING_PAY_INTERNAL_REFERRALS": "perhaps"}, "FUNDING_PAY_INTERNAL_REFERRALS="),
        (NotificationSettings, {"NOTIFY_TIMEOUT_S": "0.01"}, "NOTIFY_TIMEOUT_S='0.01' must be at least 0.1"),
        (NotificationSettings, {"NOTIFY_CONCURRENCY": "many"}, "NOTIFY_CONCURRENCY='many' must be a whole"),
        (NotificationSettings, {"SMTP_PORT": "0"}, "SMTP_PORT='0' must be a whole number from 1 to 65535"),
        (
            NotificationSettings,
            {"NOTIFY_RESIDENT_SILENT_DOMAINS": "food-insecurity,gossip"},
            "not need domain codes: gossip",
        ),
        (
            ReferralSettings,
            {"REFERRAL_ACCEPT_WITHIN": "3 days"},
            "REFERRAL_ACCEPT_WITHIN='3 days': '3 days' is",
        ),
        (ReferralSettings, {"REFERRAL_REROUTE_POLICY": "x=source"}, "'x' is not a need domain code"),
        (TelemetrySettings, {"LOG_LEVEL": "LOUD"}, "LOG_LEVEL='LOUD' is not one of DEBUG"),
    ],
)
def test_a_bad_value_is_named(settings: type[Settings], environ: dict[str, str], message: str) -> None:
    values = {"service": "screening"} if settings is ServiceSettings else {}
    with pytest.raises(ConfigError) as raised:
        settings.load(environ, **values)
    assert message in str(raised.value)


def test_an_empty_variable_is_the_default_and_an_explicit_empty_list_is_kept() -> None:
    assert NotificationSettings.load({"NOTIFY_TIMEOUT_S": ""}).timeout_s == 10.0
    assert NotificationSettings.load({"NOTIFY_RESIDENT_SILENT_DOMAINS": ""}).silent_domains() == frozenset()
    assert "intimate-partner-violence" in NotificationSettings.load({}).silent_domains()
    assert ReferralSettings.load({"REFERRAL_REMINDERS": "none"}).timers.reminders == ()


def test_a_secret_is_never_quoted() -> None:
    with pytest.raises(ConfigError) as raised:
        KafkaSecurity.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_PASSWORD": "hunter2"})
    assert "hunter2" not in str(raised.value)
    settings = NotificationSettings.load({"SMS_GATEWAY_TOKEN": "tok-123"})
    assert "tok-123" not in repr(settings) and settings.delivery().sms_token == "tok-123"


def test_the_service_host_derives_its_ports_and_peers() -> None:
    settings = ServiceSettings.load(
        {"GRPC_PORT": "7200", "REFERRALS_GRPC_ADDR": "referrals:7052"}, service="identity"
    )
    assert (settings.grpc_port, settings.token_port, settings.health_port) == (7200, 7157, 8057)
    assert settings.peers["identity"] == "127.0.0.1:7200"  # its own command line calls it where it listens
    assert settings.peers["referrals"] == "referrals:7052"
    assert settings.database_url.endswith("identity.db")
    own = ServiceSettings.load({"IDENTITY_DATABASE_URL": "postgresql://db/identity"}, service="identity")
    assert own.database_url == "postgresql://db/identity"


# Settings modules are where the environment is read; the rest is handed typed settings.
SETTINGS_MODULES = re.compile(r"(^|/)settings\.py$|/migrations/")


def test_nothing_outside_settings_reads_the_environment() -> None:
    readers = [
        str(path.relative_to(ROOT))
        for top in ("services", "libs")
        for path in (ROOT / top).rglob("*.py")
        if "/tests/" not in str(path)
        and not SETTINGS_MODULES.search(str(path))
        and re.search(r"os\.environ|os\.getenv|getenv\(", path.read_text())
    ]
    assert readers == []
