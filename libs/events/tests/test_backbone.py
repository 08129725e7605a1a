"""The event backbone against a real Kafka broker and real databases (SQLite and PostgreSQL):
outbox -> relay -> Kafka -> idempotent consumer, redelivery without a second effect, dead letters."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ach.screening.v1 import screening_pb2
from ach_events.consumer import EventConsumer, PoisonEvent
from ach_events.envelope import Envelope
from ach_events.inbox import InboxEvent
from ach_events.kafka_clients import idempotent_producer
from ach_events.outbox import Outbox, OutboxEvent
from ach_events.pruning import Pruner
from ach_events.relay import OutboxRelay
from ach_events.topics import Topic, dead_letter_topic, ensure_topics, namespaced
from ach_platform.database import create_engine, session_factory
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError
from faststream.kafka import KafkaBroker
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

NEED = "ach.screening.v1.NeedIdentified"


class NeedSeen(SQLModel, table=True):
    """The handler's effect in these tests: one row per need."""

    __tablename__ = "test_need_seen"
    need_id: str = Field(primary_key=True)
    times: int = 0


@dataclass
class Backbone:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    producer: AIOKafkaProducer
    outbox: Outbox
    relay: OutboxRelay
    topic: Topic
    bootstrap: str


@pytest.fixture
async def backbone(database_url: str, kafka_bootstrap: str, kafka_namespace: str) -> AsyncIterator[Backbone]:
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        tables = [SQLModel.metadata.tables[t] for t in ("outbox_event", "inbox_event", "test_need_seen")]
        await conn.run_sync(lambda c: SQLModel.metadata.create_all(c, tables=tables))
    topic = Topic(
        name="backbone", key="resident id", producer="test", consumers=("test-consumer",), event_types=(NEED,)
    )
    ensure_topics(kafka_bootstrap, (topic, dead_letter_topic("test-consumer")))
    producer = idempotent_producer(kafka_bootstrap, "test")
    await producer.start()
    sessions = session_factory(engine)
    outbox = Outbox("/ach/test")
    relay = OutboxRelay(sessions, producer, outbox, poll_interval_s=0.2)
    yield Backbone(engine, sessions, producer, outbox, relay, topic, kafka_bootstrap)
    await producer.stop()
    await engine.dispose()


async def count_effects(b: Backbone) -> tuple[int, int]:
    async with b.sessions() as s:
        rows = (await s.exec(select(func.count(), func.coalesce(func.sum(NeedSeen.times), 0)))).one()
    return int(rows[0]), int(rows[1])


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def record_need(session: AsyncSession, _envelope: Envelope, need: screening_pb2.NeedIdentified) -> None:
    seen = await session.get(NeedSeen, need.need_id) or NeedSeen(need_id=need.need_id)
    seen.times += 1
    session.add(seen)


async def start_consumer(
    b: Backbone, handler: Any = record_need, **kw: Any
) -> tuple[KafkaBroker, EventConsumer]:
    broker = KafkaBroker(b.bootstrap, logger=None)
    consumer = EventConsumer(
        name="test-consumer",
        sessions=b.sessions,
        producer=b.producer,
        topics=(b.topic,),
        handlers={NEED: handler},
        **kw,
    )
    consumer.subscribe(broker)
    await broker.start()
    return broker, consumer


async def write_needs(b: Backbone, n: int) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    async with b.sessions() as session, session.begin():
        for need_id in ids:
            b.outbox.add(
                session,
                b.topic,
                screening_pb2.NeedIdentified(
                    need_id=need_id, resident_id="r-1", need_domain="food-insecurity"
                ),
                key="r-1",
            )
    return ids


