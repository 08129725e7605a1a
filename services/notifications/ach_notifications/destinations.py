"""Where a webhook may go: only to public unicast addresses, unless the operator's allow-list names
the destination (local development and tests name their loopback receivers). Checked when a
channel is registered and again on every attempt, on the addresses the connection will really use
(a name that resolved to a public address at registration may resolve to an internal one later:
DNS rebinding). The process that sends webhooks also holds the coordinator's credentials and sits
beside every internal port, so a partner must not be able to make it knock anywhere else."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ach_platform.settings import ConfigError
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
RESOLVE_TIMEOUT_S = 5.0


class DestinationRefused(OSError):
    """The destination is not a public address and no allow-list entry names it."""


def parse_ip(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    # ::ffff:10.0.0.1 is 10.0.0.1: judge the IPv4 address it carries.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_host_name(text: str) -> bool:
    labels = text.rstrip(".").split(".")
    return len(text) <= 253 and all(
        0 < len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii() for label in labels
    )


@dataclass(frozen=True)
class DestinationPolicy:
    """Public unicast addresses, plus what the operator allows (networks, or host names as written
    in a webhook URL). An allowed destination may also be plain http:// (a local receiver)."""

    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, text: str) -> DestinationPolicy:
        """``127.0.0.0/8,::1,receiver.local``: networks (or single addresses) and host names."""
        networks: list[Network] = []
        hosts: set[str] = set()
        for entry in filter(None, (e.strip() for e in text.split(","))):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if not is_host_name(entry):
                    raise ConfigError(
                        f"NOTIFY_WEBHOOK_ALLOWLIST: {entry[:80]!r} is no network, address or host name"
                    ) from None
                hosts.add(entry.lower())
        return cls(tuple(networks), frozenset(hosts))

    def allows_address(self, ip: IPAddress) -> bool:
        if any(ip in n for n in self.networks if n.version == ip.version):
            return True
        return ip.is_global and not ip.is_multicast

    def allows_name(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def allowed_by_operator(self, host: str) -> bool:
        """The operator named this destination (its name or a network holding its address)."""
        ip = parse_ip(host)
        if ip is not None:
            return any(ip in n for n in self.networks if n.version == ip.version)
        return self.allows_name(host)

    def check_addresses(self, host: str, addresses: Iterable[str]) -> list[str]:
        """The addresses a connection to ``host`` may use (every one, or DestinationRefused: a name
        with one internal address among public ones is refused whole)."""
        found = list(addresses)
        if self.allows_name(host):
            return found
        refused = [a for a in found if (ip := parse_ip(a)) is None or not self.allows_address(ip)]
        if refused or not found:
            raise DestinationRefused(f"{host[:100]} is not a public address")
        return found


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, with every answer checked against the policy before a connection uses it."""

    def __init__(self, policy: DestinationPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        self._policy.check_addresses(host, [r["host"] for r in results])
        return results

    async def close(self) -> None:
        await self._inner.close()


def check_literal(policy: DestinationPolicy, url: str) -> None:
    """aiohttp connects to an IP literal without asking its resolver: judge it here."""
    host = urlsplit(url).hostname or ""
    ip = parse_ip(host)
    if ip is not None and not policy.allows_address(ip):
        raise DestinationRefused(f"{host[:100]} is not a public address")


async def registration_problem(policy: DestinationPolicy, url: str) -> str:
    """Why a webhook URL may not be registered ("" when it may): its host must be an allowed
    address, or a name that resolves, now, to allowed addresses only; plain http:// only for a
    destination the operator allows."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "http" and not policy.allowed_by_operator(host):
        return "must be an https:// URL"
    ip = parse_ip(host)
    if ip is not None:
        return "" if policy.allows_address(ip) else "must reach a public address"
    if policy.allows_name(host):
        return ""
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, parts.port or 443, type=socket.SOCK_STREAM
            )
    except (OSError, TimeoutError, UnicodeError):
        return "must name a host that resolves"
    try:
        policy.check_addresses(host, [str(info[4][0]) for info in infos])
    except DestinationRefused:
        return "must reach a public address"
    return ""
