"""A malformed message on any consumed topic ends in that consumer's dead-letter topic with its
reason; the consumers neither stop nor crash-loop, and the next good events flow end to end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from ach.measurement.v1 import measurement_pb2, measurement_pb2_grpc
from ach.screening.v1 import screening_pb2_grpc
from ach_events.topics import DOMAIN_TOPICS, IDENTITY_PARTNERS, dead_letter_topic
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.harness import Stack, eventually
from tests.test_walking_skeleton import screening_request

pytestmark = pytest.mark.slow

CONSUMERS = ("referrals", "measurement", "notifications", "funding")
# identity is always running in a Stack (it consumes the audit trail); screening consumes partner
# intake and the resident events; the directory partner intake (service reports).
DEAD_LETTERED = (*CONSUMERS, "identity", "screening", "directory")


async def produce_garbage(bootstrap: str) -> dict[str, int]:
    """One undecodable record on every topic that has consumers; returns the expected letters per consumer."""
    expected = dict.fromkeys(DEAD_LETTERED, 0)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for topic in DOMAIN_TOPICS:
            if not topic.consumers or topic is IDENTITY_PARTNERS:
                continue
            await producer.send_and_wait(
                topic.physical_name,
                b"\x00garbage",
                key=b"poison",
                headers=[("ce_id", b"x"), ("ce_type", b"ach.no.such.Event")],
            )
            for consumer in topic.consumers:
                expected[consumer] += 1
    finally:
        await producer.stop()
    return expected


async def dead_letters(bootstrap: str, consumer: str, n: int) -> list[dict[str, bytes]]:
    reader = AIOKafkaConsumer(
        dead_letter_topic(consumer).physical_name,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await reader.start()
    headers: list[dict[str, bytes]] = []
    try:
        async with asyncio.timeout(60):
            while len(headers) < n:
                for records in (await reader.getmany(timeout_ms=500)).values():
                    headers.extend(dict(r.headers) for r in records)
    finally:
        await reader.stop()
    return headers


def test_garbage_on_every_consumed_topic_is_dead_lettered_and_consumers_go_on(
    make_stack: Callable[[str], Stack], kafka_bootstrap: str
) -> None:
    stack = make_stack("sqlite")
    stack.start("screening", "directory", *CONSUMERS)
    expected = asyncio.run(produce_garbage(kafka_bootstrap))

    for consumer, n in expected.items():
        letters = asyncio.run(dead_letters(kafka_bootstrap, consumer, n))
        assert len(letters) == n, consumer
        for letter in letters:
            assert letter["ach_dlq_reason"].startswith(b"not a CloudEvent: missing header(s) ce_source")
            assert letter["ach_dlq_consumer"] == consumer.encode()
            assert letter["ce_id"] == b"x"  # the original headers travel with the letter

    # The consumers are alive: a real screening still reaches the measurement projection.
    resident = stack.resident("clinic-1")
    with stack.channel("screening", "clinic-1") as channel:
        screening_pb2_grpc.ScreeningServiceStub(channel).SubmitScreening(
            screening_request(resident), timeout=5
        )
    with stack.channel("measurement") as channel:
        stub = measurement_pb2_grpc.MeasurementServiceStub(channel)
        eventually(
            lambda: (
                stub.GetReferralFunnel(measurement_pb2.GetReferralFunnelRequest(), timeout=5).needs_identified
                == 1
            ),
            what="the good event after the garbage",
        )
    for name, service in stack.services.items():
        assert service.process is not None and service.process.poll() is None, f"{name} died"
    assert stack.stop_all() == dict.fromkeys(("identity", "screening", "directory", *CONSUMERS), 0)
