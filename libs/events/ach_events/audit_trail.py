"""Where every service's audit records go: the audit topic, written and acknowledged (acks=all)
before the audited call returns. The identity service keeps the queryable log."""

from __future__ import annotations

from ach.audit.v1 import audit_pb2
from ach_platform.audit import AuditEntry
from ach_platform.clock import to_timestamp
from aiokafka import AIOKafkaProducer

from ach_events.envelope import Envelope
from ach_events.topics import AUDIT_EVENTS


class KafkaAuditSink:
    def __init__(self, producer: AIOKafkaProducer, service: str) -> None:
        self._producer = producer
        self._source = f"/ach/{service}"

    async def record(self, entry: AuditEntry) -> None:
        envelope = Envelope.wrap(
            access_recorded(entry), source=self._source, key=entry.partner_id or "unauthenticated"
        )
        await self._producer.send_and_wait(
            AUDIT_EVENTS.physical_name,
            envelope.payload,
            key=envelope.key.encode(),
            headers=envelope.headers(),
        )


def access_recorded(entry: AuditEntry) -> audit_pb2.AccessRecorded:
    """The event an audit entry travels as (to the identity service, which keeps the log)."""
    return audit_pb2.AccessRecorded(
        record_id=entry.record_id,
        at=to_timestamp(entry.at),
        service=entry.service,
        method=entry.method,
        partner_id=entry.partner_id,
        user_id=entry.user_id,
        credential=entry.credential,
        purpose_of_use=entry.purpose_of_use,
        resources=entry.resources,
        outcome=entry.outcome,
        trace_id=entry.trace_id,
    )
