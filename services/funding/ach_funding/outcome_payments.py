"""Outcome payments from the referral loop, in the domain's words: a CBO that accepts a referral is
promised its rate (a reservation on the streams that may pay it); when the referral closes with
the need met the promise is posted; any other end voids it. When no stream has room the payment
is owed, and paid when funds arrive. A referral is paid at most once, whatever the event order."""

from __future__ import annotations

from datetime import datetime

from ach.referrals.v1 import referrals_pb2
from ach_platform.clock import from_timestamp, utc_now
from ach_platform.errors import FailedPrecondition
from opentelemetry import metrics
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_funding import store
from ach_funding.domain.ledger import Phase, Resolution
from ach_funding.domain.outcome_payments import Change, PaymentState, PaymentStatus, Step, next_step, rate_for
from ach_funding.domain.streams import Cost, CostType
from ach_funding.ledger import retrying_conflicts
from ach_funding.store import OutcomePayment
from ach_funding.wellness_fund import WellnessFund

_meter = metrics.get_meter("ach_funding.outcome_payments")
unpaid_internal = _meter.create_counter(
    "ach_funding_internal_referrals_unpaid",
    unit="{referral}",
    description="Referrals a partner sent to its own organization that no stream pays for",
)
payments = _meter.create_counter(
    "ach_funding_outcome_payments",
    unit="{payment}",
    description="Outcome payments by the status they reached",
)

ENDS = {
    referrals_pb2.REFERRAL_STATUS_REJECTED,
    referrals_pb2.REFERRAL_STATUS_CANCELLED,
    referrals_pb2.REFERRAL_STATUS_FAILED,
    referrals_pb2.REFERRAL_STATUS_ENTERED_IN_ERROR,
}


def change_of(event: referrals_pb2.ReferralStatusChanged) -> Change:
    if event.to_status == referrals_pb2.REFERRAL_STATUS_ACCEPTED:
        return Change.ACCEPTED
    if event.to_status == referrals_pb2.REFERRAL_STATUS_COMPLETED:
        return Change.NEED_MET if event.outcome == referrals_pb2.REFERRAL_OUTCOME_NEED_MET else Change.ENDED
    return Change.ENDED if event.to_status in ENDS else Change.OTHER


async def _locked(session: AsyncSession, referral_id: str) -> OutcomePayment | None:
    """The referral's payment row, locked: its events and the sweep change it one at a time."""
    query = select(OutcomePayment).where(OutcomePayment.referral_id == referral_id).with_for_update()
    return (await session.exec(query)).first()


