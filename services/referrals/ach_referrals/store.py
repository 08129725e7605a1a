"""Referral tables, and the local replica of the directory (from its compacted topic)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel, select
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
    sequence: int = 0  # count of status changes: events carry it so consumers apply them in order
    created_at: datetime
    updated_at: datetime


class ReferralHistory(SQLModel, table=True):
    __tablename__ = "referral_history"

    referral_id: str = Field(primary_key=True, foreign_key="referral.id", max_length=36)
    sequence: int = Field(primary_key=True)
    from_status: str = Field(max_length=30)
    to_status: str = Field(max_length=30)
    actor_partner_id: str = Field(max_length=100)
    actor_user_id: str = Field(default="", max_length=100)
    reason: str = ""
    outcome: str = Field(default="", max_length=30)
    changed_at: datetime


class DirectoryServiceReplica(SQLModel, table=True):
    __tablename__ = "directory_service_replica"

    service_id: str = Field(primary_key=True, max_length=100)
    organization_id: str = Field(max_length=100)
    need_domains: list[str] = Field(sa_column=Column(JSON, nullable=False))
    languages: list[str] = Field(sa_column=Column(JSON, nullable=False))
    active: bool
    capacity_available: int
    version: int


async def referral_for_need(session: AsyncSession, need_id: str) -> ReferralRecord | None:
    return (await session.exec(select(ReferralRecord).where(ReferralRecord.need_id == need_id))).first()


async def replica_services(session: AsyncSession) -> list[DirectoryServiceReplica]:
    return list((await session.exec(select(DirectoryServiceReplica))).all())
