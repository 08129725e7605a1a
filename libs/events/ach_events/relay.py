"""The outbox relay: publishes committed outbox rows to Kafka in order, then marks them published.

Delivery is at least once (a crash after publishing and before marking republishes the rows);
consumers are idempotent on the event id, so the effect is exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import zlib
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from ach_platform.failpoints import failpoint
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from opentelemetry import metrics, propagate, trace
from sqlalchemy import func, update
from sqlalchemy import select as sql_select  # sqlmodel's select takes at most four columns
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_events.outbox import Outbox, OutboxEvent

log = logging.getLogger(__name__)
tracer = trace.get_tracer("ach_events.relay")
meter = metrics.get_meter("ach_events.relay")
published_counter = meter.create_counter(
    "ach_outbox_published", unit="{event}", description="Outbox events published to Kafka"
)
set_aside_counter = meter.create_counter(
    "ach_outbox_set_aside",
    unit="{event}",
    description="Outbox events Kafka can never take (too big), set aside with the reason",
)
# What no retry mends: the record itself is refused.
UNPUBLISHABLE = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
)
publish_duration = meter.create_histogram(
    "ach_outbox_publish_batch_duration", unit="s", description="Time to publish one outbox batch"
)

COUNT_EVERY_S = 5.0
RELAY_LOCK = 0x0AC4  # the advisory lock space of outbox relays


class OutboxRelay:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        outbox: Outbox,
        *,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
        outbox_topics: tuple[str, ...] = (),
    ) -> None:
        self._sessions = sessions
        self._sqlite = sessions.kw["bind"].dialect.name == "sqlite"
        self._producer = producer
        self._outbox = outbox
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._stopping = asyncio.Event()
        # One lock per service's outbox (services may share a PostgreSQL server, not a database).
        self._lock_key = zlib.crc32(outbox.source.encode()) & 0x7FFFFFFF
        self.backlog = 0
        self._counted_at = -COUNT_EVERY_S  # when the backlog was last counted in the database
        meter.create_observable_gauge(
            "ach_outbox_backlog",
            callbacks=[lambda _options: [metrics.Observation(self.backlog)]],
            unit="{event}",
            description="Outbox events committed but not yet published (counted at most every 5 s)",
        )
        # The oldest event read but not yet published: while Kafka is away it stays, and its age grows.
        self._oldest: datetime | None = None
        self._published_types: Counter[str] = Counter()
        meter.create_observable_gauge(
            "ach_outbox_oldest_age",
            callbacks=[lambda _options: [metrics.Observation(self.oldest_age_s())]],
            unit="s",
            description="Age of the oldest outbox event not yet on Kafka (0 when the outbox is empty)",
        )
        for topic in outbox_topics or ():
            set_aside_counter.add(0, {"topic": topic})  # series from the start: alerts see the first one

    def oldest_age_s(self) -> float:
        oldest = self._oldest
        if oldest is None:
            return 0.0
        oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
        return max((datetime.now(UTC) - oldest).total_seconds(), 0.0)

    async def publish_batch(self) -> int:
        """Publish up to one batch of unpublished rows; returns how many were published."""
        started = asyncio.get_running_loop().time()
        if self._sqlite:
            published = await self._publish_batch_sqlite()
        else:
            published = await self._publish_batch_locked()
        if published:
            for event_type, n in self._published_types.items():
                published_counter.add(n, {"event_type": event_type})
            self._published_types.clear()
            publish_duration.record(asyncio.get_running_loop().time() - started)
        return published

    def _unpublished(self) -> Any:
        # Columns, not ORM objects: the relay only reads them, and this is its hot path.
        return (
            sql_select(
                col(OutboxEvent.seq),
                col(OutboxEvent.event_id),
                col(OutboxEvent.topic),
                col(OutboxEvent.key),
                col(OutboxEvent.event_type),
                col(OutboxEvent.headers),
                col(OutboxEvent.payload),
                col(OutboxEvent.created_at),
            )
            .where(col(OutboxEvent.published_at).is_(None), col(OutboxEvent.set_aside_reason).is_(None))
            .order_by(col(OutboxEvent.seq))
            .limit(self._batch_size)
        )

    async def _publish_batch_locked(self) -> int:
        """PostgreSQL: several replicas may relay, one at a time: the one holding the service's
        advisory lock publishes a batch, in order, the others find the lock taken and wait for the
        next wake-up. (Row locks alone let a second replica publish the rows after a locked batch
        before that batch: a key's events out of order.)"""
        async with self._sessions() as session, session.begin():
            taken = await session.exec(
                sql_select(func.pg_try_advisory_xact_lock(RELAY_LOCK, self._lock_key))  # type: ignore[call-overload]
            )
            if not taken.scalar():
                return 0
            rows = list((await session.exec(self._unpublished().with_for_update(skip_locked=True))).all())
            if not rows:
                self.backlog, self._oldest = 0, None
                return 0
            self._oldest = rows[0].created_at
            set_aside = await self._send_all(rows)
            await self._mark_published(session, rows, set_aside)
        return len(rows)

    async def _publish_batch_sqlite(self) -> int:
        """SQLite has one writer at a time and one relay per database: read the batch and mark it in
        two short transactions, never holding the write lock while Kafka acknowledges."""
        async with self._sessions() as session, session.begin():
            rows = list((await session.exec(self._unpublished())).all())
        if not rows:
            self.backlog, self._oldest = 0, None
            return 0
        self._oldest = rows[0].created_at
        set_aside = await self._send_all(rows)
        async with self._sessions() as session, session.begin():
            await self._mark_published(session, rows, set_aside)
        return len(rows)

    async def _send_all(self, rows: list[Any]) -> dict[int, str]:
        """Send the batch; the rows Kafka refuses for good, by seq, with the reason (set aside: one
        unpublishable row must not hold up, forever, every event committed after it)."""
        failpoint("relay.before_send")
        set_aside: dict[int, str] = {}
        sends: list[tuple[Any, asyncio.Future[object]]] = []
        for row in rows:
            try:
                sends.append((row, await self._send(row)))
            except UNPUBLISHABLE as exc:
                set_aside[row.seq] = _reason(exc, row)
        results = await asyncio.gather(*(sent for _, sent in sends), return_exceptions=True)
        for (row, _), result in zip(sends, results, strict=True):
            if isinstance(result, UNPUBLISHABLE):
                set_aside[row.seq] = _reason(result, row)
            elif isinstance(result, BaseException):
                raise result  # the broker, not the row: the batch is tried again
        failpoint("relay.after_send")
        for row in rows:
            if row.seq in set_aside:
                set_aside_counter.add(1, {"topic": row.topic})
                log.error(
                    "outbox event set aside: Kafka refuses it",
                    extra={"event_id": row.event_id, "topic": row.topic, "reason": set_aside[row.seq]},
                )
        return set_aside

    async def _mark_published(
        self, session: AsyncSession, rows: list[Any], set_aside: dict[int, str]
    ) -> None:
        published = [r.seq for r in rows if r.seq not in set_aside]
        # Counted by publish_batch once the batch is committed as published: the ops funnel.
        self._published_types = Counter(r.event_type for r in rows if r.seq not in set_aside)
        if published:
            await session.exec(
                update(OutboxEvent)
                .where(col(OutboxEvent.seq).in_(published))
                .values(published_at=datetime.now(UTC))
            )  # type: ignore[call-overload]
        for seq, reason in set_aside.items():
            await session.exec(
                update(OutboxEvent).where(col(OutboxEvent.seq) == seq).values(set_aside_reason=reason)
            )  # type: ignore[call-overload]
        now = asyncio.get_running_loop().time()
        if len(rows) < self._batch_size:
            self.backlog, self._oldest = 0, None
            return
        self._oldest = rows[-1].created_at  # the rows behind it are younger still
        if now - self._counted_at >= COUNT_EVERY_S:
            # Counting is a scan of the whole backlog: after every batch, a large backlog (an import
            # of 100,000 services) cost the database more than publishing it.
            remaining = await session.exec(
                select(func.count())
                .select_from(OutboxEvent)
                .where(col(OutboxEvent.published_at).is_(None), col(OutboxEvent.set_aside_reason).is_(None))
            )
            self.backlog = int(remaining.one()) - len(rows)
            self._counted_at = now
        else:
            self.backlog = max(0, self.backlog - len(rows))

    async def _send(self, row: Any) -> asyncio.Future[object]:
        headers = {k: v for k, v in json.loads(row.headers)}
        parent = propagate.extract(headers)
        with tracer.start_as_current_span(
            f"{row.topic} publish",
            context=parent,
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": row.topic,
                "messaging.message.id": row.event_id,
                "cloudevents.event_type": row.event_type,
            },
        ):
            # The consumer's span is a child of this publish span.
            propagate.inject(headers)
        sent: asyncio.Future[object] = await self._producer.send(
            row.topic,
            value=row.payload,
            key=row.key.encode(),
            headers=[(k, v.encode()) for k, v in headers.items()],
        )
        return sent

    async def run(self) -> None:
        while not self._stopping.is_set():
            # Cleared before looking, so a commit that lands while we publish still wakes us.
            self._outbox.committed.clear()
            try:
                published = await self.publish_batch()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay batch failed; retrying")
                published = 0
                await asyncio.sleep(self._poll_interval_s)
            if published >= self._batch_size:
                continue  # a full batch: more may be waiting
            # A partial batch took everything committed before the look: wait for the next commit
            # (one that landed meanwhile has set the event already) instead of a read that finds
            # nothing, one more transaction per wake-up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval_s):
                    await self._wait_for_work()

    async def _wait_for_work(self) -> None:
        stop = asyncio.ensure_future(self._stopping.wait())
        work = asyncio.ensure_future(self._outbox.committed.wait())
        try:
            await asyncio.wait({stop, work}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            work.cancel()

    async def stop(self) -> None:
        """Stop after publishing what is already committed (a graceful stop leaves no backlog)."""
        self._stopping.set()
        with contextlib.suppress(Exception):
            while await self.publish_batch():
                pass


def _reason(exc: BaseException, row: Any) -> str:
    return f"{type(exc).__name__}: {len(row.payload)} bytes of payload refused by Kafka"[:500]
