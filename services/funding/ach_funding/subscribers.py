"""The funding service's subscribers: referral status changes move outcome payments."""

from __future__ import annotations

from ach.referrals.v1 import referrals_pb2
from ach_events.consumer import require_fields
from ach_events.envelope import Envelope
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_funding.outcome_payments import OutcomePayments


class ReferralOutcomes:
    def __init__(self, payments: OutcomePayments) -> None:
        self._payments = payments

    async def on_status_changed(
        self, session: AsyncSession, envelope: Envelope, event: referrals_pb2.ReferralStatusChanged
    ) -> None:
        require_fields(event, "referral_id")
        await self._payments.on_status_changed(session, event)
