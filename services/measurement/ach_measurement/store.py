"""The funnel projection: one counter per (metric, need domain)."""

from __future__ import annotations

from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession


class FunnelCounter(SQLModel, table=True):
    __tablename__ = "funnel_counter"

    metric: str = Field(primary_key=True, max_length=50)
    need_domain: str = Field(primary_key=True, max_length=100)
    count: int = 0


async def increment(session: AsyncSession, metric: str, need_domain: str) -> None:
    counter = await session.get(FunnelCounter, (metric, need_domain))
    if counter is None:
        counter = FunnelCounter(metric=metric, need_domain=need_domain, count=0)
    counter.count += 1
    session.add(counter)


async def counters_for(session: AsyncSession, need_domain: str) -> dict[str, int]:
    rows = (await session.exec(select(FunnelCounter).where(FunnelCounter.need_domain == need_domain))).all()
    return {r.metric: r.count for r in rows}
