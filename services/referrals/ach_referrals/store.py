"""Referral tables, and the local replicas of the directory (from its compacted topic) and of the
residents' consents (from the resident events)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, update
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession


class ReferralRecord(SQLModel, table=True):
    __tablename__ = "referral"

    id: str = Field(primary_key=True, max_length=36)
    resident_id: str = Field(index=True, max_length=100)
    need_domain: str = Field(max_length=100)
    need_id: str = Field(default="", max_length=36, index=True)
    screening_id: str = Field(default="", max_length=36)
    language: str = Field(default="en", max_length=35)
    source_partner_id: str = Field(max_length=100)
    target_partner_id: str = Field(default="", max_length=100, index=True)
    target_service_id: str = Field(default="", max_length=100)
    status: str = Field(max_length=30)
    outcome: str = Field(default="", max_length=30)
    draft_reason: str = Field(default="", max_length=40)
    sequence: int = 0  # count of status changes: events carry it so consumers apply them in order
    created_at: datetime
    updated_at: datetime
    # The next timer (reminder, escalation, acceptance limit), counted from updated_at; None: none.
    timer_due_at: datetime | None = Field(default=None, index=True)
    informational: bool = False  # the resident was given the information; no hand-off
    # What the source gave for matching (kept for re-routing; never in events).
    match_zip: str = Field(default="", max_length=10)
    match_age: int | None = None
    match_available_at: datetime | None = None  # when the resident said they can go (for matching)
    reminders_sent: int = 0
    escalated: bool = False


class ReferralHistory(SQLModel, table=True):
    __tablename__ = "referral_history"

    referral_id: str = Field(primary_key=True, foreign_key="referral.id", max_length=36)
    sequence: int = Field(primary_key=True)
    from_status: str = Field(max_length=30)
    to_status: str = Field(max_length=30)
    actor_partner_id: str = Field(max_length=100)
    actor_user_id: str = Field(default="", max_length=100)
    reason: str = ""
    reason_code: str = Field(default="", max_length=40)
    outcome: str = Field(default="", max_length=30)
    changed_at: datetime
    # The target after the change: the history shows every target a re-routed referral had.
    target_partner_id: str = Field(default="", max_length=100)
    target_service_id: str = Field(default="", max_length=100)


class DirectoryServiceReplica(SQLModel, table=True):
    __tablename__ = "directory_service_replica"

    service_id: str = Field(primary_key=True, max_length=100)
    organization_id: str = Field(max_length=100)
    need_domains: list[str] = Field(sa_column=Column(JSON, nullable=False))
    languages: list[str] = Field(sa_column=Column(JSON, nullable=False))
    active: bool
    capacity_available: int
    version: int
    places: list[list[float]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    minimum_age: int = 0
    maximum_age: int = 0
    area_zips: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    area_radius_km: float = 0.0
    # HSDS schedules as the directory publishes them (see ach_platform.opening_hours.Hours).
    opening_hours: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # The network partner that runs it, as the directory says ("": information only); whether it
    # receives referrals is the partner registry's say (active, role referral-target).
    partner_id: str = Field(default="", max_length=100)
    # What a resident is told of it (public directory information).
    name: str = Field(default="", max_length=500)
    organization_name: str = Field(default="", max_length=500)
    phone: str = Field(default="", max_length=100)
    address: str = Field(default="", max_length=500)


async def referral_for_need(session: AsyncSession, need_id: str) -> ReferralRecord | None:
    return (await session.exec(select(ReferralRecord).where(ReferralRecord.need_id == need_id))).first()


async def replica_services(session: AsyncSession) -> list[DirectoryServiceReplica]:
    return list((await session.exec(select(DirectoryServiceReplica))).all())


async def referrals_of(session: AsyncSession, resident_ids: set[str]) -> list[ReferralRecord]:
    rows = await session.exec(select(ReferralRecord).where(col(ReferralRecord.resident_id).in_(resident_ids)))
    return list(rows.all())


async def referrals_of_party(
    session: AsyncSession, partner_id: str, *, screening_id: str, status: str, limit: int
) -> list[ReferralRecord]:
    query = select(ReferralRecord).where(
        (ReferralRecord.source_partner_id == partner_id) | (ReferralRecord.target_partner_id == partner_id)
    )
    if screening_id:
        query = query.where(ReferralRecord.screening_id == screening_id)
    if status:
        query = query.where(ReferralRecord.status == status)
    rows = await session.exec(query.order_by(col(ReferralRecord.created_at).desc()).limit(limit))
    return list(rows.all())


async def history_of(session: AsyncSession, referral_id: str) -> list[ReferralHistory]:
    rows = await session.exec(
        select(ReferralHistory)
        .where(ReferralHistory.referral_id == referral_id)
        .order_by(col(ReferralHistory.sequence))
    )
    return list(rows.all())


async def organizations_that_rejected(session: AsyncSession, referral_id: str) -> set[str]:
    """The targets that turned a referral down, or let it wait past the time limit (each history row
    names the target it concerns; the rejection's actor may be the network)."""
    rows = await session.exec(
        select(ReferralHistory.target_partner_id).where(
            ReferralHistory.referral_id == referral_id,
            ReferralHistory.to_status == "rejected",
        )
    )
    return {r for r in rows.all() if r}


async def last_changed_by(session: AsyncSession, referral: ReferralRecord) -> str:
    """Who made the referral's latest change ("" for none or the network)."""
    found = (
        await session.get(ReferralHistory, (referral.id, referral.sequence)) if referral.sequence else None
    )
    return found.actor_partner_id if found else ""


async def due_timers(session: AsyncSession, now: datetime, limit: int) -> list[tuple[str, datetime]]:
    rows = await session.exec(
        select(ReferralRecord.id, ReferralRecord.timer_due_at)
        .where(col(ReferralRecord.timer_due_at) <= now)
        .order_by(col(ReferralRecord.timer_due_at))
        .limit(limit)
    )
    return [(i, due) for i, due in rows.all() if due is not None]


async def take_timer(session: AsyncSession, referral_id: str, due_at: datetime) -> bool:
    """Take a due timer: clear it only if it is still the one read (a conditional update), so that
    of several replicas exactly one fires it. The referral's row stays locked until the commit."""
    table = ReferralRecord.__table__  # type: ignore[attr-defined]
    conn = await session.connection()
    taken = await conn.execute(
        update(table)
        .where(table.c.id == referral_id, table.c.timer_due_at == due_at)
        .values(timer_due_at=None)
    )
    return bool(taken.rowcount == 1)


async def open_referrals_with_target(session: AsyncSession) -> list[ReferralRecord]:
    """Referrals that wait for (or are with) a target: what the mend of non-partner targets checks."""
    rows = await session.exec(
        select(ReferralRecord).where(
            col(ReferralRecord.status).in_(["requested", "accepted", "in-progress", "on-hold"]),
            ReferralRecord.target_partner_id != "",
        )
    )
    return list(rows.all())
