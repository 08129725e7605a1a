"""The record format on partner topics, for any Kafka client (CloudEvents 1.0, Kafka binary mode):

    topic    ach.partners.<partner-id>.inbound.v1   (yours to write; outbound.v1 is yours to read)
    key      the aggregate id: your screening id, or the referral id
    value    the protobuf message, serialized (e.g. ach.partners.v1.ScreeningSubmitted)
    headers  ce_id            a new UUID per event (the network deduplicates on it)
             ce_source        /partners/<partner-id>   (must be your own id, or the event is refused)
             ce_specversion   1.0
             ce_type          the message's full name, e.g. ach.partners.v1.ScreeningSubmitted
             ce_time          RFC 3339, e.g. 2026-11-23T14:05:00Z
             ce_subject       what the event is about (defaults to the key)
             ce_dataschema    urn:ach:proto:<ce_type>
             content-type     application/protobuf
             traceparent      optional W3C trace context

The actor inside the payload (``screened_by.partner_id``, ``actor.partner_id``) must name you too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf.message import Message

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/protobuf"


def inbound_topic(partner_id: str, namespace: str = "") -> str:
    return _namespaced(f"ach.partners.{partner_id}.inbound.v1", namespace)


def outbound_topic(partner_id: str, namespace: str = "") -> str:
    return _namespaced(f"ach.partners.{partner_id}.outbound.v1", namespace)


def _namespaced(name: str, namespace: str) -> str:
    return f"{namespace}.{name}" if namespace else name


@dataclass(frozen=True)
class PartnerEvent:
    partner_id: str
    message: Message
    key: str
    subject: str = ""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    traceparent: str = ""

    @property
    def type(self) -> str:
        return str(self.message.DESCRIPTOR.full_name)

    def value(self) -> bytes:
        return bytes(self.message.SerializeToString(deterministic=True))

    def headers(self) -> list[tuple[str, bytes]]:
        values = {
            "ce_id": self.id,
            "ce_source": f"/partners/{self.partner_id}",
            "ce_specversion": SPEC_VERSION,
            "ce_type": self.type,
            "ce_time": self.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "ce_subject": self.subject or self.key,
            "ce_dataschema": f"urn:ach:proto:{self.type}",
            "content-type": CONTENT_TYPE,
        }
        if self.traceparent:
            values["traceparent"] = self.traceparent
        return [(k, v.encode()) for k, v in values.items()]