async def test_outbox_to_consumer_exactly_once_even_when_republished(backbone: Backbone) -> None:
    b = backbone
    await write_needs(b, 25)
    broker, _ = await start_consumer(b)
    relay_task = asyncio.create_task(b.relay.run())
    try:

        async def all_seen() -> bool:
            return await count_effects(b) == (25, 25)

        await eventually(all_seen)
        # A relay that crashed after sending and before marking republishes everything: same event ids.
        async with b.sessions() as session, session.begin():
            await session.exec(update(OutboxEvent).values(published_at=None))  # type: ignore[call-overload]
        b.outbox.committed.set()

        async def republished() -> bool:
            async with b.sessions() as s:
                left = (
                    await s.exec(
                        select(func.count())
                        .select_from(OutboxEvent)
                        .where(col(OutboxEvent.published_at).is_(None))
                    )
                ).one()
            return int(left) == 0

        await eventually(republished)
        await write_needs(b, 1)  # a marker behind the duplicates on the same key (same partition)

        async def marker_seen() -> bool:
            return (await count_effects(b))[0] == 26

        await eventually(marker_seen)
        assert await count_effects(b) == (26, 26), "a redelivered event had a second effect"
        async with b.sessions() as s:
            inbox = (await s.exec(select(func.count()).select_from(InboxEvent))).one()
        assert int(inbox) == 26
    finally:
        await b.relay.stop()
        relay_task.cancel()
        await broker.stop()


