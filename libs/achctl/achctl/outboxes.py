"""Each service's outbox backlog, read from its own database (<SERVICE>_DATABASE_URL or
DATABASE_URL, as the service itself resolves it): rows committed but not yet on Kafka, the age of
the oldest, and rows set aside as unpublishable."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from ach_platform.settings import ServiceSettings


@dataclass(frozen=True)
class OutboxBacklog:
    service: str
    waiting: int | None  # None: the database could not be read
    oldest_age_s: float | None
    set_aside: int | None
    problem: str = ""


def outbox_backlog(service: str, timeout_s: float = 5) -> OutboxBacklog:
    try:
        url = ServiceSettings.from_env(service).database_url
        return asyncio.run(asyncio.wait_for(_count(service, url), timeout_s))
    except Exception as exc:  # a database not reachable from here is one cell, not a failed status
        return OutboxBacklog(service, None, None, None, f"database unreadable ({type(exc).__name__})")


async def _count(service: str, url: str) -> OutboxBacklog:
    from ach_events.outbox import OutboxEvent
    from ach_platform.database import create_engine
    from sqlalchemy import func, select
    from sqlmodel import col

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            waiting = (
                await conn.execute(
                    select(func.count(), func.min(col(OutboxEvent.created_at))).where(
                        col(OutboxEvent.published_at).is_(None), col(OutboxEvent.set_aside_reason).is_(None)
                    )
                )
            ).one()
            set_aside = (
                await conn.execute(
                    select(func.count()).where(
                        col(OutboxEvent.published_at).is_(None),
                        col(OutboxEvent.set_aside_reason).is_not(None),
                    )
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    count, oldest = waiting
    age = None
    if oldest is not None:
        oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
        age = max((datetime.now(UTC) - oldest).total_seconds(), 0.0)
    return OutboxBacklog(service, int(count), age, int(set_aside))
