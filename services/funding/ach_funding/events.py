"""Consumes referral status changes; a completion with an outcome posts a payment transfer."""

from __future__ import annotations

from ach.common.v1 import common_pb2
from ach.funding.v1 import funding_pb2
from ach.referrals.v1 import referrals_pb2
from ach_events.consumer import require_fields
from ach_events.envelope import Envelope
from ach_events.outbox import Outbox
from ach_events.topics import FUNDING_EVENTS
from ach_platform.clock import to_timestamp, utc_now
from ach_platform.codes import code_of
from opentelemetry import metrics
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_funding import domain
from ach_funding.store import Account, TransferRecord

unpaid_internal = metrics.get_meter("ach_funding.events").create_counter(
    "ach_funding_internal_referrals_unpaid",
    unit="{referral}",
    description="Completed referrals a partner sent to its own organization: no outcome payment",
)


class FundingEvents:
    def __init__(self, outbox: Outbox, pay_internal: bool = False) -> None:
        self._outbox = outbox
        self._pay_internal = pay_internal

    async def on_status_changed(
        self, session: AsyncSession, envelope: Envelope, event: referrals_pb2.ReferralStatusChanged
    ) -> None:
        if event.to_status != referrals_pb2.REFERRAL_STATUS_COMPLETED:
            return
        require_fields(event, "referral_id")
        outcome = code_of(referrals_pb2.ReferralOutcome, event.outcome)
        # Older events carry no source: judged by the source when they name one.
        internal = event.internal or (
            bool(event.source_partner_id) and event.source_partner_id == event.target_partner_id
        )
        draft = domain.transfer_for_completed_referral(
            envelope.id, event.referral_id, event.target_partner_id, outcome, internal, self._pay_internal
        )
        if internal and draft is None:
            unpaid_internal.add(1)
        if draft is None or await session.get(TransferRecord, draft.transfer_id) is not None:
            return
        now = utc_now()
        for account_id in (draft.debit_account_id, draft.credit_account_id):
            if await session.get(Account, account_id) is None:
                session.add(Account(id=account_id, currency=domain.LEDGER_CURRENCY, created_at=now))
        await session.flush()
        record = TransferRecord(
            id=draft.transfer_id,
            debit_account_id=draft.debit_account_id,
            credit_account_id=draft.credit_account_id,
            amount_cents=draft.amount_cents,
            currency=domain.LEDGER_CURRENCY,
            reason=draft.reason,
            source_event_id=envelope.id,
            posted_at=now,
        )
        session.add(record)
        self._outbox.add(
            session, FUNDING_EVENTS, funding_pb2.TransferPosted(transfer=to_proto(record)), key=record.id
        )


def to_proto(r: TransferRecord) -> funding_pb2.Transfer:
    return funding_pb2.Transfer(
        transfer_id=r.id,
        debit_account_id=r.debit_account_id,
        credit_account_id=r.credit_account_id,
        amount=common_pb2.Money(cents=r.amount_cents, currency=r.currency),
        reason=r.reason,
        source_event_id=r.source_event_id,
        posted_at=to_timestamp(r.posted_at),
    )
