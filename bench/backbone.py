"""The event backbone's costs against fair baselines, on SQLite and on PostgreSQL:

- the full path, N single-row state changes each with its outbox row in one transaction -> relay
  -> Kafka -> idempotent consumer (inbox + effect in one transaction), beside the same N
  single-row transactions without the outbox on the same database (the database's own commit
  rate);
- N already-published events through the idempotent consumer, beside a raw aiokafka consumer
  reading (and decoding) the same topic;
- and, for scale, raw aiokafka produce+consume of N envelopes, touching no database."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime

from ach.screening.v1 import screening_pb2
from ach_events.consumer import EventConsumer
from ach_events.envelope import Envelope
from ach_events.inbox import InboxEvent
from ach_events.kafka_clients import idempotent_producer
from ach_events.outbox import Outbox, OutboxEvent
from ach_events.relay import OutboxRelay
from ach_events.topics import Topic, dead_letter_topic, ensure_topics
from ach_platform.database import create_engine, session_factory
from aiokafka import AIOKafkaConsumer
from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from bench.results import Figure

NEED = "ach.screening.v1.NeedIdentified"


class BenchState(SQLModel, table=True):
    """The state a bench transaction changes: one row, as an API call's state change."""

    __tablename__ = "bench_state"
    id: str = Field(primary_key=True, max_length=36)
    resident_id: str = Field(max_length=100)


TABLES = ("outbox_event", "inbox_event", "bench_state")


def need(i: int) -> screening_pb2.NeedIdentified:
    return screening_pb2.NeedIdentified(
        need_id=str(uuid.uuid4()),
        screening_id=str(uuid.uuid4()),
        resident_id=f"resident-{i % 500}",
        need_domain="food-insecurity",
    )


def bench_topic(tag: str) -> Topic:
    return Topic(
        name=f"bench-{tag}-{uuid.uuid4().hex[:8]}",
        key="resident id",
        producer="bench",
        consumers=("bench",),
        event_types=(NEED,),
    )


async def raw_kafka(bootstrap: str, n: int) -> float:
    """Envelopes/s: produce N with the same idempotent acks=all producer, consume all N in a group."""
    topic = bench_topic("raw")
    ensure_topics(bootstrap, (topic,))
    envelopes = [Envelope.wrap(need(i), source="/bench", key=f"resident-{i % 500}") for i in range(n)]
    producer = idempotent_producer(bootstrap, "bench-raw")
    consumer = AIOKafkaConsumer(
        topic.physical_name,
        bootstrap_servers=bootstrap,
        group_id=f"bench-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await producer.start()
    await consumer.start()
    try:
        started = time.perf_counter()

        async def produce() -> None:
            futures = [
                await producer.send(topic.physical_name, e.payload, key=e.key.encode(), headers=e.headers())
                for e in envelopes
            ]
            await asyncio.gather(*futures)

        async def consume() -> None:
            seen = 0
            while seen < n:
                batch = await consumer.getmany(timeout_ms=200, max_records=1000)
                for records in batch.values():
                    for r in records:
                        Envelope.from_record(
                            r.key, r.value, r.headers
                        ).message()  # decode, as a consumer must
                    seen += sum(len(v) for v in batch.values())
                await consumer.commit()

        await asyncio.gather(produce(), consume())
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()


async def fresh_engine(database_url: str, writers: int) -> AsyncEngine:
    engine = (
        create_engine(database_url, pool_size=writers + 4)
        if not database_url.startswith("sqlite")
        else create_engine(database_url)
    )
    tables = [SQLModel.metadata.tables[t] for t in TABLES]
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: SQLModel.metadata.drop_all(c, tables=tables))
        await conn.run_sync(lambda c: SQLModel.metadata.create_all(c, tables=tables))
    return engine


async def drop(engine: AsyncEngine) -> None:
    tables = [SQLModel.metadata.tables[t] for t in TABLES]
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: SQLModel.metadata.drop_all(c, tables=tables))
    await engine.dispose()


async def plain_commits(database_url: str, n: int, writers: int = 8) -> float:
    """Transactions/s: N single-row state changes, one per transaction, no outbox (the baseline)."""
    engine = await fresh_engine(database_url, writers)
    sessions = session_factory(engine)
    try:
        started = time.perf_counter()

        async def write(worker: int) -> None:
            for i in range(worker, n, writers):
                async with sessions() as session, session.begin():
                    session.add(BenchState(id=str(uuid.uuid4()), resident_id=f"resident-{i % 500}"))

        await asyncio.gather(*(write(w) for w in range(writers)))
        return n / (time.perf_counter() - started)
    finally:
        await drop(engine)


