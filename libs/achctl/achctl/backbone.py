"""What achctl reads from and does on Kafka: consumer-group lag, dead letters (count, list, show,
replay to the source topic, recorded in the audit log)."""

from __future__ import annotations

import getpass
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ach_events.topics import ALL_TOPICS, AUDIT_EVENTS, BrokerUnavailable, dead_letter_topic, namespaced

OURS = "ach_dlq_"  # the headers a dead letter adds (reason, source, attempts, ...)
REPLAYED_FROM = "ach_replayed_from"


def consuming_services() -> list[str]:
    """Services that consume the domain topics (each has a consumer group and a dead-letter topic)."""
    from ach_platform.settings import DEFAULT_PORTS

    consumers = {c for t in ALL_TOPICS for c in t.consumers}
    return [s for s in DEFAULT_PORTS if s in consumers]


class UnknownDeadLetter(Exception):
    """No dead letter with that id (or it has aged out of the topic)."""


@dataclass(frozen=True)
class DeadLetter:
    id: str  # <consumer>:<partition>:<offset> of the dead-letter topic
    consumer: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    info: dict[str, str] = field(default_factory=dict)  # the dead-letter headers, decoded

    @property
    def reason(self) -> str:
        return self.info.get("reason", "")

    @property
    def source_topic(self) -> str:
        return self.info.get("source_topic", "")

    @property
    def event_type(self) -> str:
        return self.header("ce_type")

    @property
    def event_id(self) -> str:
        return self.header("ce_id")

    def header(self, name: str) -> str:
        for key, value in self.headers:
            if key == name:
                return (value or b"").decode(errors="replace")
        return ""

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if not k.startswith(OURS) and k != REPLAYED_FROM]


def parse_id(dead_letter_id: str) -> tuple[str, int, int]:
    parts = dead_letter_id.split(":")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        raise UnknownDeadLetter(
            f"dead letter id {dead_letter_id[:80]!r} is not <consumer>:<partition>:<offset>"
        )
    if parts[0] not in consuming_services():
        raise UnknownDeadLetter(f"no consumer {parts[0][:40]!r} (one of {', '.join(consuming_services())})")
    return parts[0], int(parts[1]), int(parts[2])


