"""N envelopes through raw aiokafka produce+consume (the baseline), and the same N through the
platform's path: state change + outbox row in one transaction -> relay -> Kafka -> idempotent
consumer (inbox + effect in one transaction), on SQLite and on PostgreSQL."""

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
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from bench.results import Figure

NEED = "ach.screening.v1.NeedIdentified"


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


async def outbox_pipeline(
    bootstrap: str, database_url: str, n: int, writers: int = 8
) -> tuple[float, float, float]:
    """(events/s, p50 ms, p99 ms) from the first commit to the last event handled."""
    engine = (
        create_engine(database_url, pool_size=writers + 4)
        if not database_url.startswith("sqlite")
        else create_engine(database_url)
    )
    async with engine.begin() as conn:
        await conn.run_sync(
            lambda c: SQLModel.metadata.create_all(
                c, tables=[SQLModel.metadata.tables["outbox_event"], SQLModel.metadata.tables["inbox_event"]]
            )
        )
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
        async with engine.begin() as conn:
            await conn.run_sync(
                lambda c: SQLModel.metadata.drop_all(
                    c,
                    tables=[
                        SQLModel.metadata.tables["outbox_event"],
                        SQLModel.metadata.tables["inbox_event"],
                    ],
                )
            )
        await engine.dispose()


async def run(bootstrap: str, databases: dict[str, str], n: int) -> list[Figure]:
    _ = (OutboxEvent, InboxEvent)  # the tables the pipeline uses
    figures: list[Figure] = []
    raw = await raw_kafka(bootstrap, n)
    figures.append(Figure(f"backbone.raw_aiokafka_produce_consume (N={n})", raw, "envelopes/s"))
    for backend, url in databases.items():
        rate, p50, p99 = await outbox_pipeline(bootstrap, url, n)
        figures.append(
            Figure(
                f"backbone.outbox_relay_idempotent_consumer.{backend} (N={n})",
                rate,
                "events/s",
                "raw aiokafka",
                raw,
            )
        )
        figures.append(Figure(f"backbone.outbox_commit_to_handled_p50.{backend}", p50, "ms"))
        figures.append(Figure(f"backbone.outbox_commit_to_handled_p99.{backend}", p99, "ms"))
    return figures
