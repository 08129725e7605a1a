"""Where a message to a resident goes, asked of the identity service just before sending (the
address is never stored here, never put in an event, a log or a trace)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc
from ach.residents.v1 import residents_pb2, residents_pb2_grpc
from ach_platform.grpc_client import partner_aio_channel

from ach_notifications.settings import NotificationSettings

CHANNELS = {residents_pb2.CONTACT_CHANNEL_SMS: "sms", residents_pb2.CONTACT_CHANNEL_EMAIL: "email"}


@dataclass(frozen=True)
class ResidentAddress:
    channel: str  # "" when the network must not message the resident (now)
    address: str
    language: str


class ContactUnavailable(Exception):
    """Identity could not say (yet): the delivery is tried again later."""


class ResidentContacts(Protocol):
    async def __call__(self, resident_id: str, referral_id: str) -> ResidentAddress: ...


class IdentityContacts:
    """GetResidentContact over mutual TLS, as the ACH coordinator (the network messages its
    residents); identity checks the caller and audits every answer."""

    def __init__(self, address: str, ca: Path, cert: Path, key: Path, timeout_s: float) -> None:
        self._channel = partner_aio_channel(address, ca, cert=cert, key=key)
        self._stub = residents_pb2_grpc.ResidentIndexStub(self._channel)
        self._timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: NotificationSettings) -> IdentityContacts | None:
        """None without NOTIFY_IDENTITY_ADDRESS: then no message to a resident is queued."""
        client = settings.identity_client()
        if client is None:
            return None
        address, ca, cert, key = client
        return cls(address, ca, cert, key, settings.timeout_s)

    async def __call__(self, resident_id: str, referral_id: str) -> ResidentAddress:
        request = residents_pb2.GetResidentContactRequest(resident_id=resident_id, referral_id=referral_id)
        try:
            found: residents_pb2.ResidentContact = await self._stub.GetResidentContact(
                request, timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            # Not found: identity has not heard of the referral yet (its events arrive on their own).
            raise ContactUnavailable(f"identity answered {exc.code().name}") from None
        return ResidentAddress(CHANNELS.get(found.channel, ""), found.address, found.language)