class OutcomePayments:
    def __init__(self, fund: WellnessFund) -> None:
        self._fund = fund

    async def on_status_changed(
        self, session: AsyncSession, event: referrals_pb2.ReferralStatusChanged
    ) -> None:
        change = change_of(event)
        row = await _locked(session, event.referral_id)
        state = PaymentState(PaymentStatus(row.status), row.sequence) if row else None
        step = next_step(state, change, event.sequence)
        if step is Step.NOTHING:
            return
        at = from_timestamp(event.changed_at) or utc_now()
        internal = event.internal or (
            bool(event.source_partner_id) and event.source_partner_id == event.target_partner_id
        )
        if row is None or step is Step.RESERVE:
            row = row or OutcomePayment(
                referral_id=event.referral_id,
                status="",
                sequence=0,
                target_partner_id="",
                need_domain="",
                updated_at=at,
            )
            row.target_partner_id, row.need_domain, row.internal = (
                event.target_partner_id,
                event.need_domain,
                internal,
            )
            row.cents = rate_for(self._fund.catalog.rates, event.need_domain, at.date())
            row.pending_transaction_id = None
        row.sequence, row.updated_at = event.sequence, at
        if step is Step.POST and event.target_partner_id != row.target_partner_id:
            # Re-routed since it was reserved (a change between them never arrived): the promise
            # was to another CBO. Release it; the CBO that met the need is paid.
            await self._release(session, row, event.sequence, at)
            step = Step.PAY
        if step is Step.PAY and event.target_partner_id:
            row.target_partner_id, row.internal = event.target_partner_id, internal
        if step is Step.RESERVE:
            await self._reserve(session, row, at)
        elif step is Step.POST and row.pending_transaction_id:
            done = await self._fund.ledger.resolve(
                session, f"outcome:{row.referral_id}:post", row.pending_transaction_id, Resolution.POST, at
            )
            row.earned_at = at
            self._settle(row, PaymentStatus.PAID, paid=done.transaction.id)
        elif step is Step.PAY:
            row.earned_at = at
            await self._pay(session, row, at)
        elif step is Step.VOID:
            await self._release(session, row, event.sequence, at)
            self._settle(row, PaymentStatus.VOIDED, reason="the referral ended without the need met")
        session.add(row)

    async def _release(self, session: AsyncSession, row: OutcomePayment, sequence: int, at: datetime) -> None:
        if row.status == PaymentStatus.RESERVED.value and row.pending_transaction_id:
            key = f"outcome:{row.referral_id}:void:{sequence}"
            await self._fund.ledger.resolve(session, key, row.pending_transaction_id, Resolution.VOID, at)
            row.pending_transaction_id = None

    async def pay_waiting(self, sessions: async_sessionmaker[AsyncSession], limit: int = 500) -> int:
        """Pay what is owed, oldest first, as far as the streams allow; the number paid."""
        async with sessions() as session:
            waiting = [p.referral_id for p in await store.payments_waiting(session, limit)]
        paid = 0
        for referral_id in waiting:

            async def pay(session: AsyncSession, referral_id: str = referral_id) -> bool:
                row = await _locked(session, referral_id)
                if row is None or row.status != PaymentStatus.OWED.value:
                    return False
                await self._pay(session, row, utc_now())
                session.add(row)
                return row.status == PaymentStatus.PAID.value

            paid += await retrying_conflicts(sessions, pay)
        return paid

    def _cost(self, row: OutcomePayment, at: datetime) -> Cost:
        return Cost(CostType.OUTCOME_PAYMENT, row.cents, at.date(), row.need_domain, internal=row.internal)

    def _payable(self, row: OutcomePayment) -> bool:
        if row.cents <= 0 or not row.target_partner_id:
            self._settle(row, PaymentStatus.NOT_PAYABLE, reason="no outcome rate for this need domain")
            return False
        return True

    async def _charge(
        self, session: AsyncSession, row: OutcomePayment, at: datetime, key: str, phase: Phase
    ) -> tuple[bool, str | None]:
        """(payable, the transaction charged): not payable when no stream may pay it at all (the
        row says why), no transaction when the streams that may have no room."""
        try:
            written = await self._fund.charge(
                session,
                key=key,
                cost=self._cost(row, at),
                partner_id=row.target_partner_id,
                now=at,
                phase=phase,
                metadata={"referral_id": row.referral_id},
            )
        except FailedPrecondition as exc:
            if exc.violation_type != "RESTRICTION":
                raise
            if row.internal:
                unpaid_internal.add(1)
            self._settle(row, PaymentStatus.NOT_PAYABLE, reason=exc.message[:300])
            return False, None
        return True, written.transaction.id if written else None

    async def _reserve(self, session: AsyncSession, row: OutcomePayment, at: datetime) -> None:
        if not self._payable(row):
            return
        payable, pending = await self._charge(
            session, row, at, f"outcome:{row.referral_id}:reserve:{row.sequence}", Phase.PENDING
        )
        if payable:
            row.pending_transaction_id = pending
            self._settle(row, PaymentStatus.RESERVED if pending else PaymentStatus.UNRESERVED)

    async def _pay(self, session: AsyncSession, row: OutcomePayment, at: datetime) -> None:
        if not self._payable(row):
            return
        payable, paid = await self._charge(session, row, at, f"outcome:{row.referral_id}:pay", Phase.POSTED)
        if paid:
            self._settle(row, PaymentStatus.PAID, paid=paid)
        elif payable:
            self._settle(row, PaymentStatus.OWED, reason="waiting for funds in a stream that may pay it")

    @staticmethod
    def _settle(
        row: OutcomePayment, status: PaymentStatus, *, paid: str | None = None, reason: str = ""
    ) -> None:
        row.status = status.value
        row.reason = reason
        if paid:
            row.paid_transaction_id = paid
        payments.add(1, {"status": status.value})
