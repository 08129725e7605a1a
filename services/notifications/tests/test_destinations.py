"""Where webhooks may go (pure rules and the resolver's check, no network), and how their secrets
are sealed at rest."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from ach_notifications.destinations import (
    DestinationPolicy,
    DestinationRefused,
    GuardedResolver,
    check_literal,
    parse_ip,
    registration_problem,
)
from ach_notifications.sealing import SecretBox, SecretUnreadable
from ach_notifications.settings import NotificationSettings
from ach_platform.settings import ConfigError
from aiohttp.abc import AbstractResolver, ResolveResult
from cryptography.fernet import Fernet

PUBLIC = DestinationPolicy()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "224.0.0.1",
        "255.255.255.255",
    ],
)
def test_internal_addresses_are_refused(address: str) -> None:
    ip = parse_ip(address)
    assert ip is not None and not PUBLIC.allows_address(ip)
    with pytest.raises(DestinationRefused):
        PUBLIC.check_addresses("hook.example", [address])


def test_public_addresses_pass_and_one_internal_answer_refuses_the_name() -> None:
    assert PUBLIC.check_addresses("hook.example", ["93.184.216.34", "2606:2800:220:1::1"])
    with pytest.raises(DestinationRefused):
        PUBLIC.check_addresses("hook.example", ["93.184.216.34", "10.0.0.7"])
    with pytest.raises(DestinationRefused):
        PUBLIC.check_addresses("hook.example", [])


def test_the_operator_allow_list_names_networks_and_hosts_and_a_bad_entry_stops_the_service() -> None:
    policy = DestinationPolicy.parse("127.0.0.0/8, ::1, receiver.local")
    assert policy.check_addresses("localhost", ["127.0.0.1"]) and policy.check_addresses("x", ["::1"])
    assert policy.check_addresses("receiver.local", ["10.9.9.9"])  # named: whatever it resolves to
    assert policy.allowed_by_operator("127.0.0.5") and not policy.allowed_by_operator("10.0.0.1")
    with pytest.raises(ConfigError, match="NOTIFY_WEBHOOK_ALLOWLIST"):
        DestinationPolicy.parse("127.0.0.1,not a host!")


async def test_registration_wants_https_and_a_public_address_unless_the_operator_allows_it() -> None:
    assert await registration_problem(PUBLIC, "http://93.184.216.34/hook") == "must be an https:// URL"
    assert await registration_problem(PUBLIC, "https://93.184.216.34/hook") == ""
    assert (
        await registration_problem(PUBLIC, "https://127.0.0.1:9466/metrics") == "must reach a public address"
    )
    assert await registration_problem(PUBLIC, "https://localhost/") == "must reach a public address"
    assert (
        await registration_problem(PUBLIC, "https://no-such-host.invalid/")
        == "must name a host that resolves"
    )
    local = DestinationPolicy.parse("127.0.0.1")
    assert await registration_problem(local, "http://127.0.0.1:8000/hook") == ""
    with pytest.raises(DestinationRefused):
        check_literal(PUBLIC, "https://[::ffff:127.0.0.1]:8000/")
    check_literal(PUBLIC, "https://hook.example/")  # a name: the resolver judges it


class Rebinding(AbstractResolver):
    """A name that resolves to an internal address now."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host="10.0.0.7", port=port, family=family, proto=0, flags=0)]

    async def close(self) -> None:
        return None


async def test_every_resolution_is_checked() -> None:
    with pytest.raises(DestinationRefused):
        await GuardedResolver(PUBLIC, Rebinding()).resolve("hook.example", 443)


def test_secrets_are_sealed_with_the_first_key_and_open_with_any(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    before = SecretBox([old]).seal("s3cret")
    assert before.startswith("fernet:") and "s3cret" not in before
    rotated = SecretBox([new, old])
    assert rotated.open(before) == "s3cret" and rotated.open("legacy-plain") == "legacy-plain"
    with pytest.raises(SecretUnreadable):
        SecretBox([new]).open(before)
    keys = tmp_path / "keys"
    keys.write_text(f"{new.decode()}\n{old.decode()}\n")
    monkeypatch.setenv("NOTIFY_SECRETS_KEY_FILE", str(keys))
    assert SecretBox.from_file(NotificationSettings.load().secrets_key_file).open(before) == "s3cret"
    keys.write_text("not a key\n")
    with pytest.raises(ConfigError, match="NOTIFY_SECRETS_KEY_FILE"):
        SecretBox.from_file(NotificationSettings.load().secrets_key_file)
