"""Outcome payments from the referral loop on SQLite and PostgreSQL: promised on acceptance, paid
once on need met whatever the order and duplicates of the events, voided on any other end, owed
when no stream has room and paid when money arrives; and a stream's cents traced to the outcomes
they paid."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ach.referrals.v1 import referrals_pb2
from ach_events.outbox import Outbox
from ach_funding import ledger, reports
from ach_funding.domain.ledger import Phase
from ach_funding.fund_catalog import load_catalog
from ach_funding.journal_writer import JournalWriter
from ach_funding.ledger import Ledger, retrying_conflicts
from ach_funding.outcome_payments import OutcomePayments
from ach_funding.store import LedgerAccount, LedgerTransaction, OutcomePayment, view
from ach_funding.wellness_fund import WellnessFund
from ach_platform import migrations
from ach_platform.clock import to_timestamp
from ach_platform.database import create_engine, session_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

pytestmark = pytest.mark.postgres
AT = datetime(2026, 3, 2, 15, tzinfo=UTC)
MIGRATIONS = Path(__file__).resolve().parents[1] / "ach_funding" / "migrations"


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await asyncio.to_thread(migrations.upgrade, MIGRATIONS, database_url)
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


def fund() -> WellnessFund:
    """The tests' fund (``funds.yaml`` beside this file), its books not yet opened."""
    return WellnessFund(
        Ledger(Outbox(source="/ach/funding")), load_catalog(Path(__file__).with_name("funds.yaml"))
    )


S = referrals_pb2


def change(
    referral: str,
    sequence: int,
    status: referrals_pb2.ReferralStatus.ValueType,
    target: str = "cbo-1",
    outcome: referrals_pb2.ReferralOutcome.ValueType = referrals_pb2.REFERRAL_OUTCOME_UNSPECIFIED,
    domain: str = "food-insecurity",
    source: str = "clinic-1",
) -> referrals_pb2.ReferralStatusChanged:
    return referrals_pb2.ReferralStatusChanged(
        referral_id=referral,
        need_domain=domain,
        target_partner_id=target,
        source_partner_id=source,
        to_status=status,
        outcome=outcome,
        sequence=sequence,
        changed_at=to_timestamp(AT),
    )


def accepted(r: str, seq: int = 2, target: str = "cbo-1", **kw: str) -> referrals_pb2.ReferralStatusChanged:
    return change(r, seq, S.REFERRAL_STATUS_ACCEPTED, target, **kw)  # type: ignore[arg-type]


def need_met(r: str, seq: int = 4, target: str = "cbo-1", **kw: str) -> referrals_pb2.ReferralStatusChanged:
    return change(r, seq, S.REFERRAL_STATUS_COMPLETED, target, S.REFERRAL_OUTCOME_NEED_MET, **kw)  # type: ignore[arg-type]


async def consume(
    sessions: async_sessionmaker[AsyncSession], p: OutcomePayments, e: referrals_pb2.ReferralStatusChanged
) -> None:
    async def work(session: AsyncSession) -> None:
        await p.on_status_changed(session, e)

    await retrying_conflicts(sessions, work)


async def contribute(
    sessions: async_sessionmaker[AsyncSession], f: WellnessFund, stream: str, cents: int
) -> None:
    key = f"c-{uuid.uuid4()}"
    await retrying_conflicts(sessions, lambda s: f.record_contribution(s, key, stream, cents, AT))


async def payment(sessions: async_sessionmaker[AsyncSession], referral: str) -> OutcomePayment:
    async with sessions() as session:
        row = await session.get(OutcomePayment, referral)
        assert row is not None
        return row


async def paid_to(sessions: async_sessionmaker[AsyncSession], partner: str) -> int:
    async with sessions() as session:
        a = await session.get(LedgerAccount, f"partner:{partner}:payable")
        return a.credits_posted if a else 0


async def posted_payments(sessions: async_sessionmaker[AsyncSession], referral: str) -> int:
    """Posted outcome-payment transactions for the referral: at most one, ever."""
    async with sessions() as session:
        rows = (
            await session.exec(select(LedgerTransaction).where(LedgerTransaction.kind == "outcome-payment"))
        ).all()
    return sum(
        1 for t in rows if t.phase == "posted" and json.loads(t.metadata_json).get("referral_id") == referral
    )


