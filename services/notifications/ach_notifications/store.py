"""The delivery log partners and ops query (also the queue of webhook deliveries still to make),
the channels partners registered, each partner's circuit, and who is the source of each referral."""

from __future__ import annotations

from datetime import datetime
from typing import Any

# ResidentAlias is a table of this service's database too (migration 0004): which ids were merged.
from ach_events.resident_replica import ResidentAlias as ResidentAlias
from ach_events.resident_replica import person_of
from sqlalchemy import JSON, Column, Index
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_notifications.sealing import SecretBox


class DeliveryRecord(SQLModel, table=True):
    __tablename__ = "delivery"

    id: str = Field(primary_key=True, max_length=36)
    partner_id: str = Field(index=True, max_length=100)
    channel: str = Field(max_length=20)
    subject_type: str = Field(max_length=50)
    subject_id: str = Field(index=True, max_length=100)
    event_type: str = Field(max_length=100)
    status: int
    attempts: int = 0
    source_event_id: str = Field(max_length=100)
    created_at: datetime
    delivered_at: datetime | None = None
    channel_id: str = Field(default="", max_length=36)
    # What is sent (ids only), kept so every attempt sends the same bytes' content.
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    next_attempt_at: datetime | None = None
    # A worker holds a delivery while it tries it; a lease past its time (the worker died) is free.
    claimed_until: datetime | None = None
    last_error: str = ""
    traceparent: str = Field(default="", max_length=100)  # the referral event's trace goes on

    __table_args__ = (
        Index("ix_delivery_due", "status", "next_attempt_at"),
        Index("ix_delivery_channel_subject", "channel_id", "subject_id", "status"),
    )


class PartnerChannel(SQLModel, table=True):
    """Where a partner is notified: an HTTPS webhook (signed with the channel's secret) or e-mail."""

    __tablename__ = "partner_channel"

    id: str = Field(primary_key=True, max_length=36)
    partner_id: str = Field(index=True, max_length=100)
    kind: str = Field(max_length=20)  # webhook | email
    address: str = Field(max_length=2000)
    secret: str = Field(default="", max_length=400)  # sealed (SecretBox): "fernet:<token>"
    active: bool = True
    created_at: datetime


class PartnerCircuit(SQLModel, table=True):
    """A partner's circuit breaker, shared by every replica of the service."""

    __tablename__ = "partner_circuit"

    partner_id: str = Field(primary_key=True, max_length=100)
    failures: int = 0
    open_until: datetime | None = None


class ReferralParty(SQLModel, table=True):
    """Source and target of each referral, learned from ReferralCreated (events carry ids only)."""

    __tablename__ = "referral_party"

    referral_id: str = Field(primary_key=True, max_length=36)
    source_partner_id: str = Field(max_length=100)
    target_partner_id: str = Field(max_length=100)


class ResidentPreference(SQLModel, table=True):
    """Replica of each resident's contact preference (ContactPreferenceChanged): whether and how the
    network may message them, and in which language. No address: identity gives it when sending."""

    __tablename__ = "resident_preference"

    resident_id: str = Field(primary_key=True, max_length=36)
    do_not_contact: bool = False
    channel: str = Field(default="", max_length=10)
    language: str = Field(default="", max_length=35)
    version: int = 0


class HelpQuestion(SQLModel, table=True):
    """The question "did you get the help you needed?" sent to a resident after a referral closed,
    and their answer. What finds it again is kept only as a keyed digest (``reply_key``): of the
    number a text went to (its reply comes from that number), or of the link an e-mail carried.
    The reply's text is never kept."""

    __tablename__ = "help_question"

    id: str = Field(primary_key=True, max_length=36)  # the delivery that asked it
    referral_id: str = Field(index=True, max_length=36)
    resident_id: str = Field(max_length=100)
    language: str = Field(max_length=35)
    channel: str = Field(max_length=10)  # sms | email
    reply_key: str = Field(index=True, max_length=64)
    asked_at: datetime
    open_until: datetime
    answered_at: datetime | None = None
    got_help: bool | None = None
    answer_message_id: str = Field(default="", index=True, max_length=64)  # the gateway's id: once


async def preference_of(session: AsyncSession, resident_id: str) -> ResidentPreference | None:
    """The preference identity acts on when it gives the address: the surviving record's, also for
    a referral made under an id merged into it (ResidentsMerged, kept as ResidentAlias)."""
    survivor, _ = await person_of(session, resident_id)
    return await session.get(ResidentPreference, survivor)


async def active_channels(session: AsyncSession, partner_id: str) -> list[PartnerChannel]:
    found = await session.exec(
        select(PartnerChannel)
        .where(PartnerChannel.partner_id == partner_id, col(PartnerChannel.active))
        .order_by(col(PartnerChannel.created_at))
    )
    return list(found.all())


async def seal_stored_secrets(sessions: async_sessionmaker[AsyncSession], box: SecretBox) -> int:
    """Seal the webhook secrets stored before sealing (once, at start-up); how many were."""
    async with sessions() as session, session.begin():
        channels = (await session.exec(select(PartnerChannel).where(PartnerChannel.secret != ""))).all()
        older = [c for c in channels if not box.sealed(c.secret)]
        for channel in older:
            channel.secret = box.seal(channel.secret)
            session.add(channel)
    return len(older)
