"""Idempotent event consumers on FastStream, with bounded retries and dead letters.

Records come in batches. For every record: decode the envelope (an undecodable or schema-invalid
record is dead-lettered at once); skip event types this consumer does not handle; otherwise run the
handler and record the event id in the inbox in the same transaction. A handler that keeps
failing after ``max_attempts`` is dead-lettered with the reason; the consumer goes on with the
next record. Offsets are committed only after that, never before the handler (as FastStream's
default would), and at most every ``COMMIT_EVERY_S`` (the offsets of the records handled, not the
consumer's position): a commit per batch was a broker round trip per event or two under a steady
load. Records handled but not yet committed when a process dies come again and the inbox drops
them. When the database itself is unreachable the records are not dead-lettered: they are nacked
(the consumer seeks back to them) and redelivered once the database is back.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ach_platform.errors import described
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from google.protobuf.message import Message
from opentelemetry import metrics, propagate, trace
from sqlalchemy import insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_events.envelope import Envelope, EnvelopeError
from ach_events.inbox import InboxEvent
from ach_events.topics import Topic, dead_letter_topic, namespaced

log = logging.getLogger(__name__)
tracer = trace.get_tracer("ach_events.consumer")
meter = metrics.get_meter("ach_events.consumer")
consumed_counter = meter.create_counter(
    "ach_events_consumed", unit="{event}", description="Events consumed, by consumer, topic and result"
)
handle_duration = meter.create_histogram(
    "ach_event_handle_duration", unit="s", description="Time to handle one event (decode to commit)"
)
end_to_end_lag = meter.create_histogram(
    "ach_event_lag", unit="s", description="From the event's ce_time to the end of its handling"
)
RESULTS = ("processed", "duplicate", "skipped", "dead_lettered")
_live: weakref.WeakSet[EventConsumer] = weakref.WeakSet()


def _lag_observations(_options: Any) -> list[metrics.Observation]:
    observed: list[metrics.Observation] = []
    for consumer in list(_live):
        for topic, lag in consumer.lag_by_topic().items():
            observed.append(metrics.Observation(lag, {"consumer": consumer.name, "topic": topic}))
    return observed


meter.create_observable_gauge(
    "ach_consumer_lag",
    callbacks=[_lag_observations],
    unit="{event}",
    description="Records on the broker not yet handled, by consumer and topic (high watermark - next)",
)

EventHandler = Callable[[AsyncSession, Envelope, Any], Awaitable[None]]
# What a handler is registered for: the message class (or its full name, the CloudEvents type).
EventKey = type[Message] | str
# Before any handler: given the record's topic and its envelope, a reason to refuse it (it then goes
# to the dead-letter topic with that reason) or None to let it through. E.g. the partner gateway
# refuses an event that claims a sender other than the partner whose topic carried it.
Admission = Callable[[str, Envelope], str | None]


Rejection = Callable[[AsyncSession], Awaitable[None]]

COMMIT_EVERY_S = 0.2
INBOX = InboxEvent.__table__  # type: ignore[attr-defined]


class PoisonEvent(Exception):
    """Raised by a handler for an event that can never be processed (e.g. it breaks a domain rule).
    It is dead-lettered at once with this message as the reason, without retries.

    ``rejection``, when given, records what the rejection itself causes (e.g. an event telling the
    sender why, through the outbox); it runs after the dead letter is sent, in one transaction with
    the inbox record, so a redelivered event is neither rejected twice nor answered twice."""

    phi_free = True  # its reason is written by the handler to name fields and rules, not values

    def __init__(self, reason: str, rejection: Rejection | None = None) -> None:
        super().__init__(reason)
        self.rejection = rejection


def require_fields(message: Message, *names: str) -> None:
    """Schema rules protobuf cannot state (proto3 has no required fields): a missing one makes the
    event poison, dead-lettered with the fields named."""
    missing = [name for name in names if not getattr(message, name)]
    if missing:
        raise PoisonEvent(f"{message.DESCRIPTOR.full_name} without {', '.join(missing)}")


@dataclass(frozen=True)
class Outcome:
    result: str  # processed | duplicate | skipped | dead_lettered
    reason: str = ""


class EventConsumer:
    def __init__(
        self,
        *,
        name: str,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        topics: tuple[Topic, ...],
        handlers: Mapping[str, EventHandler],
        max_attempts: int = 3,
        retry_backoff_s: float = 0.2,
        max_batch: int = 500,
        pattern: str | None = None,
        group: str | None = None,
        admit: Admission | None = None,
        commit_every_s: float = COMMIT_EVERY_S,
    ) -> None:
        self.name = name
        self._pattern = pattern
        self._group = group or name
        self._admit = admit
        self._sessions = sessions
        self._producer = producer
        self.topics = topics
        self._handlers = dict(handlers)
        self._max_attempts = max_attempts
        self._retry_backoff_s = retry_backoff_s
        self._max_batch = max_batch
        self.dead_letter_topic = dead_letter_topic(name)
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._commits = OffsetCommits(name, commit_every_s)
        # For the lag gauge: the next offset to handle per partition, and the client that fetches.
        self._next_offsets: dict[TopicPartition, int] = {}
        self._kafka: AIOKafkaConsumer | None = None
        _live.add(self)
        # Every series exists from the start (at 0): an alert on increase() sees the first dead letter.
        for topic in topics:
            for result in RESULTS:
                consumed_counter.add(0, {"consumer": name, "topic": topic.physical_name, "result": result})

    def lag_by_topic(self) -> dict[str, int]:
        kafka = self._kafka
        if kafka is None:
            return {}
        lag: dict[str, int] = {}
        for tp, next_offset in list(self._next_offsets.items()):
            highwater = kafka.highwater(tp)
            if highwater is not None:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(highwater - next_offset, 0)
        return lag

    def subscribe(self, broker: KafkaBroker) -> None:
        async def on_batch(message: KafkaMessage) -> None:
            records: list[ConsumerRecord[bytes, bytes]] = list(message.raw_message)  # type: ignore[arg-type]
            try:
                await self.process_batch(records)
            except BaseException:
                await message.nack()  # seek back: the batch comes again (the database was away)
                raise
            await self._commits.handled(message.consumer, records)  # type: ignore[arg-type]
            self._kafka = message.consumer  # type: ignore[assignment]
            for record in records:
                self._next_offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1

        topics = [] if self._pattern else [t.physical_name for t in self.topics]
        where: dict[str, Any] = {"pattern": self._pattern} if self._pattern else {}
        broker.subscriber(
            *topics,
            **where,
            group_id=namespaced(self._group),
            ack_policy=AckPolicy.MANUAL,  # committed by OffsetCommits, nacked by on_batch
            auto_offset_reset="earliest",
            batch=True,
            max_records=self._max_batch,
            batch_timeout_ms=50,
        )(on_batch)

    async def drained(self) -> None:
        """Wait until no record is being processed (used by a graceful stop)."""
        await self._idle.wait()

    async def stopping(self) -> None:
        """A graceful stop begins: commit what was handled, and from now on after every batch (the
        consumers are about to close; a deferred commit would find them gone)."""
        await self._commits.stopping()

    async def process(self, record: ConsumerRecord[bytes, bytes]) -> Outcome:
        return (await self.process_batch([record]))[0]

    async def process_batch(self, records: list[ConsumerRecord[bytes, bytes]]) -> list[Outcome]:
        """Handle records in order. The usual case, a batch of good events, commits once; when any
        handler fails, the batch is rolled back and handled record by record, with retries, so a
        poison event is isolated and dead-lettered alone."""
        self._in_flight += 1
        self._idle.clear()
        started = asyncio.get_running_loop().time()
        try:
            outcomes = await self._process_batch(records)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
        for record, outcome in zip(records, outcomes, strict=True):
            consumed_counter.add(1, {"consumer": self.name, "topic": record.topic, "result": outcome.result})
        if records:
            handle_duration.record(
                (asyncio.get_running_loop().time() - started) / len(records), {"consumer": self.name}
            )
        return outcomes

    async def _process_batch(self, records: list[ConsumerRecord[bytes, bytes]]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(records)
        work: list[tuple[int, Envelope, Message, EventHandler]] = []
        for i, record in enumerate(records):
            try:
                envelope = Envelope.from_record(record.key, record.value, record.headers)
                refusal = self._admit(record.topic, envelope) if self._admit else None
                if refusal:
                    outcomes[i] = await self._dead_letter(record, refusal, attempts=0)
                    continue
                handler = self._handlers.get(envelope.type)
                if handler is None:
                    # Not poison: a type this consumer has no interest in (a topic carries several).
                    outcomes[i] = Outcome("skipped")
                    continue
                work.append((i, envelope, envelope.message(), handler))
            except EnvelopeError as exc:
                outcomes[i] = await self._dead_letter(record, str(exc), attempts=0)
        # One record goes straight to the record-by-record path: no point in trying it twice.
        if work and (len(work) == 1 or not await self._handle_together(records, work, outcomes)):
            for i, envelope, message, handler in work:
                outcomes[i] = await self._handle_one(records[i], envelope, message, handler)
        for i, envelope, _, _ in work:
            end_to_end_lag.record(
                max(0.0, (datetime.now(UTC) - envelope.time).total_seconds()),
                {"consumer": self.name, "topic": records[i].topic},
            )
        return [o or Outcome("skipped") for o in outcomes]

    def _span(self, record: ConsumerRecord[bytes, bytes], envelope: Envelope) -> Any:
        return tracer.start_as_current_span(
            f"{record.topic} process",
            context=propagate.extract(envelope.trace_headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": record.topic,
                "messaging.consumer.group.name": self.name,
                "messaging.message.id": envelope.id,
                "messaging.kafka.message.offset": record.offset,
                "cloudevents.event_type": envelope.type,
            },
        )

    async def _handle_together(
        self,
        records: list[ConsumerRecord[bytes, bytes]],
        work: list[tuple[int, Envelope, Message, EventHandler]],
        outcomes: list[Outcome | None],
    ) -> bool:
        """All handlers and inbox records of the batch in one transaction; False if any handler failed."""
        results: dict[int, Outcome] = {}
        try:
            async with self._sessions() as session, session.begin():
                ids = [envelope.id for _, envelope, _, _ in work]
                seen = set(
                    (
                        await session.exec(
                            select(InboxEvent.event_id).where(
                                InboxEvent.consumer == self.name, col(InboxEvent.event_id).in_(ids)
                            )
                        )
                    ).all()
                )
                inbox: list[dict[str, Any]] = []
                for i, envelope, message, handler in work:
                    if envelope.id in seen:
                        results[i] = Outcome("duplicate")
                        continue
                    seen.add(envelope.id)
                    record = records[i]
                    with self._span(record, envelope) as span:
                        inbox.append(self._inbox_row(record, envelope))
                        await handler(session, envelope, message)
                        span.set_attribute("ach.consume.result", "processed")
                    results[i] = Outcome("processed")
                if inbox:
                    await session.exec(insert(INBOX), params=inbox)  # type: ignore[call-overload]
        except DBAPIError as exc:
            if exc.connection_invalidated or _is_unavailable(exc):
                log.warning("database unavailable while consuming; the records will be redelivered")
                raise
            return False
        except Exception:
            return False
        for i, outcome in results.items():
            outcomes[i] = outcome
        return True

    def _inbox_row(self, record: ConsumerRecord[bytes, bytes], envelope: Envelope) -> dict[str, Any]:
        # Rows for a plain INSERT, not ORM objects: one per consumed event in every service, and the
        # ORM's object and unit of work cost more than the statement.
        return {
            "consumer": self.name,
            "event_id": envelope.id,
            "event_type": envelope.type,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "processed_at": datetime.now(UTC),
        }

    async def _handle_one(
        self,
        record: ConsumerRecord[bytes, bytes],
        envelope: Envelope,
        message: Message,
        handler: EventHandler,
    ) -> Outcome:
        with self._span(record, envelope) as span:
            outcome = await self._handle_with_retries(record, envelope, message, handler)
            span.set_attribute("ach.consume.result", outcome.result)
        return outcome

    async def _handle_with_retries(
        self,
        record: ConsumerRecord[bytes, bytes],
        envelope: Envelope,
        message: Message,
        handler: EventHandler,
    ) -> Outcome:
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._sessions() as session, session.begin():
                    seen = await session.exec(
                        select(InboxEvent.event_id).where(
                            InboxEvent.consumer == self.name, InboxEvent.event_id == envelope.id
                        )
                    )
                    if seen.first() is not None:
                        return Outcome("duplicate")
                    await session.exec(insert(INBOX), params=[self._inbox_row(record, envelope)])  # type: ignore[call-overload]
                    await handler(session, envelope, message)
                return Outcome("processed")
            except PoisonEvent as exc:
                outcome = await self._dead_letter(record, f"rejected by handler: {exc}", attempts=attempt)
                if exc.rejection is not None:
                    async with self._sessions() as session, session.begin():
                        await session.exec(insert(INBOX), params=[self._inbox_row(record, envelope)])  # type: ignore[call-overload]
                        await exc.rejection(session)
                return outcome
            except IntegrityError as exc:
                if _is_inbox_conflict(exc):
                    return Outcome("duplicate")  # a concurrent delivery of the same event won
                reason = f"handler failed: IntegrityError: {described(exc)}"
            except DBAPIError as exc:
                if exc.connection_invalidated or _is_unavailable(exc):
                    # The database, not the event, is at fault: nack so the record comes back later.
                    log.warning("database unavailable while consuming; the record will be redelivered")
                    raise
                reason = f"handler failed: {type(exc).__name__}: {described(exc)}"
            except Exception as exc:
                reason = f"handler failed: {type(exc).__name__}: {described(exc)}"
            if attempt >= self._max_attempts:
                return await self._dead_letter(
                    record, f"{reason} (after {attempt} attempts)", attempts=attempt
                )
            log.warning(
                "event handler failed; retrying",
                extra={"consumer": self.name, "event_id": envelope.id, "attempt": attempt},
            )
            await asyncio.sleep(self._retry_backoff_s * 2 ** (attempt - 1))

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], reason: str, *, attempts: int
    ) -> Outcome:
        reason = reason[:MAX_REASON]
        value, key, headers = dead_letter_of(record, reason, self.name, attempts)
        # Awaited before the offset is committed: a dead letter is never lost either.
        try:
            await self._producer.send_and_wait(
                self.dead_letter_topic.physical_name, value=value, key=key, headers=headers
            )
        except (MessageSizeTooLargeError, RecordTooLargeError):
            # Bigger than the broker takes (its limit below ours): the reason and where the record
            # is, nothing of it. A dead letter must not fail on size and stop the consumer.
            value, key, headers = dead_letter_of(record, reason, self.name, attempts, body_limit=0)
            await self._producer.send_and_wait(
                self.dead_letter_topic.physical_name, value=value, key=key, headers=headers
            )
        log.warning(
            "event dead-lettered",
            extra={
                "consumer": self.name,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "reason": reason,
            },
        )
        return Outcome("dead_lettered", reason)


# What a dead letter keeps of the record: the body and headers when they fit well within a record's
# size limit, else the reason and where the record is (source topic, partition and offset, where it
# stays for that topic's retention). Nothing in them can make the dead letter too big to send.
DEAD_LETTER_BODY_LIMIT = 512 * 1024
DEAD_LETTER_HEADERS_LIMIT = 16 * 1024
MAX_REASON = 1000


def dead_letter_of(
    record: ConsumerRecord[bytes, bytes],
    reason: str,
    consumer: str,
    attempts: int,
    body_limit: int = DEAD_LETTER_BODY_LIMIT,
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    original = list(record.headers or ())
    header_bytes = sum(len(k) + len(v or b"") for k, v in original)
    body = len(record.value or b"")
    ours = [
        ("ach_dlq_reason", reason.encode()),
        ("ach_dlq_consumer", consumer.encode()),
        ("ach_dlq_source_topic", record.topic.encode()),
        ("ach_dlq_source_partition", str(record.partition).encode()),
        ("ach_dlq_source_offset", str(record.offset).encode()),
        ("ach_dlq_attempts", str(attempts).encode()),
        ("ach_dlq_time", datetime.now(UTC).isoformat().encode()),
    ]
    value, key = record.value, record.key
    if body > body_limit:
        value = None
        ours.append(("ach_dlq_body_omitted", f"{body} bytes: read it at the source offset".encode()))
    if header_bytes > DEAD_LETTER_HEADERS_LIMIT or body_limit == 0:
        original = []
        ours.append(("ach_dlq_headers_omitted", f"{header_bytes} bytes".encode()))
    if key is not None and len(key) > 1024:
        key = key[:1024]
    return value, key, [*original, *ours]


class OffsetCommits:
    """The offsets of handled records, committed to the group at most every COMMIT_EVERY_S: at once
    when the last commit is older, else by a timer. Explicit offsets (the next record to read per
    partition), never the consumer's position, which can be ahead of what was handled."""

    def __init__(self, name: str, every_s: float = COMMIT_EVERY_S) -> None:
        self._name = name
        self._every_s = every_s
        self._due: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._timer: asyncio.Task[None] | None = None
        self._last = 0.0
        self._immediate = False

    async def handled(self, consumer: AIOKafkaConsumer, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        for record in records:
            partition = TopicPartition(record.topic, record.partition)
            self._due[partition] = max(self._due.get(partition, 0), record.offset + 1)
        self._consumer = consumer
        wait = self._last + self._every_s - asyncio.get_running_loop().time()
        if self._immediate or wait <= 0:
            await self.commit()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._commit_after(wait), name=f"{self._name}-commit")

    async def _commit_after(self, wait_s: float) -> None:
        await asyncio.sleep(wait_s)
        self._timer = None
        await self.commit()

    async def commit(self) -> None:
        due, self._due = self._due, {}
        self._last = asyncio.get_running_loop().time()
        if not due or self._consumer is None:
            return
        try:
            await self._consumer.commit({p: OffsetAndMetadata(o, "") for p, o in due.items()})
        except (KafkaError, AssertionError) as exc:
            # E.g. the partitions went to another member in a rebalance: it reads them again from
            # the last commit, and the inbox drops what was handled here already.
            log.warning("offset commit failed", extra={"consumer": self._name, "reason": type(exc).__name__})

    async def stopping(self) -> None:
        self._immediate = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.commit()


def _is_inbox_conflict(exc: IntegrityError) -> bool:
    return "inbox_event" in str(exc.orig) or "inbox_event" in str(exc.statement or "")


# PostgreSQL conditions that are the database's, not the event's: connection exceptions (08),
# serialization failure and deadlock (40001, 40P01), too many connections (53300) and the like
# (53), the server shutting down or starting (57P01-57P03).
TRANSIENT_SQLSTATES = ("08", "40001", "40P01", "53", "57P01", "57P02", "57P03")


def _is_unavailable(exc: DBAPIError) -> bool:
    state = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")
    if state and state.startswith(TRANSIENT_SQLSTATES):
        return True
    text = str(exc.orig).lower()
    return any(
        s in text
        for s in (
            "could not connect",
            "connection refused",
            "server closed",
            "terminating connection",
            "database is locked",
            "unable to open database",
            "too many connections",
            "deadlock detected",
            "the database system is starting up",
            "the database system is shutting down",
        )
    )