def committed_offsets(bootstrap: str, group: str) -> int:
    """The sum of the group's committed offsets over the partitions it committed (kafka-python admin)."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="test-offsets")
    try:
        group_id = namespaced(group)
        return sum(o.offset for o in admin.list_group_offsets(group_id)[group_id].values())
    finally:
        admin.close()


async def test_offsets_are_committed_after_handling_also_for_the_last_batch(backbone: Backbone) -> None:
    """Offsets are committed at most every ``commit_every_s`` (here 3 s, to see each path): a batch
    after a quiet spell at once; one handled within the window by the timer, with nothing more
    arriving; and at once when a graceful stop begins. A group that committed nothing would read it
    all again after a restart."""
    b = backbone
    await write_needs(b, 30)
    broker, consumer = await start_consumer(b, commit_every_s=3.0)
    relay_task = asyncio.create_task(b.relay.run())

    async def committed() -> int:
        return await asyncio.to_thread(committed_offsets, b.bootstrap, "test-consumer")

    async def seen(n: int) -> None:
        async def check() -> bool:
            return (await count_effects(b))[0] == n

        await eventually(check)

    async def committed_is(n: int) -> None:
        async def check() -> bool:
            return await committed() == n

        await eventually(check, timeout_s=10)

    try:
        await seen(30)
        await committed_is(30)  # at once, or by the timer if they came in more than one batch
        await write_needs(b, 1)
        await seen(31)
        assert await committed() == 30  # within the window of the last commit: not yet
        await committed_is(31)  # the timer, with nothing more arriving
        await write_needs(b, 1)
        await seen(32)
        await consumer.stopping()  # what a graceful stop does first: no timer to wait for
        assert await committed() == 32
    finally:
        await b.relay.stop()
        relay_task.cancel()
        await broker.stop()


async def read_dead_letters(b: Backbone, n: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        dead_letter_topic("test-consumer").physical_name,
        bootstrap_servers=b.bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(30):
            while len(records) < n:
                batch = await consumer.getmany(timeout_ms=500)
                for rs in batch.values():
                    records.extend(rs)
    finally:
        await consumer.stop()
    return records


async def test_poison_messages_go_to_the_dead_letter_topic_and_the_consumer_goes_on(
    backbone: Backbone,
) -> None:
    b = backbone
    valid = Envelope.wrap(
        screening_pb2.NeedIdentified(need_id="ok-1", need_domain="food-insecurity"),
        source="/ach/test",
        key="r-2",
    )
    failing = Envelope.wrap(
        screening_pb2.NeedIdentified(need_id="always-fails"), source="/ach/test", key="r-2"
    )
    poison_rule = Envelope.wrap(
        screening_pb2.NeedIdentified(need_id="poison-rule"), source="/ach/test", key="r-2"
    )
    topic = b.topic.physical_name
    await b.producer.send_and_wait(topic, b"not protobuf at all", key=b"r-2", headers=[])
    await b.producer.send_and_wait(topic, b"\xff\xff\xff", key=b"r-2", headers=valid.headers())
    await b.producer.send_and_wait(topic, failing.payload, key=b"r-2", headers=failing.headers())
    await b.producer.send_and_wait(topic, poison_rule.payload, key=b"r-2", headers=poison_rule.headers())
    await b.producer.send_and_wait(topic, valid.payload, key=b"r-2", headers=valid.headers())

    calls: dict[str, int] = {}

    async def handler(session: AsyncSession, envelope: Envelope, need: screening_pb2.NeedIdentified) -> None:
        calls[need.need_id] = calls.get(need.need_id, 0) + 1
        if need.need_id == "always-fails":
            raise RuntimeError("downstream rule engine exploded")
        if need.need_id == "poison-rule":
            raise PoisonEvent("need domain is missing")
        await record_need(session, envelope, need)

    # Batches of one record, so the attempt counts are exact (in bigger batches a failing handler also
    # gets the batch's shared try before its own).
    broker, _ = await start_consumer(b, handler, max_attempts=3, retry_backoff_s=0.01, max_batch=1)
    try:

        async def valid_seen() -> bool:
            return (await count_effects(b))[0] == 1

        await eventually(valid_seen)
    finally:
        await broker.stop()
    # Three attempts for the failing handler, one for the poison, then the consumer went on.
    assert calls == {"always-fails": 3, "poison-rule": 1, "ok-1": 1}
    assert await count_effects(b) == (1, 1), "the good event after the poison ones had no effect, or two"
    letters = await read_dead_letters(b, 4)
    reasons = [dict(r.headers)["ach_dlq_reason"].decode() for r in letters]
    assert reasons[0].startswith("not a CloudEvent: missing header(s) ce_id")
    assert reasons[1].startswith("payload is not a valid ach.screening.v1.NeedIdentified")
    # An unforeseen exception's message may quote data: the reason tells its type (the log has where).
    assert reasons[2] == "handler failed: RuntimeError: [withheld] (after 3 attempts)"
    assert reasons[3] == "rejected by handler: need domain is missing"
    # The original record travels with its reason: value, key and CloudEvents headers.
    third = dict(letters[2].headers)
    assert (
        third["ce_id"].decode() == failing.id
        and letters[2].value == failing.payload
        and letters[2].key == b"r-2"
    )
    assert third["ach_dlq_source_topic"].decode() == topic and third["ach_dlq_attempts"] == b"3"


async def test_a_record_at_the_size_limit_is_dead_lettered_by_reference_and_the_consumer_goes_on(
    backbone: Backbone,
) -> None:
    b = backbone
    topic = b.topic.physical_name
    # As big as the topic takes: the dead letter's own headers would push it over the limit.
    size = 1024 * 1024
    while True:
        try:
            await b.producer.send_and_wait(topic, b"\x00" * size, key=b"r-3", headers=[("h", b"x")])
            break
        except (MessageSizeTooLargeError, RecordTooLargeError):
            size -= 200
    valid = Envelope.wrap(
        screening_pb2.NeedIdentified(need_id="after-the-big-one", need_domain="food-insecurity"),
        source="/ach/test",
        key="r-3",
    )
    await b.producer.send_and_wait(topic, valid.payload, key=b"r-3", headers=valid.headers())
    broker, _ = await start_consumer(b, max_batch=1)
    try:

        async def valid_seen() -> bool:
            return (await count_effects(b))[0] == 1

        await eventually(valid_seen)
    finally:
        await broker.stop()
    [letter] = await read_dead_letters(b, 1)
    headers = dict(letter.headers)
    assert (
        letter.value is None
        and headers["ach_dlq_body_omitted"] == f"{size} bytes: read it at the source offset".encode()
    )
    assert headers["ach_dlq_source_topic"].decode() == topic and headers["ach_dlq_source_offset"] == b"0"
    assert headers["ach_dlq_reason"].decode().startswith("not a CloudEvent")


async def test_an_event_kafka_refuses_is_set_aside_and_the_events_behind_it_go_on(backbone: Backbone) -> None:
    b = backbone
    async with b.sessions() as session, session.begin():
        b.outbox.add(
            session,
            b.topic,
            screening_pb2.NeedIdentified(need_id="n" * (2 * 1024 * 1024), resident_id="r-4"),
            key="r-4",
        )
    after = await write_needs(b, 3)
    while await b.relay.publish_batch():
        pass
    async with b.sessions() as session:
        rows = (await session.exec(select(OutboxEvent).order_by(col(OutboxEvent.seq)))).all()
    assert [r.published_at is not None for r in rows] == [False, True, True, True]
    assert rows[0].set_aside_reason is not None and rows[0].set_aside_reason.startswith(
        "MessageSizeTooLargeError"
    )
    broker, _ = await start_consumer(b)
    try:

        async def all_seen() -> bool:
            return (await count_effects(b))[0] == len(after)

        await eventually(all_seen)
    finally:
        await broker.stop()


async def test_published_outbox_rows_and_old_inbox_rows_are_pruned(backbone: Backbone) -> None:
    b = backbone
    await write_needs(b, 3)
    while await b.relay.publish_batch():
        pass
    broker, _ = await start_consumer(b)
    try:

        async def all_seen() -> bool:
            return (await count_effects(b))[0] == 3

        await eventually(all_seen)
    finally:
        await broker.stop()
    await write_needs(b, 1)  # committed, not yet published: kept however old
    pruner = Pruner(b.sessions, outbox_keep=timedelta(days=7), inbox_keep=timedelta(days=30))
    now = datetime.now(UTC)
    assert await pruner.prune_once(now) == (0, 0)  # nothing is old enough yet
    assert await pruner.prune_once(now + timedelta(days=8)) == (3, 0)
    assert await pruner.prune_once(now + timedelta(days=31)) == (0, 3)
    async with b.sessions() as session:
        left = (await session.exec(select(OutboxEvent))).all()
        inbox = (await session.exec(select(InboxEvent))).all()
    assert [r.published_at for r in left] == [None] and inbox == []


async def test_two_relays_on_one_postgresql_outbox_keep_each_keys_order(backbone: Backbone) -> None:
    b = backbone
    if b.engine.dialect.name != "postgresql":
        pytest.skip("one relay per SQLite database; several replicas only on PostgreSQL")
    keys = [f"r-{k}" for k in range(5)]
    async with b.sessions() as session, session.begin():
        for i in range(1500):
            key = keys[i % len(keys)]
            b.outbox.add(
                session,
                b.topic,
                screening_pb2.NeedIdentified(need_id=f"{key}:{i:05d}", resident_id=key),
                key=key,
            )
    # A second replica: its own connections and its own producer.
    other_engine = create_engine(str(b.engine.url.render_as_string(hide_password=False)))
    others = session_factory(other_engine)
    other_producer = idempotent_producer(b.bootstrap, "test-replica")
    await other_producer.start()
    relays = [
        OutboxRelay(b.sessions, b.producer, b.outbox, batch_size=50),
        OutboxRelay(others, other_producer, b.outbox, batch_size=50),
    ]

    async def drain(relay: OutboxRelay) -> None:
        idle = 0
        while idle < 20:
            idle = 0 if await relay.publish_batch() else idle + 1
            await asyncio.sleep(0)

    await asyncio.gather(*(drain(r) for r in relays))
    await other_producer.stop()
    await other_engine.dispose()
    reader = AIOKafkaConsumer(
        b.topic.physical_name, bootstrap_servers=b.bootstrap, auto_offset_reset="earliest"
    )
    await reader.start()
    seen: dict[str, list[str]] = {k: [] for k in keys}
    try:
        async with asyncio.timeout(60):
            while sum(map(len, seen.values())) < 1500:
                for records in (await reader.getmany(timeout_ms=500)).values():
                    for r in records:
                        need = screening_pb2.NeedIdentified.FromString(r.value)
                        seen[need.resident_id].append(need.need_id)
    finally:
        await reader.stop()
    assert all(ids == sorted(ids) for ids in seen.values()), "a key's events came out of order"
    assert sum(map(len, seen.values())) == 1500
