"""The delivery worker: sends the pending deliveries of the log to partners' webhooks and e-mail.

Durable and shared by replicas: a delivery is a row; a worker takes it with a lease (a conditional
update, so two replicas never hold the same one) and writes the outcome in the same transaction as
its NotificationDelivered event. A worker killed mid-attempt leaves a lease that expires, and the
delivery is tried again: at least once, and receivers deduplicate on ACH-Delivery-Id. A delivery
acknowledged (2xx) and recorded is never sent again. Per channel and referral, deliveries go in
the order they were made: a later one waits while an earlier one is still being retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from ach.notifications.v1 import notifications_pb2
from ach_events.outbox import Outbox
from ach_platform.clock import as_utc, utc_now
from ach_platform.database import insert_once
from opentelemetry import metrics, propagate, trace
from sqlalchemy import and_, or_, update
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Session
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_notifications import domain
from ach_notifications.publishers import publish_delivered
from ach_notifications.residents import ResidentContacts
from ach_notifications.sealing import SecretBox
from ach_notifications.settings import DeliverySettings
from ach_notifications.store import DeliveryRecord, HelpQuestion, PartnerChannel, PartnerCircuit
from ach_notifications.transports import Asked, Attempt, Result, Transports

log = logging.getLogger(__name__)
tracer = trace.get_tracer("ach_notifications.deliveries")
meter = metrics.get_meter("ach_notifications.deliveries")
attempts_counter = meter.create_counter(
    "ach_notifications_delivery_attempts",
    unit="{attempt}",
    description="Delivery attempts, by channel kind and outcome (delivered, retry, failed)",
)
latency = meter.create_histogram(
    "ach_notifications_delivery_latency",
    unit="s",
    description="From the referral event to the partner's acknowledgement, by channel kind",
)
PENDING = notifications_pb2.DELIVERY_STATUS_PENDING
DELIVERED = notifications_pb2.DELIVERY_STATUS_DELIVERED
FAILED = notifications_pb2.DELIVERY_STATUS_FAILED
WITHHELD = notifications_pb2.DELIVERY_STATUS_WITHHELD


Outcome = tuple[Attempt, Result, trace.Span]


class DeliveryWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        settings: DeliverySettings,
        rng: random.Random | None = None,
        residents: ResidentContacts | None = None,
        organization_name: Callable[[str], str] = str,
        box: SecretBox | None = None,
    ) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._settings = settings
        self._rng = rng or random.Random()
        self._transports = Transports(settings, residents, organization_name, box)
        self.new_deliveries = asyncio.Event()  # set when a transaction that made deliveries commits
        self._slot_freed = asyncio.Event()  # set when attempts' outcomes are recorded
        self._in_flight = 0
        # Partners whose half-open circuit has its one probe in flight: no second probe meanwhile.
        self._probing: dict[str, str] = {}  # partner id: the probing delivery's id
        self.pending_gauge = 0
        meter.create_observable_gauge(
            "ach_notifications_pending_deliveries",
            callbacks=[lambda _options: [metrics.Observation(self.pending_gauge)]],
            unit="{delivery}",
            description="Deliveries not yet acknowledged (backlog: alert when it grows)",
        )
        self.open_circuits = 0
        meter.create_observable_gauge(
            "ach_notifications_open_circuits",
            callbacks=[lambda _options: [metrics.Observation(self.open_circuits)]],
            unit="{partner}",
            description="Partners whose circuit is open: nothing is sent to them until it closes",
        )
        # Every series exists from the start (at 0): an alert on increase() sees the first failure.
        for channel in ("webhook", "email", "sms"):
            for outcome in ("delivered", "retry", "failed", "withheld"):
                attempts_counter.add(0, {"channel": channel, "outcome": outcome})

    async def run(self) -> None:
        """Keep up to ``concurrency`` attempts in flight: a slow endpoint holds one slot, while the
        others are claimed, sent and recorded around it."""
        last_count = 0.0
        recorders: set[asyncio.Task[None]] = set()
        try:
            while True:
                started, room = 0, 0
                try:
                    room = self._settings.concurrency - self._in_flight
                    if room > 0:
                        tries = await self._start(room)
                        started = len(tries)
                        if tries:
                            recorder = asyncio.create_task(self._record_as_they_land(tries))
                            recorders.add(recorder)
                            recorder.add_done_callback(recorders.discard)
                    if time.monotonic() - last_count > 5:
                        self.pending_gauge, self.open_circuits = await self._count_pending()
                        last_count = time.monotonic()
                except Exception:  # the database is away: try again, the rows wait
                    log.exception("delivery step failed")
                    await asyncio.sleep(1)
                # Fewer found than there was room for: nothing more is due now. What comes due wakes
                # it (a commit, an outcome landing: a later delivery may have waited for it).
                if not started or started < room:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(await self._idle_s()):
                            await self._woken()
                # Cleared before the next look: a commit or an outcome landing meanwhile wakes it again.
                self.new_deliveries.clear()
                self._slot_freed.clear()
        finally:
            for recorder in recorders:  # their leases expire and the deliveries are tried again
                recorder.cancel()
            await asyncio.gather(*recorders, return_exceptions=True)
            await self._transports.close()

    async def _woken(self) -> None:
        """New deliveries were committed, or an attempt ended and freed a slot."""
        waits = [
            asyncio.create_task(self.new_deliveries.wait()),
            asyncio.create_task(self._slot_freed.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def step(self) -> int:
        """Claim the due deliveries, try each once and record every outcome; how many were tried."""
        tries = await self._start(self._settings.concurrency)
        await self._record_as_they_land(tries)
        return len(tries)

    async def _start(self, room: int) -> list[asyncio.Task[Outcome]]:
        claimed = await self._claim(utc_now(), room)
        self._in_flight += len(claimed)
        return [asyncio.create_task(self._try(a)) for a in claimed]

    async def _record_as_they_land(self, tries: list[asyncio.Task[Outcome]]) -> None:
        """Outcomes are recorded as they come, those that land together in one transaction (one
        commit, one fsync): a slow endpoint's attempt does not hold up the acknowledgements of the
        others. A worker dying before a commit loses only those acknowledgements: the deliveries are
        sent again (receivers deduplicate on ACH-Delivery-Id)."""
        waiting: set[asyncio.Task[Outcome]] = set(tries)
        try:
            while waiting:
                landed, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                outcomes = [t.result() for t in landed]
                try:
                    await self._record_all(outcomes)
                except Exception:  # the database is away: the leases expire, they are tried again
                    log.exception("recording delivery outcomes failed")
                finally:
                    self._in_flight -= len(landed)
                    for attempt, _, _ in outcomes:
                        if self._probing.get(attempt.partner_id) == attempt.delivery_id:
                            del self._probing[attempt.partner_id]
                    self._slot_freed.set()
        finally:
            for left in waiting:  # cancelled (the worker stops): their leases expire
                left.cancel()
                self._in_flight -= 1

    async def _idle_s(self) -> float:
        """How long to sleep: until the next retry comes due, at most poll_s. (Deliveries due already
        but not taken, waiting for an earlier one, are looked at again when an outcome lands, or at
        poll_s.)"""
        now = utc_now()
        async with self._sessions() as session:
            found = await session.exec(
                select(func.min(DeliveryRecord.next_attempt_at)).where(
                    DeliveryRecord.status == PENDING, col(DeliveryRecord.next_attempt_at) > now
                )
            )
            due = found.one()
        if due is None:
            return self._settings.poll_s
        wait = (as_utc(due) - now).total_seconds()
        return min(self._settings.poll_s, max(0.01, wait))

    async def _count_pending(self) -> tuple[int, int]:
        """Deliveries pending, and partners whose circuit is open now."""
        async with self._sessions() as session:
            found = await session.exec(
                select(func.count()).select_from(DeliveryRecord).where(DeliveryRecord.status == PENDING)
            )
            opened = await session.exec(
                select(func.count())
                .select_from(PartnerCircuit)
                .where(col(PartnerCircuit.open_until) > utc_now())
            )
            return int(found.one()), int(opened.one())

    async def _claim(self, now: datetime, room: int) -> list[Attempt]:
        d, e = DeliveryRecord, DeliveryRecord.__table__.alias("earlier")  # type: ignore[attr-defined]
        earlier_pending = (
            select(e.c.id)
            .where(
                e.c.channel_id == d.channel_id,
                e.c.subject_id == d.subject_id,
                e.c.status == PENDING,
                or_(e.c.created_at < d.created_at, and_(e.c.created_at == d.created_at, e.c.id < d.id)),
            )
            .exists()
        )
        due = (
            select(DeliveryRecord, PartnerChannel)
            # Messages to residents have no partner channel: their address is asked when sending.
            .join(PartnerChannel, col(PartnerChannel.id) == col(DeliveryRecord.channel_id), isouter=True)
            .where(
                DeliveryRecord.status == PENDING,
                col(DeliveryRecord.next_attempt_at) <= now,
                or_(col(DeliveryRecord.claimed_until).is_(None), col(DeliveryRecord.claimed_until) < now),
                ~earlier_pending,
            )
            .order_by(col(DeliveryRecord.next_attempt_at))
            .limit(room)
        )
        lease = now + timedelta(seconds=self._settings.timeout_s * 2 + 5)
        attempts: list[Attempt] = []
        async with self._sessions() as session, session.begin():
            rows = list((await session.exec(due)).all())
            if not rows:
                return []
            partners = {r.partner_id for r, _ in rows}
            circuits = {
                c.partner_id: c
                for c in (
                    await session.exec(
                        select(PartnerCircuit).where(col(PartnerCircuit.partner_id).in_(partners))
                    )
                ).all()
            }
            probing: dict[str, str] = {}
            for row, channel in rows:
                if channel is None and row.partner_id != domain.RESIDENTS:
                    continue  # its channel was removed (its deliveries are failed with it)
                circuit = circuits.get(row.partner_id)
                breaker = (
                    domain.Breaker(circuit.failures, circuit.open_until) if circuit else domain.Breaker()
                )
                if not breaker.allows(now):
                    row.next_attempt_at = breaker.open_until  # nothing is tried while it is open
                    session.add(row)
                    continue
                if breaker.open_until is not None:  # half-open: one attempt probes the partner
                    if row.partner_id in probing or row.partner_id in self._probing:
                        continue
                    probing[row.partner_id] = row.id
                conn = await session.connection()
                taken = await conn.execute(
                    update(DeliveryRecord.__table__)  # type: ignore[attr-defined]
                    .where(
                        DeliveryRecord.__table__.c.id == row.id,  # type: ignore[attr-defined]
                        DeliveryRecord.__table__.c.status == PENDING,  # type: ignore[attr-defined]
                        or_(
                            col(DeliveryRecord.claimed_until).is_(None),
                            col(DeliveryRecord.claimed_until) < now,
                        ),
                    )
                    .values(claimed_until=lease)
                )
                if taken.rowcount != 1:
                    continue  # another replica took it
                attempts.append(
                    Attempt(
                        row.id,
                        row.partner_id,
                        channel.kind if channel else row.channel,
                        channel.address if channel else "",
                        channel.secret if channel else "",
                        dict(row.payload),
                        row.traceparent,
                        row.created_at,
                    )
                )
        taken_ids = {a.delivery_id for a in attempts}
        self._probing.update({p: d for p, d in probing.items() if d in taken_ids})
        return attempts

    async def _try(self, attempt: Attempt) -> Outcome:
        parent = propagate.extract({"traceparent": attempt.traceparent} if attempt.traceparent else {})
        with tracer.start_as_current_span(
            f"notify {attempt.kind}",
            context=parent,
            kind=trace.SpanKind.PRODUCER,
            attributes={"ach.partner_id": attempt.partner_id, "ach.delivery_id": attempt.delivery_id},
        ) as span:
            try:
                result = await self._transports.send(attempt)
            except Exception as exc:  # never let one partner's failure stop the worker
                result = Result(False, f"{type(exc).__name__}")
            span.set_attribute("ach.delivered", result.ok)
            if not result.ok:
                span.set_status(trace.StatusCode.ERROR, result.error)
        return attempt, result, span

    async def _record_all(self, outcomes: list[Outcome]) -> None:
        now = utc_now()
        s = self._settings
        counted: list[tuple[str, str]] = []
        async with self._sessions() as session, session.begin():
            circuits: dict[str, PartnerCircuit] = {}
            for attempt, result, span in outcomes:
                row = await session.get(DeliveryRecord, attempt.delivery_id)
                if row is None or row.status != PENDING:
                    continue  # its channel was removed meanwhile
                row.attempts += 1
                row.claimed_until = None
                if attempt.partner_id not in circuits:
                    circuits[attempt.partner_id] = await circuit_for_update(session, attempt.partner_id)
                circuit = circuits[attempt.partner_id]
                breaker = domain.Breaker(circuit.failures, circuit.open_until)
                if result.withheld:
                    row.status, row.last_error = WITHHELD, result.error
                    outcome = "withheld"
                elif result.ok:
                    row.status, row.delivered_at, row.last_error = DELIVERED, now, ""
                    if result.question is not None:
                        asked(session, row, result.question, now)
                    breaker = breaker.after_success()
                    outcome = "delivered"
                    latency.record(
                        (now - as_utc(attempt.created_at)).total_seconds(), {"channel": attempt.kind}
                    )
                else:
                    row.last_error = result.error
                    breaker = breaker.after_failure(s.breaker, now)
                    if domain.exhausted(s.retry, row.attempts):
                        row.status = FAILED
                        outcome = "failed"
                        log.warning(
                            "delivery failed for good",
                            extra={
                                "delivery_id": row.id,
                                "partner_id": row.partner_id,
                                "reason": result.error,
                            },
                        )
                    else:
                        delay = max(
                            domain.retry_delay_s(s.retry, row.attempts, self._rng.random()),
                            min(result.retry_after_s, s.retry.cap_s),
                        )
                        row.next_attempt_at = now + timedelta(seconds=delay)
                        outcome = "retry"
                circuit.failures, circuit.open_until = breaker.failures, breaker.open_until
                session.add(row)
                session.add(circuit)
                counted.append((attempt.kind, outcome))
                if row.status != PENDING:
                    with trace.use_span(span, end_on_exit=False):  # the event continues its trace
                        publish_delivered(session, self._outbox, row, now)
        for kind, outcome in counted:
            attempts_counter.add(1, {"channel": kind, "outcome": outcome})


def asked(session: AsyncSession, row: DeliveryRecord, question: Asked, now: datetime) -> None:
    """The question a delivery asked, open for the resident's answer (with the delivery's outcome)."""
    session.add(
        HelpQuestion(
            id=row.id,
            referral_id=str(row.payload.get("referral_id", "")),
            resident_id=str(row.payload.get("resident_id", "")),
            language=question.language,
            channel=question.channel,
            reply_key=question.reply_key,
            asked_at=now,
            open_until=now + domain.QUESTION_OPEN,
        )
    )


async def circuit_for_update(session: AsyncSession, partner_id: str) -> PartnerCircuit:
    """The partner's circuit row, locked until the transaction ends: concurrent outcomes for one
    partner (from this worker or another replica) count every failure, none overwritten."""
    await insert_once(session, PartnerCircuit, {"partner_id": partner_id, "failures": 0})
    found = await session.exec(
        select(PartnerCircuit)
        .where(PartnerCircuit.partner_id == partner_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return found.one()


_WAKE = "ach_notifications_wake"


def wake_after_commit(session: AsyncSession, worker_event: asyncio.Event) -> None:
    """The worker is woken once the deliveries this transaction made are committed (not before:
    it would find nothing, and then sleep through them)."""
    session.sync_session.info[_WAKE] = worker_event


@sa_event.listens_for(Session, "after_commit")
def _wake_worker(session: Session) -> None:
    woken = session.info.pop(_WAKE, None)
    if woken is not None:
        woken.set()


@sa_event.listens_for(Session, "after_rollback")
def _forget_wake(session: Session) -> None:
    session.info.pop(_WAKE, None)
