"""The partner gateway: events partner systems publish on their own inbound topics come in here.

Kafka's ACLs already keep a partner from writing another partner's inbound topic; the gateway checks
that everything the event claims about its sender (the CloudEvents source and the actor in the
payload) names the partner whose topic carried it, and that the partner is active in the registry.
A refused event goes to the dead-letter topic with the reason; an admitted one goes on to the
intake topic under the partner's identity, for the domain services."""

from __future__ import annotations

from ach.partners.v1 import partners_pb2
from ach_events.consumer import PoisonEvent
from ach_events.envelope import Envelope
from ach_events.outbox import Outbox
from ach_events.partner_topics import inbound_topic, partner_of_inbound
from ach_events.service_grants import GATEWAY_GROUP
from ach_events.topics import PARTNER_INTAKE
from google.protobuf.message import Message
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_identity.store import PartnerRecord

GROUP = GATEWAY_GROUP  # named once, with the services' Kafka grants
ACCEPTED_TYPES = frozenset(inbound_topic("x").event_types)


def partner_source(partner_id: str) -> str:
    return f"/partners/{partner_id}"


def claimed_partner(message: Message) -> str:
    """The partner an event says acted."""
    if isinstance(message, partners_pb2.ScreeningSubmitted):
        return str(message.submission.screened_by.partner_id)
    if isinstance(message, partners_pb2.ReferralStatusReported):
        return str(message.update.actor.partner_id)
    if isinstance(message, partners_pb2.ServiceUpdateReported):
        return str(message.partner_id)
    return ""


def admit(topic: str, envelope: Envelope) -> str | None:
    """None to let the event through, else why it is refused. Pure: no I/O."""
    partner = partner_of_inbound(topic)
    if partner is None:
        return f"{topic} is not a partner inbound topic"
    if envelope.type not in ACCEPTED_TYPES:
        return f"event type {envelope.type} is not accepted from partner systems"
    if envelope.source != partner_source(partner):
        return (
            f"partner identity mismatch: {partner}'s topic carries an event with source "
            f"{envelope.source!r}, not {partner_source(partner)!r}"
        )
    claimed = claimed_partner(envelope.message())
    if claimed != partner:
        return f"partner identity mismatch: {partner}'s topic carries an event claiming partner {claimed!r}"
    return None


class PartnerGateway:
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    async def on_partner_event(self, session: AsyncSession, envelope: Envelope, message: Message) -> None:
        partner_id = envelope.source.removeprefix("/partners/")
        partner = await session.get(PartnerRecord, partner_id)
        if partner is None or partner.status != "active":
            raise PoisonEvent(f"partner {partner_id} is not an active partner of the network")
        self._outbox.add(
            session,
            PARTNER_INTAKE,
            message,
            key=envelope.key,
            subject=envelope.subject,
            source=envelope.source,
        )
