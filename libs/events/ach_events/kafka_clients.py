"""Kafka clients configured the one way the platform uses them."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ach_events.kafka_security import broker_security
from ach_events.topics import BrokerUnavailable


def idempotent_producer(bootstrap_servers: str, client_id: str) -> AIOKafkaProducer:
    # Idempotence with acks=all: a retried send is written once, and per-partition order holds.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        request_timeout_ms=30000,
        **broker_security().aiokafka(),
    )


async def start_producer(producer: AIOKafkaProducer, bootstrap_servers: str, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await producer.start()
    except (TimeoutError, KafkaError, OSError) as exc:
        await producer.stop()
        raise BrokerUnavailable(
            f"Kafka broker unreachable at {bootstrap_servers} ({type(exc).__name__}); start it with "
            "'make kafka' or set KAFKA_BOOTSTRAP_SERVERS"
        ) from None
