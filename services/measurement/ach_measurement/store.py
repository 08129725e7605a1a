"""The funnel projection: one counter per (metric, need domain); and the demographics given with
screenings, the dimensions measurement disaggregates by (race, ethnicity, language, age band, place)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession


class FunnelCounter(SQLModel, table=True):
    __tablename__ = "funnel_counter"

    metric: str = Field(primary_key=True, max_length=50)
    need_domain: str = Field(primary_key=True, max_length=100)
    count: int = 0


class ScreeningDemographicsFact(SQLModel, table=True):
    """One screening's demographics, as screening published them; reported only in aggregate."""

    __tablename__ = "screening_demographics_fact"

    screening_id: str = Field(primary_key=True, max_length=36)
    resident_id: str = Field(index=True, max_length=100)
    site_id: str = Field(max_length=100)
    screened_at: datetime
    race_codes: list[str] = Field(sa_column=Column(JSON, nullable=False))
    ethnicity_code: str = Field(max_length=10)
    preferred_language: str = Field(max_length=35)
    age_band: str = Field(max_length=10)
    zip: str = Field(max_length=5)
    neighbourhood: str = Field(max_length=100)


async def increment(session: AsyncSession, metric: str, need_domain: str) -> None:
    counter = await session.get(FunnelCounter, (metric, need_domain))
    if counter is None:
        counter = FunnelCounter(metric=metric, need_domain=need_domain, count=0)
    counter.count += 1
    session.add(counter)


async def counters_for(session: AsyncSession, need_domain: str) -> dict[str, int]:
    rows = (await session.exec(select(FunnelCounter).where(FunnelCounter.need_domain == need_domain))).all()
    return {r.metric: r.count for r in rows}
