"""The funnel's exact counts come from the facts (SQLite and PostgreSQL): each event counts once
however often it arrives, hand-offs and informational referrals apart, by need domain, deliveries
counted and failed attempts not; so a rebuild of the facts rebuilds the funnel too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ach.notifications.v1 import notifications_pb2
from ach.referrals.v1 import referrals_pb2
from ach_events.envelope import Envelope
from ach_measurement.domain import funnel
from ach_measurement.store import funnel_counts
from ach_measurement.subscribers import HANDLERS
from ach_measurement.synthetic import events_of, sample_facts
from ach_platform import migrations
from ach_platform.clock import to_timestamp
from ach_platform.database import create_engine, session_factory
from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

pytestmark = pytest.mark.postgres
MIGRATIONS = Path(__file__).resolve().parents[1] / "ach_measurement" / "migrations"
AT = datetime(2026, 3, 2, 15, tzinfo=UTC)


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await asyncio.to_thread(migrations.upgrade, MIGRATIONS, database_url)
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def consume(sessions: async_sessionmaker[AsyncSession], message: Message) -> None:
    handler = HANDLERS[type(message)]
    envelope = Envelope("e", "test", message.DESCRIPTOR.full_name, "", "k", message.SerializeToString(), AT)
    async with sessions() as session, session.begin():
        await handler(session, envelope, message)


def delivered(
    delivery_id: str,
    status: notifications_pb2.DeliveryStatus.ValueType = notifications_pb2.DELIVERY_STATUS_DELIVERED,
) -> Message:
    return notifications_pb2.NotificationDelivered(
        delivery_id=delivery_id, channel="webhook", status=status, delivered_at=to_timestamp(AT)
    )


async def test_the_funnel_counts_each_fact_once_in_total_and_by_need_domain(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    facts = sample_facts(screenings=80, months=2)
    informational = referrals_pb2.ReferralCreated(
        referral_id="info-1",
        resident_id="r-info",
        need_domain="food-insecurity",
        created_at=to_timestamp(AT),
        informational=True,
    )
    messages = [m for _, _, m in events_of(facts)] + [informational]
    messages += [
        delivered("d-1"),
        delivered("d-2"),
        delivered("d-3", notifications_pb2.DELIVERY_STATUS_FAILED),
    ]
    for message in messages + messages[::3]:  # a third of them delivered twice
        await consume(sessions, message)

    def changes(to: str, outcome: str = "", domain: str = "") -> int:
        domains = {r.referral_id: r.need_domain for r in facts.referrals}
        return sum(
            1
            for c in facts.changes
            if c.change.to_status == to
            and (not outcome or c.change.outcome == outcome)
            and (not domain or domains.get(c.referral_id) == domain)
        )

    async with sessions() as session:
        total = await funnel_counts(session, funnel.ALL_DOMAINS)
        food = await funnel_counts(session, "food-insecurity")
    assert total == {
        funnel.SCREENINGS_COMPLETED: len(facts.screenings),
        funnel.NEEDS_IDENTIFIED: len(facts.needs),
        funnel.REFERRALS_CREATED: sum(1 for r in facts.referrals if not r.informational),
        funnel.INFORMATIONAL_REFERRALS: 1 + sum(1 for r in facts.referrals if r.informational),
        funnel.REFERRALS_ACCEPTED: changes("accepted"),
        funnel.REFERRALS_COMPLETED: changes("completed"),
        funnel.REFERRALS_NEED_MET: changes("completed", "need-met"),
        funnel.NOTIFICATIONS_DELIVERED: 2,
    }
    assert total[funnel.REFERRALS_NEED_MET] > 0 and total[funnel.INFORMATIONAL_REFERRALS] > 1
    assert food == {
        funnel.SCREENINGS_COMPLETED: 0,
        funnel.NEEDS_IDENTIFIED: sum(1 for n in facts.needs if n.need_domain == "food-insecurity"),
        funnel.REFERRALS_CREATED: sum(
            1 for r in facts.referrals if r.need_domain == "food-insecurity" and not r.informational
        ),
        funnel.INFORMATIONAL_REFERRALS: 1
        + sum(1 for r in facts.referrals if r.need_domain == "food-insecurity" and r.informational),
        funnel.REFERRALS_ACCEPTED: changes("accepted", domain="food-insecurity"),
        funnel.REFERRALS_COMPLETED: changes("completed", domain="food-insecurity"),
        funnel.REFERRALS_NEED_MET: changes("completed", "need-met", "food-insecurity"),
        funnel.NOTIFICATIONS_DELIVERED: 0,
    }
    assert 0 < food[funnel.REFERRALS_COMPLETED] < total[funnel.REFERRALS_COMPLETED]