class Backbone:
    """kafka-python clients on the platform's broker settings (KAFKA_BOOTSTRAP_SERVERS, TLS/SASL)."""

    def __init__(self, bootstrap_servers: str, timeout_s: float = 10) -> None:
        from ach_events.kafka_security import broker_security
        from kafka.consumer import KafkaConsumer
        from kafka.errors import KafkaError

        self.servers = bootstrap_servers
        self._security = broker_security().kafka_python()
        self._timeout_ms = int(timeout_s * 1000)
        try:
            self.consumer = KafkaConsumer(
                bootstrap_servers=bootstrap_servers.split(","),
                client_id="achctl",
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=max(self._timeout_ms, 5000) + 1000,
                bootstrap_timeout_ms=self._timeout_ms,
                **self._security,
            )
            self.consumer.topics()  # fails here, not later, when the broker is not there
        except (KafkaError, OSError, ValueError, AssertionError) as exc:
            raise BrokerUnavailable(
                f"Kafka broker unreachable at {bootstrap_servers} ({type(exc).__name__})"
            ) from None
        self._admin: Any = None

    def close(self) -> None:
        self.consumer.close()
        if self._admin is not None:
            self._admin.close()

    @property
    def admin(self) -> Any:
        from kafka.admin import KafkaAdminClient

        if self._admin is None:
            self._admin = KafkaAdminClient(
                bootstrap_servers=self.servers.split(","), client_id="achctl", **self._security
            )
        return self._admin

    def _partitions(self, topic: str) -> list[Any]:
        from kafka.structs import TopicPartition

        return [TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic) or ())]

    def consumer_lag(self, service: str) -> int | None:
        """Records on the service's topics not yet handled by its group; None: the group never
        committed (not started yet)."""
        group = namespaced(service)
        committed = self.admin.list_group_offsets({group: None}).get(group, {})
        positions = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
        if not positions:
            return None
        ends = self.consumer.end_offsets(list(positions))
        return int(sum(max(ends[tp] - offset, 0) for tp, offset in positions.items()))

    def dead_letter_count(self, service: str) -> int:
        """Dead letters still retained on the service's dead-letter topic."""
        partitions = self._partitions(dead_letter_topic(service).physical_name)
        if not partitions:
            return 0
        ends = self.consumer.end_offsets(partitions)
        starts = self.consumer.beginning_offsets(partitions)
        return sum(ends[tp] - starts[tp] for tp in partitions)

    def dead_letters(self, service: str) -> Iterator[DeadLetter]:
        """Every dead letter the service's dead-letter topic still holds, oldest first per partition."""
        partitions = self._partitions(dead_letter_topic(service).physical_name)
        if not partitions:
            return
        ends = self.consumer.end_offsets(partitions)
        starts = self.consumer.beginning_offsets(partitions)
        wanted = [tp for tp in partitions if ends[tp] > starts[tp]]
        if not wanted:
            return
        self.consumer.assign(wanted)
        for tp in wanted:
            self.consumer.seek(tp, starts[tp])
        remaining = set(wanted)
        deadline = time.monotonic() + self._timeout_ms / 1000 * 3
        while remaining and time.monotonic() < deadline:
            batches = self.consumer.poll(timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < ends[tp]:
                        yield _dead_letter(service, record)
                if self.consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)

    def dead_letter(self, dead_letter_id: str) -> DeadLetter:
        service, partition, offset = parse_id(dead_letter_id)
        record = self._read_one(dead_letter_topic(service).physical_name, partition, offset)
        if record is None:
            raise UnknownDeadLetter(f"no dead letter {dead_letter_id} (never written, or aged out)")
        return _dead_letter(service, record)

    def _read_one(self, topic: str, partition: int, offset: int) -> Any:
        from kafka.structs import TopicPartition

        tp = TopicPartition(topic, partition)
        if tp not in self._partitions(topic):
            return None
        start = self.consumer.beginning_offsets([tp])[tp]
        end = self.consumer.end_offsets([tp])[tp]
        if not start <= offset < end:
            return None
        self.consumer.assign([tp])
        self.consumer.seek(tp, offset)
        deadline = time.monotonic() + self._timeout_ms / 1000
        while time.monotonic() < deadline:
            for record in self.consumer.poll(timeout_ms=500, max_records=1).get(tp, []):
                if record.offset == offset:
                    return record
        return None

    def replay(self, letter: DeadLetter, operator: str) -> str:
        """Send the dead letter's event back to its source topic (the consumer's inbox keeps it
        from taking effect twice), and record who did it in the audit log. Returns the topic."""
        from kafka.producer import KafkaProducer

        topic = letter.source_topic
        if not topic:
            raise UnknownDeadLetter(f"dead letter {letter.id} does not name its source topic")
        value, key, headers = letter.value, letter.key, letter.original_headers
        if letter.info.get("body_omitted"):
            # Too big to copy into the dead letter: it is still at its source offset.
            original = self._read_one(
                topic, int(letter.info["source_partition"]), int(letter.info["source_offset"])
            )
            if original is None:
                raise UnknownDeadLetter(
                    f"dead letter {letter.id}: its event has aged out of {topic}; it cannot be replayed"
                )
            value, key, headers = original.value, original.key, list(original.headers or ())
        producer = KafkaProducer(
            bootstrap_servers=self.servers.split(","), client_id="achctl", acks="all", **self._security
        )
        try:
            replayed = [*headers, (REPLAYED_FROM, letter.id.encode())]
            producer.send(topic, value=value, key=key, headers=replayed).get(timeout=self._timeout_ms / 1000)
            self._audit(producer, letter, operator)
            producer.flush(timeout=self._timeout_ms / 1000)
        finally:
            producer.close()
        return topic

    def _audit(self, producer: Any, letter: DeadLetter, operator: str) -> None:
        from ach_events.audit_trail import access_recorded
        from ach_events.envelope import Envelope
        from ach_platform.audit import AuditEntry

        entry = AuditEntry(
            service="achctl",
            method="achctl dlq replay",
            partner_id="",
            user_id=operator or getpass.getuser(),
            credential="ops",
            purpose_of_use="HOPERAT",
            resources={
                "dead_letter_id": letter.id,
                "source_topic": letter.source_topic,
                "event_id": letter.event_id,
                "event_type": letter.event_type,
            },
            outcome="OK",
            trace_id="",
        )
        envelope = Envelope.wrap(access_recorded(entry), source="/ach/achctl", key=entry.user_id)
        producer.send(
            AUDIT_EVENTS.physical_name,
            value=envelope.payload,
            key=envelope.key.encode(),
            headers=envelope.headers(),
        ).get(timeout=self._timeout_ms / 1000)


def _dead_letter(service: str, record: Any) -> DeadLetter:
    headers = tuple((k, v or b"") for k, v in (record.headers or ()))
    info = {k[len(OURS) :]: v.decode(errors="replace") for k, v in headers if k.startswith(OURS)}
    return DeadLetter(
        id=f"{service}:{record.partition}:{record.offset}",
        consumer=service,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=headers,
        info=info,
    )
