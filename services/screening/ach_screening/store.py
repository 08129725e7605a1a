"""Screening tables. Answers (PHI) and demographics are kept apart from the screening's scored
summary; the resident links and consents are replicas of the resident index's events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ach_events.resident_replica import ResidentLinkReplica
from sqlalchemy import JSON, Column, UniqueConstraint, tuple_
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_screening.domain import Finding


class ScreeningRecord(SQLModel, table=True):
    __tablename__ = "screening"
    __table_args__ = (UniqueConstraint("submitter_partner_id", "submitter_screening_id"),)

    id: str = Field(primary_key=True, max_length=36)
    submitter_partner_id: str = Field(max_length=100)
    submitter_screening_id: str = Field(max_length=200)
    resident_id: str = Field(index=True, max_length=100)
    instrument_id: str = Field(max_length=100)
    instrument_version: str = Field(max_length=50)
    positive_domains: list[str] = Field(sa_column=Column(JSON, nullable=False))
    # [{"domain": ..., "urgent": ...}]: the findings without their evidence (that is in the answers)
    findings: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    negative_domains: list[str] = Field(sa_column=Column(JSON, nullable=False))
    totals: dict[str, int] = Field(sa_column=Column(JSON, nullable=False))
    urgent: bool
    screened_at: datetime
    site_id: str = Field(max_length=100)
    language: str = Field(max_length=35)
    screener_user_id: str = Field(default="", max_length=100)
    consent_id: str = Field(default="", max_length=36)
    created_at: datetime


class ScreeningAnswer(SQLModel, table=True):
    __tablename__ = "screening_answer"

    screening_id: str = Field(primary_key=True, foreign_key="screening.id", max_length=36)
    question_code: str = Field(primary_key=True, max_length=50)
    answer_codes: list[str] = Field(sa_column=Column(JSON, nullable=False))
    declined: bool = False
    value: str = Field(default="", max_length=200)


class ScreeningDemographics(SQLModel, table=True):
    """Given with a screening when offered; for measurement disaggregated, never per resident to partners."""

    __tablename__ = "screening_demographics"

    screening_id: str = Field(primary_key=True, foreign_key="screening.id", max_length=36)
    race_codes: list[str] = Field(sa_column=Column(JSON, nullable=False))
    ethnicity_code: str = Field(default="", max_length=10)
    preferred_language: str = Field(default="", max_length=35)
    age_band: str = Field(default="", max_length=10)
    zip: str = Field(default="", max_length=5)
    neighbourhood: str = Field(default="", max_length=100)


def findings_of(record: ScreeningRecord) -> tuple[Finding, ...]:
    """The stored findings (domain and urgency; their evidence is in the answers)."""
    return tuple(Finding(str(f["domain"]), bool(f["urgent"]), ()) for f in record.findings)


async def find_by_submitters(
    session: AsyncSession, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], ScreeningRecord]:
    """The screenings already taken under these (submitter partner, submitter's screening id) keys."""
    if not keys:
        return {}
    query = select(ScreeningRecord).where(
        tuple_(col(ScreeningRecord.submitter_partner_id), col(ScreeningRecord.submitter_screening_id)).in_(
            list(keys)
        )
    )
    return {(r.submitter_partner_id, r.submitter_screening_id): r for r in (await session.exec(query)).all()}


async def answers_of(session: AsyncSession, screening_id: str) -> list[ScreeningAnswer]:
    rows = await session.exec(select(ScreeningAnswer).where(ScreeningAnswer.screening_id == screening_id))
    return list(rows.all())


async def screenings_of(session: AsyncSession, resident_ids: set[str]) -> list[ScreeningRecord]:
    rows = await session.exec(
        select(ScreeningRecord)
        .where(col(ScreeningRecord.resident_id).in_(resident_ids))
        .order_by(col(ScreeningRecord.screened_at), col(ScreeningRecord.id))
    )
    return list(rows.all())


async def partners_by_resident(session: AsyncSession, resident_ids: set[str]) -> dict[str, set[str]]:
    """For each resident id, the partners that have it on their books."""
    if not resident_ids:
        return {}
    rows = await session.exec(
        select(ResidentLinkReplica.resident_id, ResidentLinkReplica.partner_id).where(
            col(ResidentLinkReplica.resident_id).in_(resident_ids)
        )
    )
    links: dict[str, set[str]] = {}
    for resident_id, partner_id in rows.all():
        links.setdefault(resident_id, set()).add(partner_id)
    return links


async def partners_of(session: AsyncSession, resident_ids: set[str]) -> set[str]:
    rows = await session.exec(
        select(ResidentLinkReplica.partner_id).where(col(ResidentLinkReplica.resident_id).in_(resident_ids))
    )
    return set(rows.all())
