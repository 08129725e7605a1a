"""Transactional outbox: events are rows written in the same transaction as the state change.

``Outbox.add`` is called inside a service's unit of work; the relay (``relay.py``) publishes the
rows afterwards. A crash between commit and publish loses nothing: the rows wait for the relay.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from datetime import UTC, datetime

from ach_platform.audit import call_audit
from google.protobuf.message import Message
from opentelemetry import propagate
from sqlalchemy import BigInteger, Column, Integer, LargeBinary, event, insert
from sqlalchemy.orm import Session
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_events.audit_trail import access_recorded
from ach_events.envelope import Envelope
from ach_events.topics import AUDIT_EVENTS, Topic


class OutboxEvent(SQLModel, table=True):
    __tablename__ = "outbox_event"

    # Publication order: the relay sends rows in this order, so per-key order is commit order.
    seq: int | None = Field(
        default=None,
        # SQLite autoincrements only an INTEGER primary key; PostgreSQL gets a 64-bit sequence.
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )
    event_id: str = Field(max_length=36, unique=True)
    topic: str = Field(max_length=200)
    key: str = Field(max_length=200)
    event_type: str = Field(max_length=200)
    headers: str  # JSON list of [name, value] pairs: the envelope's Kafka headers
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime
    published_at: datetime | None = Field(default=None, index=True)
    # A row Kafka can never take (too big, say): set aside with why, so the rows behind it go on.
    set_aside_reason: str | None = Field(default=None, max_length=500)


class Outbox:
    """Writes events into the caller's transaction and wakes the relay once it commits."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.committed = asyncio.Event()

    def add(
        self,
        session: AsyncSession,
        topic: Topic,
        message: Message,
        *,
        key: str,
        subject: str = "",
        source: str = "",
    ) -> Envelope:
        """``source`` overrides the service's own (the partner gateway passes on a partner's event
        under the partner's source). The row is written when the transaction commits, with the
        transaction's other events in one statement."""
        if message.DESCRIPTOR.full_name not in topic.event_types:
            raise ValueError(f"{message.DESCRIPTOR.full_name} is not an event type of topic {topic.name}")
        trace_headers: dict[str, str] = {}
        propagate.inject(trace_headers)  # the caller's span: the trace goes on through Kafka
        envelope = Envelope.wrap(message, source=source or self.source, key=key, subject=subject)
        envelope = Envelope(**{**envelope.__dict__, "trace_headers": trace_headers})
        info = session.sync_session.info
        audit = call_audit()
        if audit is not None and _AUDITED not in info:
            # An audited call's change: its audit record commits with it (written at commit, so it
            # names what the handler learned until then).
            info[_AUDITED] = (audit, self.source, contextvars.copy_context())
        _pend(info, topic, envelope)
        info.setdefault(_TO_WAKE, set()).add(self)
        return envelope

    def wake(self) -> None:
        self.committed.set()


_PENDING = "ach_outbox_pending"
_TO_WAKE = "ach_outbox_to_wake"
_AUDITED = "ach_outbox_audited"


def _pend(info: dict[str, object], topic: Topic, envelope: Envelope) -> None:
    pending = info.setdefault(_PENDING, [])
    assert isinstance(pending, list)
    pending.append(
        {
            "event_id": envelope.id,
            "topic": topic.physical_name,
            "key": envelope.key,
            "event_type": envelope.type,
            "headers": json.dumps([[k, v.decode()] for k, v in envelope.headers()]),
            "payload": envelope.payload,
            "created_at": datetime.now(UTC),
            "published_at": None,
        }
    )


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    if (audited := session.info.get(_AUDITED)) is not None and session.info.get(_PENDING):
        audit, source, call_context = audited
        entry = call_context.run(audit.build, "OK")  # the call's caller and span, whatever runs this
        audit.resources = dict(entry.resources)
        envelope = Envelope.wrap(
            access_recorded(entry), source=source, key=entry.partner_id or "unauthenticated"
        )
        _pend(session.info, AUDIT_EVENTS, envelope)
    rows = session.info.pop(_PENDING, None)
    if rows:
        # The table, not the ORM entity: a plain executemany, without the ORM's bulk-insert layer.
        session.execute(insert(OutboxEvent.__table__), rows)  # type: ignore[attr-defined]


@event.listens_for(Session, "after_commit")
def _wake_relays(session: Session) -> None:
    audited = session.info.pop(_AUDITED, None)
    if audited is not None:
        audited[0].committed = True
    for outbox in session.info.pop(_TO_WAKE, ()):
        outbox.wake()


@event.listens_for(Session, "after_rollback")
def _forget_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(_TO_WAKE, None)
    session.info.pop(_AUDITED, None)