async def consume_published(bootstrap: str, database_url: str, n: int) -> tuple[float, float]:
    """(raw aiokafka consume events/s, idempotent consumer events/s) over the same N events,
    published before either starts."""
    topic = bench_topic("consume")
    ensure_topics(bootstrap, (topic, dead_letter_topic("bench")))
    producer = idempotent_producer(bootstrap, "bench-consume")
    await producer.start()
    engine = await fresh_engine(database_url, 1)
    sessions = session_factory(engine)
    try:
        futures = []
        for i in range(n):
            envelope = Envelope.wrap(need(i), source="/bench", key=f"resident-{i % 500}")
            futures.append(
                await producer.send(
                    topic.physical_name,
                    envelope.payload,
                    key=envelope.key.encode(),
                    headers=envelope.headers(),
                )
            )
        await asyncio.gather(*futures)

        reader = AIOKafkaConsumer(
            topic.physical_name,
            bootstrap_servers=bootstrap,
            group_id=f"bench-{uuid.uuid4()}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        started = time.perf_counter()  # both consumers timed from their start: group join included
        await reader.start()
        try:
            seen = 0
            while seen < n:
                batch = await reader.getmany(timeout_ms=200, max_records=1000)
                for records in batch.values():
                    for r in records:
                        Envelope.from_record(r.key, r.value, r.headers).message()
                    seen += len(records)
                await reader.commit()
            raw = n / (time.perf_counter() - started)
        finally:
            await reader.stop()

        handled = 0
        done = asyncio.Event()

        async def handle(session: AsyncSession, envelope: Envelope, _message: object) -> None:
            nonlocal handled
            handled += 1
            if handled >= n:
                done.set()

        broker = KafkaBroker(bootstrap, logger=None)
        consumer = EventConsumer(
            name="bench", sessions=sessions, producer=producer, topics=(topic,), handlers={NEED: handle}
        )
        consumer.subscribe(broker)
        started = time.perf_counter()
        await broker.start()
        try:
            await asyncio.wait_for(done.wait(), timeout=600)
            idempotent = n / (time.perf_counter() - started)
        finally:
            await broker.stop()
        return raw, idempotent
    finally:
        await producer.stop()
        await drop(engine)


async def outbox_pipeline(
    bootstrap: str, database_url: str, n: int, writers: int = 8
) -> tuple[float, float, float]:
    """(events/s, p50 ms, p99 ms) from the first commit to the last event handled."""
    engine = await fresh_engine(database_url, writers)
    sessions = session_factory(engine)
    topic = bench_topic("outbox")
    ensure_topics(bootstrap, (topic, dead_letter_topic("bench")))
    producer = idempotent_producer(bootstrap, "bench-outbox")
    await producer.start()
    outbox = Outbox("/bench")
    relay = OutboxRelay(sessions, producer, outbox)
    lags: list[float] = []
    done = asyncio.Event()

    async def handle(session: AsyncSession, envelope: Envelope, _message: object) -> None:
        lags.append((datetime.now(UTC) - envelope.time).total_seconds() * 1000)
        if len(lags) >= n:
            done.set()

    broker = KafkaBroker(bootstrap, logger=None)
    consumer = EventConsumer(
        name="bench", sessions=sessions, producer=producer, topics=(topic,), handlers={NEED: handle}
    )
    consumer.subscribe(broker)
    await broker.start()
    relay_task = asyncio.create_task(relay.run())
    try:
        started = time.perf_counter()

        async def write(worker: int) -> None:
            for i in range(worker, n, writers):
                # One state change per transaction, as a service's API call makes it.
                async with sessions() as session, session.begin():
                    session.add(BenchState(id=str(uuid.uuid4()), resident_id=f"resident-{i % 500}"))
                    outbox.add(session, topic, need(i), key=f"resident-{i % 500}")

        await asyncio.gather(*(write(w) for w in range(writers)))
        await asyncio.wait_for(done.wait(), timeout=600)
        elapsed = time.perf_counter() - started
        assert len(lags) == n, f"handled {len(lags)} of {n}"
        quantiles = statistics.quantiles(lags, n=100)
        return n / elapsed, quantiles[49], quantiles[98]
    finally:
        await relay.stop()
        relay_task.cancel()
        await broker.stop()
        await producer.stop()
        await drop(engine)


async def run(bootstrap: str, databases: dict[str, str], n: int) -> list[Figure]:
    _ = (OutboxEvent, InboxEvent)  # the tables the pipeline uses
    figures: list[Figure] = []
    raw = await raw_kafka(bootstrap, n)
    figures.append(Figure(f"backbone.raw_aiokafka_produce_consume (N={n})", raw, "envelopes/s"))
    for backend, url in databases.items():
        commits = await plain_commits(url, n)
        rate, p50, p99 = await outbox_pipeline(bootstrap, url, n)
        figures.append(Figure(f"backbone.single_row_commits_no_outbox.{backend} (N={n})", commits, "txn/s"))
        figures.append(
            Figure(
                f"backbone.state_and_outbox_to_handled.{backend} (N={n})",
                rate,
                "events/s",
                "commits, no outbox",
                commits,
            )
        )
        raw_consume, idempotent = await consume_published(bootstrap, url, n)
        figures.append(Figure(f"backbone.raw_aiokafka_consume.{backend} (N={n})", raw_consume, "events/s"))
        figures.append(
            Figure(
                f"backbone.idempotent_consumer_of_published.{backend}",
                idempotent,
                "events/s",
                "raw aiokafka consume",
                raw_consume,
            )
        )
        figures.append(Figure(f"backbone.outbox_commit_to_handled_p50.{backend}", p50, "ms"))
        figures.append(Figure(f"backbone.outbox_commit_to_handled_p99.{backend}", p99, "ms"))
    return figures
