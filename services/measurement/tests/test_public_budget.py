"""The public budget's figures from the fund's posted transactions: money in by source, spent by
purpose and need domain with small cells hidden (and none recoverable), cash and runway; and the
subscriber that turns TransactionPosted events into money facts, once each."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from ach.common.v1 import common_pb2
from ach.funding.v1 import funding_pb2
from ach_events.envelope import Envelope
from ach_measurement.domain.budget import Money, public_budget
from ach_measurement.domain.suppression import Status
from ach_measurement.public_pages import PublicPages, Words
from ach_measurement.store import MoneyFact, money_facts
from ach_measurement.subscribers import HANDLERS
from ach_platform import migrations
from ach_platform.clock import to_timestamp
from ach_platform.database import create_engine, session_factory
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

MIGRATIONS = Path(__file__).resolve().parents[1] / "ach_measurement" / "migrations"
AT = datetime(2026, 5, 20, 12, tzinfo=UTC)
TODAY = date(2026, 6, 10)


def outcome(domain: str, cents: int, at: datetime = AT) -> Money:
    return Money(at, "", 0, 0, cents, "outcome-payment", domain, 1)


def test_payments_by_need_hide_small_groups_and_what_would_give_them_back() -> None:
    facts = [
        Money(AT, "health-plan", 5_000_000, 0, 0, "", "", 0),
        Money(AT, "payment-received", 100_000, 0, 0, "", "", 0),
    ]
    facts += [outcome("housing-instability", 7_500) for _ in range(14)]
    facts += [outcome("food-insecurity", 5_000) for _ in range(12)]
    facts += [outcome("transportation-insecurity", 2_500) for _ in range(3)]
    facts.append(Money(AT, "", 0, 0, 40_000, "grant", "", 0))
    b = public_budget(facts, TODAY)
    by_need = {line.label: (line.cents, line.status) for line in b.spent_by_need_domain}
    assert by_need["housing-instability"] == (105_000, Status.FREE)
    assert by_need["transportation-insecurity"] == (None, Status.PRIMARY)  # 3 referrals
    assert by_need["food-insecurity"] == (None, Status.SECONDARY)  # else the total gives the 3 back
    purposes = {line.label: line.cents for line in b.spent_by_purpose}
    assert purposes == {"outcome-payment": 105_000 + 60_000 + 7_500, "grant": 40_000}
    assert b.spent_total == 212_500
    assert [(line.label, line.cents) for line in b.money_in] == [
        ("health-plan", 5_000_000),
        ("payment-received", 100_000),
    ]


def test_a_year_of_few_outcome_payments_hides_their_total_too() -> None:
    facts = [Money(AT, "health-plan", 100_000, 0, 0, "", "", 0)] + [
        outcome("food-insecurity", 5_000) for _ in range(4)
    ]
    b = public_budget(facts, TODAY)
    assert [line.cents for line in b.spent_by_need_domain] == [None]
    assert [(line.label, line.cents) for line in b.spent_by_purpose] == [("outcome-payment", None)]
    assert b.spent_total is None


def test_cash_on_hand_and_runway() -> None:
    facts = [Money(datetime(2026, 2, 1, tzinfo=UTC), "health-plan", 900_000, 0, 0, "", "", 0)]
    for month in (3, 4, 5):  # 30,000 a month spent in March to May; 10,000 paid out each month
        facts.append(Money(datetime(2026, month, 15, tzinfo=UTC), "", 0, 10_000, 30_000, "grant", "", 0))
    b = public_budget(facts, TODAY)
    assert b.cash_on_hand == 870_000 and b.monthly_spending == 30_000
    assert b.runway_months == 29.0 and b.runs_out == "2028-12"
    assert public_budget(facts[:1], TODAY).runway_months is None


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await asyncio.to_thread(migrations.upgrade, MIGRATIONS, database_url)
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


def posted(
    tid: str, phase: str, *entries: tuple[str, int, int], **metadata: str
) -> funding_pb2.TransactionPosted:
    return funding_pb2.TransactionPosted(
        transaction=funding_pb2.LedgerTransaction(
            transaction_id=tid,
            kind=metadata.pop("kind", "outcome-payment"),
            phase=phase,
            created_at=to_timestamp(AT),
            metadata=metadata,
            entries=[
                funding_pb2.Entry(account_id=a, side=side, amount=common_pb2.Money(cents=c, currency="USD"))  # type: ignore[arg-type]
                for a, side, c in entries
            ],
        )
    )


@pytest.mark.postgres
async def test_posted_transactions_become_money_facts_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    D, C = funding_pb2.SIDE_DEBIT, funding_pb2.SIDE_CREDIT
    events = [
        posted(
            "t1", "posted", ("cash", D, 900_000), ("stream:s", C, 900_000), kind="contribution", stream_id="s"
        ),
        posted(
            "t2",
            "pending",
            ("stream:s", D, 5_000),
            ("net-assets", C, 5_000),
            ("expense:outcome-payment", D, 5_000),
            ("partner:cbo-1:payable", C, 5_000),
            referral_id="r1",
            need_domain="food-insecurity",
        ),
        posted(
            "t3",
            "posted",
            ("stream:s", D, 5_000),
            ("net-assets", C, 5_000),
            ("expense:outcome-payment", D, 5_000),
            ("partner:cbo-1:payable", C, 5_000),
            referral_id="r1",
            need_domain="food-insecurity",
        ),
        posted("t4", "posted", ("partner:cbo-1:payable", D, 5_000), ("cash", C, 5_000), kind="payment-made"),
    ]
    handler = HANDLERS[funding_pb2.TransactionPosted]
    for event in [*events, events[2]]:  # the post delivered twice
        envelope = Envelope("e", "test", event.DESCRIPTOR.full_name, "", "k", event.SerializeToString(), AT)
        async with sessions() as session, session.begin():
            await handler(session, envelope, event)
    async with sessions() as session:
        facts = {f.transaction_id: f for f in await money_facts(session)}
    assert set(facts) == {"t1", "t3", "t4"}  # a reservation moves no money yet
    assert (facts["t1"].cash_in, facts["t1"].source) == (900_000, "s")
    t3 = facts["t3"]
    assert (t3.spent, t3.purpose, t3.need_domain, t3.referrals) == (
        5_000,
        "outcome-payment",
        "food-insecurity",
        1,
    )
    assert (facts["t4"].cash_out, facts["t4"].spent) == (5_000, 0)
    assert isinstance(facts["t1"], MoneyFact)


def test_the_budget_page_renders_in_both_languages_with_small_cells_hidden() -> None:
    facts = [Money(AT, "health-plan-reinvestment-2026", 1_000_000, 0, 0, "", "", 0)]
    facts += [outcome("housing-instability", 7_500) for _ in range(14)]
    facts += [outcome("food-insecurity", 5_000) for _ in range(12)]
    facts += [outcome("transportation-insecurity", 2_500) for _ in range(3)]
    pages = PublicPages(None, [], "http://127.0.0.1", {})  # type: ignore[arg-type]
    budget = public_budget(facts, TODAY)
    for lang, hidden, cash in (("en", "hidden", "$10,000"), ("es", "oculto", "$10.000")):
        html = pages._render_budget(budget, Words(lang))
        assert f'<html lang="{lang}">' in html and f'href="/{"es" if lang == "en" else "en"}/budget"' in html
        assert 'data-value="105000"' in html and f">{hidden}<" in html and f">{cash}<" in html
        assert (
            'data-value="7500"' not in html and 'data-value="60000"' not in html
        )  # 3, and what gives it back
        assert html.count("<svg") == 3
