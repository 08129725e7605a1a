"""The referral replica, from the referral events: lets the index decide what a CBO may see."""

from __future__ import annotations

from ach.referrals.v1 import referrals_pb2
from ach_events.consumer import require_fields
from ach_events.envelope import Envelope
from ach_platform.database import insert_once
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_identity.resident_mappers import (
    referral_status,
)
from ach_identity.store import (
    ReferralReplica,
)


async def on_referral_created(
    session: AsyncSession, envelope: Envelope, event: referrals_pb2.ReferralCreated
) -> None:
    require_fields(event, "referral_id", "resident_id", "need_domain")
    await insert_once(
        session,
        ReferralReplica,
        {
            "referral_id": event.referral_id,
            "resident_id": event.resident_id,
            "need_domain": event.need_domain,
            "target_partner_id": event.target_partner_id,
            "status": referral_status(event.status),
            "sequence": 0,
            "source_partner_id": event.source_partner_id,
        },
    )


async def on_referral_status_changed(
    session: AsyncSession, envelope: Envelope, event: referrals_pb2.ReferralStatusChanged
) -> None:
    require_fields(event, "referral_id", "resident_id")
    replica = await session.get(ReferralReplica, event.referral_id)
    if replica is None:
        replica = ReferralReplica(
            referral_id=event.referral_id,
            resident_id=event.resident_id,
            need_domain=event.need_domain,
            target_partner_id=event.target_partner_id,
        )
    if event.sequence <= replica.sequence:
        return  # an older change than the one held
    replica.status = referral_status(event.to_status)
    replica.target_partner_id = event.target_partner_id or replica.target_partner_id
    replica.sequence = event.sequence
    session.add(replica)
