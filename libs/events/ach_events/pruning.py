"""Pruning of the backbone tables: published outbox rows and old inbox rows are deleted on a
schedule. Both hold event ids and payloads (an outbox row is a whole event, PHI included for some
topics); once an event is on Kafka, and a consumed one is older than any redelivery, keeping them
only keeps PHI around. Several replicas may prune at once: deleting a deleted row does nothing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from opentelemetry import metrics
from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_events.inbox import InboxEvent
from ach_events.outbox import OutboxEvent

log = logging.getLogger(__name__)
pruned_counter = metrics.get_meter("ach_events.pruning").create_counter(
    "ach_backbone_pruned", unit="{row}", description="Published outbox and old inbox rows deleted, by table"
)
CHUNK = 5000  # rows per delete: short transactions, whatever the backlog


class Pruner:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox_keep: timedelta,
        inbox_keep: timedelta,
        every_s: float = 3600.0,
    ) -> None:
        self._sessions = sessions
        self._outbox_keep = outbox_keep
        self._inbox_keep = inbox_keep
        self._every_s = every_s

    async def prune_once(self, now: datetime | None = None) -> tuple[int, int]:
        """Delete what is past keeping; returns (outbox rows, inbox rows) deleted."""
        now = now or datetime.now(UTC)
        outbox = await self._chunks(self._outbox_chunk, now - self._outbox_keep)
        inbox = await self._chunks(self._inbox_chunk, now - self._inbox_keep)
        pruned_counter.add(outbox, {"table": "outbox_event"})
        pruned_counter.add(inbox, {"table": "inbox_event"})
        return outbox, inbox

    async def _chunks(self, one: Callable[[datetime], Awaitable[int]], cut: datetime) -> int:
        total = 0
        while True:
            deleted = await one(cut)
            total += deleted
            if deleted < CHUNK:
                return total

    async def _outbox_chunk(self, cut: datetime) -> int:
        async with self._sessions() as session, session.begin():
            oldest = (
                select(col(OutboxEvent.seq))
                .where(col(OutboxEvent.published_at) < cut)
                .order_by(col(OutboxEvent.seq))
                .limit(CHUNK)
            )
            result = await session.exec(delete(OutboxEvent).where(col(OutboxEvent.seq).in_(oldest)))  # type: ignore[call-overload]
            return int(result.rowcount or 0)

    async def _inbox_chunk(self, cut: datetime) -> int:
        async with self._sessions() as session, session.begin():
            key = tuple_(col(InboxEvent.consumer), col(InboxEvent.event_id))
            oldest = (
                select(col(InboxEvent.consumer), col(InboxEvent.event_id))
                .where(col(InboxEvent.processed_at) < cut)
                .limit(CHUNK)
            )
            result = await session.exec(delete(InboxEvent).where(key.in_(oldest)))  # type: ignore[call-overload]
            return int(result.rowcount or 0)

    async def run(self) -> None:
        while True:
            try:
                outbox, inbox = await self.prune_once()
                if outbox or inbox:
                    log.info("pruned %d published outbox rows and %d old inbox rows", outbox, inbox)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pruning the outbox and inbox failed; trying again later")
            await asyncio.sleep(self._every_s)
