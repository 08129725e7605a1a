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
import json
import logging
import os
import random
import smtplib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage

import aiohttp
from ach.notifications.v1 import notifications_pb2
from ach_events.outbox import Outbox
from ach_events.topics import NOTIFICATION_EVENTS
from ach_platform.clock import as_utc, to_timestamp, utc_now
from ach_platform.database import insert_once
from ach_platform.settings import ConfigError
from opentelemetry import metrics, propagate, trace
from sqlalchemy import and_, or_, update
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Session
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_notifications import domain
from ach_notifications.destinations import (
    DestinationPolicy,
    DestinationRefused,
    GuardedResolver,
    check_literal,
)
from ach_notifications.residents import ContactUnavailable, ResidentContacts
from ach_notifications.sealing import SecretBox, SecretUnreadable
from ach_notifications.store import DeliveryRecord, PartnerChannel, PartnerCircuit

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


# What the partner reads in its delivery log: the class of the problem, never which address or port
# answered (the operator's log has the host).
REFUSED_DESTINATION = "destination not allowed: webhooks go to public addresses only"


@dataclass(frozen=True)
class DeliverySettings:
    retry: domain.RetryPolicy = field(default_factory=domain.RetryPolicy)
    breaker: domain.BreakerPolicy = field(default_factory=domain.BreakerPolicy)
    timeout_s: float = 10.0
    poll_s: float = 1.0  # idle: new deliveries wake the worker on commit; this finds retries due
    concurrency: int = 32
    # Where webhooks may go: public addresses, and what NOTIFY_WEBHOOK_ALLOWLIST names.
    destinations: DestinationPolicy = field(default_factory=DestinationPolicy)
    smtp_host: str = ""
    smtp_port: int = 25
    mail_from: str = "notifications@ach.local"
    # Messages to residents by SMS: a Twilio-compatible "send a message" endpoint (form To, From, Body).
    sms_gateway_url: str = ""
    sms_user: str = ""
    sms_token: str = ""
    sms_from: str = ""

    @classmethod
    def from_env(cls) -> DeliverySettings:
        def number(name: str, default: float, low: float) -> float:
            raw = os.environ.get(name, "")
            try:
                value = float(raw) if raw else default
            except ValueError:
                raise ConfigError(f"{name} must be a number, not {raw!r}") from None
            if value < low:
                raise ConfigError(f"{name} must be at least {low:g}, not {raw}")
            return value

        return cls(
            retry=domain.RetryPolicy(
                max_attempts=int(number("NOTIFY_MAX_ATTEMPTS", 24, 1)),
                base_s=number("NOTIFY_BACKOFF_BASE_S", 1.0, 0.001),
                cap_s=number("NOTIFY_BACKOFF_CAP_S", 600.0, 0.001),
            ),
            breaker=domain.BreakerPolicy(
                failures_to_open=int(number("NOTIFY_BREAKER_FAILURES", 5, 1)),
                cooldown_s=number("NOTIFY_BREAKER_COOLDOWN_S", 30.0, 0.001),
            ),
            timeout_s=number("NOTIFY_TIMEOUT_S", 10.0, 0.1),
            poll_s=number("NOTIFY_POLL_S", 1.0, 0.001),
            concurrency=int(number("NOTIFY_CONCURRENCY", 32, 1)),
            destinations=DestinationPolicy.from_env(),
            smtp_host=os.environ.get("SMTP_HOST", ""),
            smtp_port=int(number("SMTP_PORT", 25, 1)),
            mail_from=os.environ.get("NOTIFY_MAIL_FROM", "notifications@ach.local"),
            sms_gateway_url=os.environ.get("SMS_GATEWAY_URL", ""),
            sms_user=os.environ.get("SMS_GATEWAY_USER", ""),
            sms_token=os.environ.get("SMS_GATEWAY_TOKEN", ""),
            sms_from=os.environ.get("SMS_FROM", ""),
        )


@dataclass(frozen=True)
class Attempt:
    """One delivery in a worker's hands, with where it goes."""

    delivery_id: str
    partner_id: str
    kind: str
    address: str
    secret: str
    payload: dict[str, str]
    traceparent: str
    created_at: datetime


@dataclass(frozen=True)
class Result:
    ok: bool
    error: str = ""
    retry_after_s: float = 0.0
    withheld: bool = False  # not sent on purpose (the resident asked not to be contacted): no retry


