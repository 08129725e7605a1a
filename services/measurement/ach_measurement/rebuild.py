"""Rebuilding the projection from offset zero: the facts are disposable.

``ach-measurement rebuild`` reads every topic the service consumes from its first offset, through the
same handlers, into tables built beside the live ones (``<table>_rebuild``); the live service goes on
answering from the live tables meanwhile. Progress is kept per partition, so a stopped rebuild goes
on from where it stopped. When the new tables have caught up with the end of every topic they take
the live tables' place in one transaction (the old ones are dropped), and the rebuild then reads
once more to the topics' end, into the tables now live: whatever the live consumer handled just
before the switch is there too (facts are inserted once, so reading something twice changes
nothing)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ach_events.consumer import EventHandler, PoisonEvent
from ach_events.envelope import Envelope, EnvelopeError
from ach_events.kafka_security import broker_security
from ach_events.topics import Topic
from aiokafka import AIOKafkaConsumer, TopicPartition
from google.protobuf.message import Message
from sqlalchemy import MetaData, Table, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_measurement.store import (
    FACT_TABLES,
    REBUILDING,
    ProjectionGeneration,
    RebuildBatch,
    RebuildProgress,
    write_batch,
)

log = logging.getLogger(__name__)
SUFFIX = "_rebuild"
BATCH = 2000

PROGRESS: Table = RebuildProgress.__table__  # type: ignore[attr-defined]
GENERATION: Table = ProjectionGeneration.__table__  # type: ignore[attr-defined]


class RebuildRefused(Exception):
    """The rebuilt facts would lose some of the live ones."""


@dataclass
class RebuildReport:
    read: int = 0
    facts_before: dict[str, int] = field(default_factory=dict)
    facts_after: dict[str, int] = field(default_factory=dict)
    poison: int = 0
    resumed: bool = False

    def summary(self) -> str:
        tables = ", ".join(f"{t} {self.facts_before.get(t, 0)} -> {n}" for t, n in self.facts_after.items())
        resumed = " (resumed)" if self.resumed else ""
        return f"rebuilt from {self.read} events{resumed}, {self.poison} unplaceable: {tables}"


def _shadow_tables() -> tuple[MetaData, dict[str, Table]]:
    metadata = MetaData()
    tables = {}
    for model in FACT_TABLES:
        live: Table = model.__table__  # type: ignore[attr-defined]
        tables[live.name] = live.to_metadata(metadata, name=live.name + SUFFIX)
    return metadata, tables


async def _counts(engine: AsyncEngine, names: list[str]) -> dict[str, int]:
    async with engine.connect() as conn:
        return {n: int((await conn.execute(text(f'SELECT COUNT(*) FROM "{n}"'))).scalar_one()) for n in names}


class Rebuild:
    def __init__(
        self,
        engine: AsyncEngine,
        bootstrap: str,
        topics: list[Topic],
        handlers: Mapping[type[Message] | str, EventHandler],
        progress: Callable[[int, int], None] = lambda done, total: None,
    ) -> None:
        self._engine = engine
        self._bootstrap = bootstrap
        self._topics = topics
        self._handlers = {k if isinstance(k, str) else k.DESCRIPTOR.full_name: h for k, h in handlers.items()}
        self._progress = progress
        self._metadata, self._tables = _shadow_tables()

    async def run(self, restart: bool = False, accept_fewer: bool = False) -> RebuildReport:
        report = RebuildReport()
        report.facts_before = await _counts(self._engine, list(self._tables))
        async with self._engine.begin() as conn:
            if restart:
                await conn.run_sync(self._metadata.drop_all)
                await conn.execute(delete(PROGRESS))
            await conn.run_sync(self._metadata.create_all)
            positions = {
                TopicPartition(r.topic, r.partition): r.next_offset
                for r in (await conn.execute(select(PROGRESS))).all()
            }
        report.resumed = bool(positions)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=1024 * 1024,
            **broker_security().aiokafka(),
        )
        await consumer.start()
        try:
            # Without a group, a subscription is assigned every partition of the topics.
            consumer.subscribe([t.physical_name for t in self._topics])
            while {tp.topic for tp in consumer.assignment()} != {t.physical_name for t in self._topics}:
                await consumer.getmany(timeout_ms=200)
            partitions = sorted(consumer.assignment())
            for tp in partitions:
                if tp in positions:
                    consumer.seek(tp, positions[tp])
                else:
                    await consumer.seek_to_beginning(tp)
            await self._read_to_end(consumer, partitions, positions, report, self._tables)
            short = await self._fewer_than_live(accept_fewer)
            if short:
                raise RebuildRefused(
                    f"the rebuilt facts are fewer than the live ones ({short}): the topics no longer hold "
                    "everything (retention?); not switching. The rebuilt tables are kept; --accept-fewer "
                    "switches anyway"
                )
            await self._switch()
            # Into the tables now live: up to the end as it is now (after the switch).
            live: dict[str, Table] = {str(m.__tablename__): m.__table__ for m in FACT_TABLES}  # type: ignore[attr-defined]
            await self._read_to_end(consumer, partitions, positions, report, live)
        finally:
            await consumer.stop()
        async with self._engine.begin() as conn:
            await conn.execute(delete(PROGRESS))
        report.facts_after = await _counts(self._engine, list(self._tables))
        return report

    async def _fewer_than_live(self, accept_fewer: bool) -> str:
        if accept_fewer:
            return ""
        live = await _counts(self._engine, list(self._tables))
        rebuilt = await _counts(self._engine, [t.name for t in self._tables.values()])
        return ", ".join(
            f"{name} {rebuilt[table.name]} < {live[name]}"
            for name, table in self._tables.items()
            if rebuilt[table.name] < live[name]
        )

    async def _read_to_end(
        self,
        consumer: AIOKafkaConsumer,
        partitions: list[TopicPartition],
        positions: dict[TopicPartition, int],
        report: RebuildReport,
        tables: Mapping[str, Table],
    ) -> None:
        ends = await consumer.end_offsets(partitions)
        starts = {tp: positions.get(tp, 0) for tp in partitions}
        total = sum(max(0, ends[tp] - starts[tp]) for tp in partitions)
        done = 0
        while any((positions.get(tp, 0) < ends[tp]) for tp in partitions):
            batches = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
            batch = RebuildBatch()
            token = REBUILDING.set(batch)
            try:
                async with AsyncSession(self._engine, expire_on_commit=False) as session, session.begin():
                    for tp, records in batches.items():
                        for record in records:
                            if record.offset >= ends[tp]:
                                continue
                            report.read += 1
                            done += 1
                            await self._apply(session, record, report)
                        if records:
                            positions[tp] = max(positions.get(tp, 0), records[-1].offset + 1)
                    await write_batch(session, batch, tables)
                    for tp in batches:
                        await self._save_position(session, tp, positions[tp])
            finally:
                REBUILDING.reset(token)
            self._progress(done, total)

    async def _apply(self, session: AsyncSession, record: object, report: RebuildReport) -> None:
        try:
            envelope = Envelope.from_record(record.key, record.value, record.headers)  # type: ignore[attr-defined]
            handler = self._handlers.get(envelope.type)
            if handler is None:
                return
            # Handlers only record facts here (collected for the batch): nothing to roll back.
            await handler(session, envelope, envelope.message())
        except (EnvelopeError, PoisonEvent):
            report.poison += 1  # the live consumer dead-lettered it already, with its reason

    async def _save_position(self, session: AsyncSession, tp: TopicPartition, offset: int) -> None:
        await session.execute(
            delete(PROGRESS).where(PROGRESS.c.topic == tp.topic, PROGRESS.c.partition == tp.partition)
        )
        await session.execute(
            PROGRESS.insert().values(topic=tp.topic, partition=tp.partition, next_offset=offset)
        )

    async def _switch(self) -> None:
        """The rebuilt tables take the live ones' names, in one transaction."""
        async with self._engine.begin() as conn:
            postgres = conn.dialect.name == "postgresql"
            for live in self._tables:
                await conn.execute(text(f'ALTER TABLE "{live}" RENAME TO "{live}_old"'))
                if postgres:
                    await conn.execute(text(f'ALTER INDEX "{live}_pkey" RENAME TO "{live}_old_pkey"'))
                await conn.execute(text(f'ALTER TABLE "{live}{SUFFIX}" RENAME TO "{live}"'))
                if postgres:
                    await conn.execute(text(f'ALTER INDEX "{live}{SUFFIX}_pkey" RENAME TO "{live}_pkey"'))
                await conn.execute(text(f'DROP TABLE "{live}_old"'))
            generation = (
                await conn.execute(select(func.coalesce(func.max(GENERATION.c.generation), 0)))
            ).scalar_one()
            await conn.execute(delete(GENERATION))
            await conn.execute(GENERATION.insert().values(id=1, generation=generation + 1))
