"""The timer worker: fires referrals' due timers (reminders, escalations, the acceptance limit).

Durable: a referral's next timer is a column of the referral, written with every change, so timers
survive restarts. Fired once, however many replicas run: a worker takes a due timer with a
conditional update (only if it is still the one it read), in the transaction that fires it and
writes the next one; another replica's update then matches nothing.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from ach_platform.clock import as_utc, utc_now
from opentelemetry import metrics, trace
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_referrals import domain
from ach_referrals.store import ReferralRecord, due_timers, take_timer
from ach_referrals.workflow import ReferralWorkflow

log = logging.getLogger(__name__)
tracer = trace.get_tracer("ach_referrals.timers")
fired = metrics.get_meter("ach_referrals.timers").create_counter(
    "ach_referrals_timers_fired", unit="{timer}", description="Referral timers fired, by kind"
)


class TimerWorker:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], workflow: ReferralWorkflow, poll_s: float = 1.0
    ) -> None:
        self._sessions = sessions
        self._workflow = workflow
        self._poll_s = poll_s
        for kind in domain.TimerKind:  # every series from the start: an alert sees the first breach
            fired.add(0, {"kind": kind.value})

    async def run(self) -> None:
        while True:
            try:
                worked = await self.step()
            except Exception:  # the database is away: the timers wait in their rows
                log.exception("timer step failed")
                worked = 0
            if not worked:
                await asyncio.sleep(self._poll_s)

    async def step(self, now: datetime | None = None) -> int:
        """Fire the due timers; how many this worker fired."""
        now = now or utc_now()
        async with self._sessions() as session:
            due = await due_timers(session, now, 100)
        count = 0
        for referral_id, due_at in due:
            async with self._sessions() as session, session.begin():
                count += await self._fire(session, referral_id, due_at, now)
        return count

    async def _fire(self, session: AsyncSession, referral_id: str, due_at: datetime, now: datetime) -> int:
        if not await take_timer(session, referral_id, due_at):
            return 0  # another replica fired it, or the referral changed meanwhile
        referral = await session.get(ReferralRecord, referral_id, populate_existing=True)
        assert referral is not None
        status = domain.Status(referral.status)
        timer = domain.next_timer(
            status,
            as_utc(referral.updated_at),
            referral.reminders_sent,
            referral.escalated,
            self._workflow.timers,
        )
        if timer is None or timer.due_at > now:
            self._workflow.schedule(referral)  # the policy changed since: only reschedule
            session.add(referral)
            return 0
        with tracer.start_as_current_span(
            f"referral timer {timer.kind}", attributes={"ach.referral_id": referral.id}
        ):
            if timer.kind is domain.TimerKind.REMINDER:
                referral.reminders_sent = timer.number
                self._workflow.publisher.reminder_sent(session, referral, timer.number, now)
                self._workflow.schedule(referral)
            elif timer.kind is domain.TimerKind.ESCALATION:
                referral.escalated = True
                self._workflow.publisher.escalated(session, referral, now)
                self._workflow.schedule(referral)
            else:
                # Not accepted in time: rejected on the target's behalf, then no wrong door.
                reason = domain.not_accepted_reason(self._workflow.timers.accept_within)
                self._workflow.record_change(
                    session,
                    referral,
                    domain.Status.REJECTED,
                    now,
                    reason=reason,
                    reason_code="not-accepted-in-time",
                )
                await self._workflow.after_rejection(session, referral, "not-accepted-in-time")
            session.add(referral)
        fired.add(1, {"kind": timer.kind.value})
        return 1