Send = Callable[[Attempt], Awaitable[Result]]
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
        self._box = box  # opens webhook secrets sealed at rest
        self._sessions = sessions
        self._outbox = outbox
        self._settings = settings
        self._rng = rng or random.Random()
        self._residents = residents  # where a resident's message goes, asked when sending
        self._organization_name = organization_name  # a partner's name, for residents' messages
        self._session: aiohttp.ClientSession | None = None  # made on first use, inside the loop
        self._gateway: aiohttp.ClientSession | None = None  # the operator's SMS gateway (not guarded)
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

    async def run(self) -> None:
        """Keep up to ``concurrency`` attempts in flight: a slow endpoint holds one slot, while the
        others are claimed, sent and recorded around it."""
        last_count = 0.0
        recorders: set[asyncio.Task[None]] = set()
        try:
            while True:
                started = 0
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
                        self.pending_gauge = await self._count_pending()
                        last_count = time.monotonic()
                except Exception:  # the database is away: try again, the rows wait
                    log.exception("delivery step failed")
                    await asyncio.sleep(1)
                if not started:
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
            await self.close()

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

    async def close(self) -> None:
        for session in (self._session, self._gateway):
            if session is not None:
                await session.close()
        self._session = self._gateway = None

    def _gateway_http(self) -> aiohttp.ClientSession:
        """For the endpoints the operator configured (the SMS gateway may well be internal)."""
        if self._gateway is None:
            self._gateway = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout_s)
            )
        return self._gateway

    def _http(self) -> aiohttp.ClientSession:
        # aiohttp, not httpx: a webhook costs ~0.08 ms of CPU with it against ~0.9 ms (measured on
        # this machine), and the worker sends one per notice.
        if self._session is None:
            # trust_env stays off: with it aiohttp reads the proxy settings and ~/.netrc again, in a
            # thread, for every request.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout_s),
                # Every connection's addresses checked when they are resolved (no DNS rebinding).
                connector=aiohttp.TCPConnector(resolver=GuardedResolver(self._settings.destinations)),
            )
        return self._session

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
        but not taken, in flight or waiting for an earlier one, are looked at again after a step
        that worked, or at poll_s.)"""
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

    async def _count_pending(self) -> int:
        async with self._sessions() as session:
            found = await session.exec(
                select(func.count()).select_from(DeliveryRecord).where(DeliveryRecord.status == PENDING)
            )
            return int(found.one())

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
                if attempt.partner_id == domain.RESIDENTS:
                    result = await self._to_resident(attempt)
                elif attempt.kind == "webhook":
                    result = await self._webhook(attempt)
                else:
                    result = await self._email(attempt)
            except Exception as exc:  # never let one partner's failure stop the worker
                result = Result(False, f"{type(exc).__name__}")
            span.set_attribute("ach.delivered", result.ok)
            if not result.ok:
                span.set_status(trace.StatusCode.ERROR, result.error)
        return attempt, result, span

    async def _webhook(self, attempt: Attempt) -> Result:
        body = json.dumps(attempt.payload, separators=(",", ":"), sort_keys=True).encode()
        try:
            secret = self._box.open(attempt.secret) if self._box else attempt.secret
        except SecretUnreadable as exc:
            return Result(False, str(exc))
        headers = {
            "Content-Type": "application/json",
            domain.DELIVERY_ID_HEADER: attempt.delivery_id,
            domain.SIGNATURE_HEADER: domain.signature(secret, int(time.time()), body),
            "User-Agent": "ach-notifications/1",
        }
        propagate.inject(headers)  # the receiver's own tracing can join the referral's trace
        try:
            check_literal(self._settings.destinations, attempt.address)
            async with self._http().post(
                attempt.address, data=body, headers=headers, allow_redirects=False
            ) as answer:
                await drain(answer)
                return answered(answer.status, answer.headers.get("Retry-After", ""))
        except TimeoutError:
            return Result(False, f"timed out after {self._settings.timeout_s:g} s")
        except DestinationRefused:
            return Result(False, REFUSED_DESTINATION)
        except aiohttp.ClientError as exc:
            if isinstance(getattr(exc, "os_error", None), DestinationRefused):
                return Result(False, REFUSED_DESTINATION)
            return Result(False, f"unreachable: {type(exc).__name__}")

    async def _email(self, attempt: Attempt) -> Result:
        subject = f"ACH network: {attempt.payload['event_type']} ({attempt.payload['subject_id']})"
        return await self._mail(attempt.delivery_id, attempt.address, subject, email_text(attempt.payload))

    async def _mail(self, delivery_id: str, to: str, subject: str, text: str) -> Result:
        s = self._settings
        if not s.smtp_host:
            return Result(False, "no SMTP server configured (SMTP_HOST)")
        message = EmailMessage()
        message["From"] = s.mail_from
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = f"<{delivery_id}@ach.local>"  # receivers can deduplicate
        message.set_content(text)

        def send() -> None:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.timeout_s) as smtp:
                smtp.send_message(message)

        try:
            await asyncio.to_thread(send)
        except (OSError, smtplib.SMTPException) as exc:
            return Result(False, f"SMTP: {type(exc).__name__}")  # never the address
        return Result(True)

    async def _to_resident(self, attempt: Attempt) -> Result:
        """The resident's current wish decides (it may have changed since the message was queued):
        the address and language come from identity now, the text from the maintained templates."""
        if self._residents is None:
            return Result(False, "messages to residents need the identity service (NOTIFY_IDENTITY_ADDRESS)")
        payload = attempt.payload
        try:
            contact = await self._residents(payload["resident_id"], payload["referral_id"])
        except ContactUnavailable as exc:
            return Result(False, str(exc))
        if not contact.channel:
            return Result(False, "the resident asked not to be contacted", withheld=True)
        service = payload.get("service")
        message = domain.resident_message(
            payload["template"],
            contact.language,
            self._organization_name(payload["organization_id"]) if payload["organization_id"] else "",
            service if isinstance(service, dict) else None,
        )
        trace.get_current_span().set_attribute("ach.message_language", message.language)
        if contact.channel == "sms":
            return await self._sms(attempt.delivery_id, contact.address, message.text)
        return await self._mail(attempt.delivery_id, contact.address, message.subject, message.text)

    async def _sms(self, delivery_id: str, to: str, text: str) -> Result:
        s = self._settings
        if not s.sms_gateway_url:
            return Result(False, "no SMS gateway configured (SMS_GATEWAY_URL)")
        try:
            async with self._gateway_http().post(
                s.sms_gateway_url,
                data={"To": to, "From": s.sms_from, "Body": text},
                auth=aiohttp.BasicAuth(s.sms_user, s.sms_token) if s.sms_user else None,
                headers={"Idempotency-Key": delivery_id, "User-Agent": "ach-notifications/1"},
                allow_redirects=False,
            ) as answer:
                await drain(answer)
                return answered(answer.status, answer.headers.get("Retry-After", ""), "SMS gateway ")
        except TimeoutError:
            return Result(False, f"SMS gateway timed out after {s.timeout_s:g} s")
        except aiohttp.ClientError as exc:
            return Result(False, f"SMS gateway unreachable: {type(exc).__name__}")

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


def publish_delivered(session: AsyncSession, outbox: Outbox, row: DeliveryRecord, at: datetime) -> None:
    """NotificationDelivered: a delivery reached its end (delivered, failed for good, withheld)."""
    outbox.add(
        session,
        NOTIFICATION_EVENTS,
        notifications_pb2.NotificationDelivered(
            delivery_id=row.id,
            partner_id=row.partner_id,
            channel=row.channel,
            subject_type=row.subject_type,
            subject_id=row.subject_id,
            status=row.status,  # type: ignore[arg-type]
            delivered_at=to_timestamp(at),
            attempts=row.attempts,
            reason=row.last_error,
        ),
        key=row.subject_id,
    )


async def drain(answer: aiohttp.ClientResponse) -> None:
    """Read the (unused) answer's body, up to 64 KiB, so the connection is kept for the next request;
    aiohttp closes a connection whose body was left unread, and the next webhook opens a new one."""
    left = 65536
    while left > 0 and (chunk := await answer.content.read(left)):
        left -= len(chunk)


def answered(status: int, retry_after: str, who: str = "") -> Result:
    """An HTTP answer as an outcome: only a 2xx acknowledges; a Retry-After (seconds) is honoured."""
    if domain.acknowledged(status):
        return Result(True)
    return Result(False, f"{who}answered HTTP {status}", float(retry_after) if retry_after.isdigit() else 0.0)


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


def email_text(payload: dict[str, str]) -> str:
    """Ids only, like the webhook: the partner signs in to read the referral."""
    return (
        f"A {payload['subject_type']} of yours in the ACH network changed: {payload['event_type']}.\n"
        f"{payload['subject_type'].capitalize()} id: {payload['subject_id']}\n"
        f"Delivery id: {payload['delivery_id']}\n\n"
        "Sign in to the network to read it. This message carries no information about the resident.\n"
    )


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