async def test_promised_on_acceptance_paid_on_need_met_from_the_stream_that_expires_first(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    f = fund()
    p = OutcomePayments(f)
    await contribute(sessions, f, "food", 20_000)
    await contribute(sessions, f, "general", 20_000)
    await consume(sessions, p, accepted("r-1"))
    row = await payment(sessions, "r-1")
    assert (row.status, row.cents) == ("reserved", 5000)
    async with sessions() as session:
        food = view(await session.get(LedgerAccount, "stream:food"))  # type: ignore[arg-type]
    assert (food.balance, food.available) == (20_000, 15_000)
    await consume(sessions, p, need_met("r-1"))
    await consume(sessions, p, need_met("r-1"))  # redelivered
    assert (await payment(sessions, "r-1")).status == "paid"
    assert await paid_to(sessions, "cbo-1") == 5000 and await posted_payments(sessions, "r-1") == 1
    # A housing need: the food stream may not pay it, the general stream does.
    await consume(sessions, p, accepted("r-2", domain="housing-instability"))
    await consume(sessions, p, change("r-2", 3, S.REFERRAL_STATUS_CANCELLED, domain="housing-instability"))
    assert (await payment(sessions, "r-2")).status == "voided"
    async with sessions() as session:
        general = view(await session.get(LedgerAccount, "stream:general"))  # type: ignore[arg-type]
    assert general.available == 20_000  # the reservation released
    assert await paid_to(sessions, "cbo-1") == 5000
    assert (await ledger.verify_in(sessions)).intact


async def test_owed_when_no_stream_has_room_and_paid_when_money_arrives(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    f = fund()
    p = OutcomePayments(f)
    await consume(sessions, p, accepted("r-1", domain="housing-instability"))
    assert (await payment(sessions, "r-1")).status == "unreserved"
    await consume(sessions, p, need_met("r-1", domain="housing-instability"))
    owed = await payment(sessions, "r-1")
    assert owed.status == "owed" and owed.cents == 7500 and await paid_to(sessions, "cbo-1") == 0
    await contribute(sessions, f, "food", 100_000)  # food money may not pay a housing outcome
    assert await p.pay_waiting(sessions) == 0
    await contribute(sessions, f, "general", 7_000)  # not enough
    assert await p.pay_waiting(sessions) == 0
    await contribute(sessions, f, "general", 500)
    assert await p.pay_waiting(sessions) == 1
    assert (await payment(sessions, "r-1")).status == "paid" and await paid_to(sessions, "cbo-1") == 7500
    assert await p.pay_waiting(sessions) == 0 and await posted_payments(sessions, "r-1") == 1


async def test_a_referral_a_partner_sent_itself_earns_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    f = fund()
    p = OutcomePayments(f)
    await contribute(sessions, f, "general", 100_000)
    await consume(sessions, p, accepted("r-1", target="cbo-1", source="cbo-1"))
    await consume(sessions, p, need_met("r-1", target="cbo-1", source="cbo-1"))
    row = await payment(sessions, "r-1")
    assert row.status == "not-payable" and "itself" in row.reason
    assert await paid_to(sessions, "cbo-1") == 0


EVENTS = [
    accepted("R", 2, "cbo-1"),
    change("R", 3, S.REFERRAL_STATUS_REJECTED, "cbo-1"),
    accepted("R", 5, "cbo-2"),  # re-routed and accepted by another CBO
    change("R", 6, S.REFERRAL_STATUS_IN_PROGRESS, "cbo-2"),
    need_met("R", 7, "cbo-2"),
]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    order=st.permutations(range(len(EVENTS))),
    doubled=st.lists(st.integers(0, len(EVENTS) - 1), max_size=4),
    funded=st.booleans(),
)
def test_paid_once_to_the_cbo_that_met_the_need_whatever_the_order(
    sessions: async_sessionmaker[AsyncSession],
    order: list[int],
    doubled: list[int],
    funded: bool,
) -> None:
    asyncio.run(in_any_order(sessions, fund(), [*order, *doubled], funded))


async def in_any_order(
    made: async_sessionmaker[AsyncSession], f: WellnessFund, order: list[int], funded: bool
) -> None:
    engine = create_engine(made.kw["bind"].url.render_as_string(hide_password=False))
    sessions = session_factory(engine)
    try:
        p = OutcomePayments(f)
        referral = f"r-{uuid.uuid4()}"
        if funded:
            await contribute(sessions, f, "general", 5000)
        before = {c: await paid_to(sessions, c) for c in ("cbo-1", "cbo-2")}
        for i in order:
            event = referrals_pb2.ReferralStatusChanged()
            event.CopyFrom(EVENTS[i])
            event.referral_id = referral
            await consume(sessions, p, event)
        if not funded:
            await contribute(sessions, f, "general", 5000)
            await p.pay_waiting(sessions)
        assert await posted_payments(sessions, referral) == 1
        assert await paid_to(sessions, "cbo-2") - before["cbo-2"] == 5000
        assert await paid_to(sessions, "cbo-1") == before["cbo-1"]
        async with sessions() as session:
            pendings = (
                await session.exec(
                    select(LedgerTransaction).where(LedgerTransaction.phase == Phase.PENDING.value)
                )
            ).all()
            mine = [t for t in pendings if json.loads(t.metadata_json).get("referral_id") == referral]
            for t in mine:  # every reservation made for it is resolved
                assert (
                    await session.exec(select(LedgerTransaction).where(LedgerTransaction.resolves_id == t.id))
                ).first()
        assert (await ledger.verify_in(sessions)).intact
    finally:
        await engine.dispose()


async def test_a_streams_cents_are_traced_to_the_outcomes_they_paid(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    f = fund()
    p = OutcomePayments(f)
    await contribute(sessions, f, "general", 3000)
    await contribute(sessions, f, "general", 20_000)
    for r in ("r-1", "r-2"):
        await consume(sessions, p, accepted(r, domain="housing-instability"))
        await consume(sessions, p, need_met(r, domain="housing-instability"))
    general = f.catalog.stream("general")
    assert general is not None
    async with sessions() as session:
        trace = await reports.trace_stream(session, general)
    assert (trace.contributed, trace.spent) == (23_000, 15_000)
    by_referral: dict[str, int] = {}
    for t in trace.traces:
        by_referral[t.referral_id] = by_referral.get(t.referral_id, 0) + t.cents
        assert t.partner_id == "cbo-1" and t.need_domain == "housing-instability" and t.outcome == "need-met"
    assert by_referral == {"r-1": 7500, "r-2": 7500}
    # First in, first out: the first 3,000 cents paid r-1, with 4,500 of the second contribution.
    assert [(t.referral_id, t.cents) for t in trace.traces] == [("r-1", 3000), ("r-1", 4500), ("r-2", 7500)]
    assert len({t.contribution_id for t in trace.traces}) == 2


async def test_concurrent_outcomes_and_contributions_pay_each_referral_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    f = fund()
    p = OutcomePayments(f)
    writer = JournalWriter(sessions, f.ledger)
    await contribute(sessions, f, "general", 100_000)

    async def referral(n: int) -> None:
        r = f"r-{n}"
        domain = "food-insecurity" if n % 2 else "housing-instability"
        await consume(sessions, p, accepted(r, domain=domain))
        await consume(sessions, p, need_met(r, domain=domain))

    async def money(n: int) -> None:
        await writer.write(f.contribution(f"c-{n}", "food" if n % 2 else "general", 20_000))

    await asyncio.gather(*[referral(n) for n in range(30)], *[money(n) for n in range(10)])
    await p.pay_waiting(sessions)
    await writer.close()
    async with sessions() as session:
        rows = (await session.exec(select(OutcomePayment))).all()
    assert len(rows) == 30 and {r.status for r in rows} <= {"paid", "owed"}
    for r in rows:
        assert await posted_payments(sessions, r.referral_id) == (1 if r.status == "paid" else 0)
    paid = sum(r.cents for r in rows if r.status == "paid")
    assert await paid_to(sessions, "cbo-1") == paid
    assert (await ledger.verify_in(sessions)).intact
