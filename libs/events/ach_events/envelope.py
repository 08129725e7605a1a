"""One envelope for every event: CloudEvents 1.0 in Kafka binary mode.

The CloudEvents attributes travel as ``ce_*`` headers, the content type as ``content-type``, the
W3C trace context as ``traceparent``/``tracestate``; the Kafka value is the protobuf message and the
Kafka key is the aggregate id (one resident's or one referral's events stay in order).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf.message import DecodeError, Message

from ach_events.registry import EventTypeError, message_class

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/protobuf"
SCHEMA_PREFIX = "urn:ach:proto:"

REQUIRED_HEADERS = ("ce_id", "ce_source", "ce_specversion", "ce_type")


class EnvelopeError(Exception):
    """A Kafka record is not a valid ACH event; the message is the dead-letter reason."""


@dataclass(frozen=True)
class Envelope:
    id: str
    source: str
    type: str
    subject: str
    key: str
    payload: bytes
    time: datetime
    trace_headers: dict[str, str] = field(default_factory=dict)

    @property
    def dataschema(self) -> str:
        return SCHEMA_PREFIX + self.type

    @classmethod
    def wrap(cls, message: Message, *, source: str, key: str, subject: str = "") -> Envelope:
        """A new event for ``message``: type is the protobuf full name, key the aggregate id."""
        if not key:
            raise ValueError("an event needs its aggregate id as key")
        return cls(
            id=str(uuid.uuid4()),
            source=source,
            type=message.DESCRIPTOR.full_name,
            subject=subject or key,
            key=key,
            payload=message.SerializeToString(deterministic=True),
            time=datetime.now(UTC),
        )

    def headers(self) -> list[tuple[str, bytes]]:
        values = {
            "ce_id": self.id,
            "ce_source": self.source,
            "ce_specversion": SPEC_VERSION,
            "ce_type": self.type,
            "ce_time": self.time.isoformat().replace("+00:00", "Z"),
            "ce_subject": self.subject,
            "ce_dataschema": self.dataschema,
            "content-type": CONTENT_TYPE,
            **self.trace_headers,
        }
        return [(k, v.encode()) for k, v in values.items()]

    def message(self) -> Message:
        """Decode the payload as the protobuf message its type names."""
        try:
            cls = message_class(self.type)
        except EventTypeError as exc:
            raise EnvelopeError(str(exc)) from None
        msg = cls()
        try:
            msg.ParseFromString(self.payload)
        except DecodeError as exc:
            raise EnvelopeError(f"payload is not a valid {self.type}: {exc}") from None
        return msg

    @classmethod
    def from_record(
        cls, key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes]]
    ) -> Envelope:
        """Read a Kafka record; raises EnvelopeError naming what is wrong."""
        found: dict[str, str] = {}
        for name, raw in headers or ():
            try:
                found[name] = raw.decode() if raw is not None else ""
            except UnicodeDecodeError:
                raise EnvelopeError(f"header {name!r} is not UTF-8") from None
        missing = [h for h in REQUIRED_HEADERS if not found.get(h)]
        if missing:
            raise EnvelopeError(f"not a CloudEvent: missing header(s) {', '.join(missing)}")
        if found["ce_specversion"] != SPEC_VERSION:
            raise EnvelopeError(f"unsupported CloudEvents specversion {found['ce_specversion']!r}")
        content_type = found.get("content-type", CONTENT_TYPE)
        if content_type != CONTENT_TYPE:
            raise EnvelopeError(f"unsupported content-type {content_type!r} (expected {CONTENT_TYPE})")
        if value is None:
            raise EnvelopeError("record has no value")
        if not key:
            raise EnvelopeError("record has no key (the aggregate id)")
        try:
            time = datetime.fromisoformat(found["ce_time"]) if found.get("ce_time") else datetime.now(UTC)
        except ValueError:
            raise EnvelopeError(f"ce_time {found['ce_time']!r} is not an RFC 3339 time") from None
        return cls(
            id=found["ce_id"],
            source=found["ce_source"],
            type=found["ce_type"],
            subject=found.get("ce_subject", ""),
            key=key.decode(errors="replace"),
            payload=value,
            time=time,
            trace_headers={k: found[k] for k in ("traceparent", "tracestate") if k in found},
        )


def header_map(headers: Iterable[tuple[str, bytes]] | None) -> Mapping[str, str]:
    return {k: (v or b"").decode(errors="replace") for k, v in headers or ()}
