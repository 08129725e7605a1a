"""Screening tables. Answers (PHI) are kept apart from the screening's scored summary."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession


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
    urgent: bool
    screened_at: datetime
    site_id: str = Field(max_length=100)
    language: str = Field(max_length=35)
    created_at: datetime


class ScreeningAnswer(SQLModel, table=True):
    __tablename__ = "screening_answer"

    screening_id: str = Field(primary_key=True, foreign_key="screening.id", max_length=36)
    question_code: str = Field(primary_key=True, max_length=50)
    answer_codes: list[str] = Field(sa_column=Column(JSON, nullable=False))
    declined: bool = False


async def find_by_submitter(
    session: AsyncSession, partner_id: str, submitter_id: str
) -> ScreeningRecord | None:
    query = select(ScreeningRecord).where(
        ScreeningRecord.submitter_partner_id == partner_id,
        ScreeningRecord.submitter_screening_id == submitter_id,
    )
    return (await session.exec(query)).first()
