"""What the identity service publishes: each partner's latest state on a compacted topic keyed by
partner id; consent changes on the resident events."""

from __future__ import annotations

from ach.identity.v1 import identity_pb2
from ach.residents.v1 import residents_pb2
from ach_events.outbox import Outbox
from ach_events.topics import IDENTITY_PARTNERS, RESIDENT_EVENTS
from ach_platform.clock import to_timestamp
from ach_platform.codes import value_of
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_identity.resident_mappers import consent_proto
from ach_identity.store import ConsentRecord, PartnerRecord


def to_proto(r: PartnerRecord) -> identity_pb2.Partner:
    return identity_pb2.Partner(
        partner_id=r.id,
        name=r.name,
        type=value_of(identity_pb2.PartnerType, r.type),
        roles=[value_of(identity_pb2.PartnerRole, role) for role in r.roles],
        status=value_of(identity_pb2.PartnerStatus, r.status),
        version=r.version,
        updated_at=to_timestamp(r.updated_at),
        revoked_certificates=r.revoked_certificates,
    )


def publish_partner_changed(session: AsyncSession, outbox: Outbox, record: PartnerRecord) -> None:
    outbox.add(
        session, IDENTITY_PARTNERS, identity_pb2.PartnerChanged(partner=to_proto(record)), key=record.id
    )


def publish_consent_changed(session: AsyncSession, outbox: Outbox, c: ConsentRecord) -> None:
    outbox.add(
        session, RESIDENT_EVENTS, residents_pb2.ConsentChanged(consent=consent_proto(c)), key=c.resident_id
    )
