"""Disbursements with approvals, funding partners' invoices and payments, the community bank's
shared costs, and the year's report, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from ach.referrals.v1 import referrals_pb2
from ach_events.outbox import Outbox
from ach_funding import ledger, reports
from ach_funding.community_bank import CommunityBank
from ach_funding.disbursements import Disbursements
from ach_funding.domain.disbursements import ApprovalPolicy
from ach_funding.domain.ledger import Entry, Side, TransactionDraft
from ach_funding.fund_catalog import load_catalog
from ach_funding.ledger import Ledger, retrying_conflicts
from ach_funding.outcome_payments import OutcomePayments
from ach_funding.partner_billing import PartnerBilling, statement
from ach_funding.store import LedgerAccount, view
from ach_funding.wellness_fund import WellnessFund
from ach_platform import migrations
from ach_platform.clock import to_timestamp
from ach_platform.database import create_engine, session_factory
from ach_platform.errors import FailedPrecondition, InvalidArgument
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

pytestmark = pytest.mark.postgres
AT = datetime(2026, 3, 2, 15, tzinfo=UTC)
MIGRATIONS = Path(__file__).resolve().parents[1] / "ach_funding" / "migrations"
T = TypeVar("T")


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await asyncio.to_thread(migrations.upgrade, MIGRATIONS, database_url)
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


def fund(name: str = "funds.yaml") -> WellnessFund:
    return WellnessFund(Ledger(Outbox(source="/ach/funding")), load_catalog(Path(__file__).with_name(name)))


async def run(sessions: async_sessionmaker[AsyncSession], work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    return await retrying_conflicts(sessions, work)


async def balance(sessions: async_sessionmaker[AsyncSession], account_id: str) -> int:
    async with sessions() as session:
        a = await session.get(LedgerAccount, account_id)
        return view(a).balance if a else 0


async def test_a_grant_is_paid_on_the_second_approval_never_the_requesters(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    f = fund()
    d = Disbursements(f, ApprovalPolicy(approvals_required=2, rapid_release_ceiling_cents=100_000))
    await run(sessions, lambda s: f.record_contribution(s, "c-1", "general", 50_000, AT))

    def ask(
        key: str, cents: int, cost_type: str = "grant", domain: str = ""
    ) -> Callable[[AsyncSession], Awaitable[object]]:
        return lambda s: d.request(
            s,
            key=key,
            requester="fm-1",
            payee="cbo-1",
            cost_type=cost_type,
            cents=cents,
            now=AT,
            need_domain=domain,
        )

    grant = await run(sessions, ask("g-1", 30_000))
    assert await balance(sessions, "partner:cbo-1:payable") == 0
    async with sessions() as s:
        general = view(await s.get(LedgerAccount, "stream:general"))  # type: ignore[arg-type]
    assert general.available == 20_000  # reserved while it waits for approvals
    with pytest.raises(FailedPrecondition) as no_room:
        await run(sessions, ask("g-2", 20_001))
    assert no_room.value.violation_type == "FUNDS"
    with pytest.raises(FailedPrecondition) as restricted:  # the food stream pays outcomes only
        await run(sessions, ask("g-3", 100, domain="food-insecurity", cost_type="reimbursement"))
    assert restricted.value.violation_type == "RESTRICTION"
    gid = grant.id  # type: ignore[attr-defined]
    with pytest.raises(FailedPrecondition) as own:
        await run(sessions, lambda s: d.decide(s, gid, "fm-1", True, AT))
    assert own.value.violation_type == "SELF_APPROVAL"
    first = await run(sessions, lambda s: d.decide(s, gid, "fm-2", True, AT))
    assert first.status == "requested"
    with pytest.raises(FailedPrecondition) as twice:
        await run(sessions, lambda s: d.decide(s, gid, "fm-2", True, AT))
    assert twice.value.violation_type == "APPROVED"
    done = await run(sessions, lambda s: d.decide(s, gid, "fm-3", True, AT))
    assert done.status == "approved" and done.posted_transaction_id
    assert await balance(sessions, "partner:cbo-1:payable") == 30_000
    with pytest.raises(FailedPrecondition):
        await run(sessions, lambda s: d.decide(s, gid, "fm-4", False, AT))
    # A rejection releases the reservation.
    other = await run(sessions, ask("g-4", 10_000))
    oid = other.id  # type: ignore[attr-defined]
    rejected = await run(sessions, lambda s: d.decide(s, oid, "fm-2", False, AT))
    assert rejected.status == "rejected"
    assert await balance(sessions, "stream:general") == 20_000
    assert (await ledger.verify_in(sessions)).intact


async def test_a_rapid_release_needs_one_approval_up_to_its_ceiling(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    f = fund("funds_with_emergency.yaml")
    d = Disbursements(f, f.catalog.approvals)
    await run(sessions, lambda s: f.record_contribution(s, "c-1", "emergency", 500_000, AT))

    def release(key: str, cents: int) -> Callable[[AsyncSession], Awaitable[object]]:
        return lambda s: d.request(
            s, key=key, requester="fm-1", payee="cbo-1", cost_type="rapid-release", cents=cents, now=AT
        )

    with pytest.raises(FailedPrecondition) as ceiling:
        await run(sessions, release("r-1", 250_001))
    assert ceiling.value.violation_type == "CEILING"
    asked = await run(sessions, release("r-2", 250_000))
    rid = asked.id  # type: ignore[attr-defined]
    paid = await run(sessions, lambda s: d.decide(s, rid, "fm-2", True, AT))
    assert paid.status == "approved" and await balance(sessions, "partner:cbo-1:payable") == 250_000
    async with sessions() as s:
        report = await reports.fund_report(s, f.catalog, 2026, date(2026, 3, 20))
    assert report.rapid_releases == 250_000


async def test_a_raw_transaction_never_spends_a_stream_but_reverses_exactly(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    f = fund()
    gift = await run(sessions, lambda s: f.record_contribution(s, "c-1", "general", 1_000, AT))
    spend = TransactionDraft(
        "raw-1", "grant", (Entry("stream:general", Side.DEBIT, 500), Entry("cash", Side.CREDIT, 500))
    )
    with pytest.raises(FailedPrecondition) as caught:
        await run(sessions, lambda s: f.post(s, spend, AT))
    assert caught.value.violation_type == "RESTRICTION"
    wrong = TransactionDraft(
        "rev-1",
        "reversal",
        (Entry("stream:general", Side.DEBIT, 999), Entry("cash", Side.CREDIT, 999)),
        metadata={"reverses": gift.transaction.id},
    )
    with pytest.raises(FailedPrecondition) as mirrored:
        await run(sessions, lambda s: f.post(s, wrong, AT))
    assert mirrored.value.violation_type == "REVERSAL"
    exact = TransactionDraft(
        "rev-2",
        "reversal",
        (Entry("stream:general", Side.DEBIT, 1_000), Entry("cash", Side.CREDIT, 1_000)),
        metadata={"reverses": gift.transaction.id},
    )
    await run(sessions, lambda s: f.post(s, exact, AT))
    assert await balance(sessions, "stream:general") == 0 and await balance(sessions, "cash") == 0


async def test_partners_are_invoiced_pay_and_get_a_statement(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    f = fund()
    billing = PartnerBilling(f)
    await run(
        sessions,
        lambda s: billing.invoice(
            s, key="i-1", partner_id="plan-1", kind="dues", cents=120_000, now=AT, period="2026"
        ),
    )
    await run(
        sessions,
        lambda s: billing.invoice(
            s, key="i-2", partner_id="plan-1", kind="pledge", cents=300_000, now=AT, stream_id="general"
        ),
    )
    with pytest.raises(InvalidArgument):
        await run(
            sessions,
            lambda s: billing.invoice(s, key="i-3", partner_id="plan-1", kind="pledge", cents=1, now=AT),
        )
    later = AT + timedelta(days=10)
    await run(
        sessions, lambda s: billing.received(s, key="p-1", partner_id="plan-1", cents=420_000, now=later)
    )
    with pytest.raises(FailedPrecondition) as more:  # pays more than it was invoiced
        await run(sessions, lambda s: billing.received(s, key="p-2", partner_id="plan-1", cents=1, now=later))
    assert more.value.violation_type == "OVERDRAFT"
    with pytest.raises(FailedPrecondition):  # the fund owes cbo-1 nothing
        await run(sessions, lambda s: billing.pay_out(s, key="o-1", partner_id="cbo-1", cents=1, now=later))
    assert await balance(sessions, "stream:general") == 300_000
    assert await balance(sessions, "revenue:dues") == 120_000
    async with sessions() as s:
        found = await statement(s, "plan-1", AT + timedelta(days=1), AT + timedelta(days=30))
    assert found.balances == [("partner:plan-1:receivable", 420_000, 0)]
    assert [(line.kind, line.entry.side, line.entry.cents) for line in found.lines] == [
        ("payment-received", "credit", 420_000)
    ]


async def test_shared_costs_are_invoiced_by_share_once_a_period(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    f = fund("funds_with_emergency.yaml")
    billing, bank = PartnerBilling(f), CommunityBank(f)
    await run(
        sessions,
        lambda s: billing.invoice(s, key="d", partner_id="plan-1", kind="dues", cents=100_000, now=AT),
    )
    await run(sessions, lambda s: billing.received(s, key="p", partner_id="plan-1", cents=100_000, now=AT))
    await run(sessions, lambda s: bank.record_cost(s, key="k-1", cents=10_001, now=AT, period="2026-Q1"))
    first = await run(sessions, lambda s: bank.invoice_period(s, period="2026-Q1", now=AT))
    again = await run(sessions, lambda s: bank.invoice_period(s, period="2026-Q1", now=AT))
    assert again.replayed and again.transaction.id == first.transaction.id
    parts = {e.account_id: e.cents for e in first.entries if e.side == "debit"}
    assert parts == {
        "partner:plan-1:receivable": 6_001,
        "partner:plan-2:receivable": 4_000,
    }  # 60/40, to the cent
    assert await balance(sessions, "cost-pool:infrastructure") == 0
    with pytest.raises(FailedPrecondition) as empty:
        await run(sessions, lambda s: bank.invoice_period(s, period="2026-Q2", now=AT))
    assert empty.value.violation_type == "EMPTY"


async def test_the_years_report(sessions: async_sessionmaker[AsyncSession]) -> None:
    f = fund()
    billing = PartnerBilling(f)
    payments = OutcomePayments(f)
    await run(sessions, lambda s: f.record_contribution(s, "c-1", "general", 100_000, AT))
    for n, day in enumerate((AT - timedelta(days=40), AT - timedelta(days=10))):
        e = referrals_pb2.ReferralStatusChanged(
            referral_id=f"r-{n}",
            need_domain="housing-instability",
            target_partner_id="cbo-1",
            to_status=referrals_pb2.REFERRAL_STATUS_COMPLETED,
            outcome=referrals_pb2.REFERRAL_OUTCOME_NEED_MET,
            sequence=4,
            changed_at=to_timestamp(day),
        )

        async def consume(s: AsyncSession, e: referrals_pb2.ReferralStatusChanged = e) -> None:
            await payments.on_status_changed(s, e)

        await run(sessions, consume)
    await run(sessions, lambda s: billing.pay_out(s, key="o", partner_id="cbo-1", cents=7_500, now=AT))
    async with sessions() as s:
        report = await reports.fund_report(s, f.catalog, 2026, date(2026, 3, 20))
    budget = {b.purpose: (b.budget, b.actual) for b in report.budget}
    assert budget["outcome-payment"] == (1_000_000, 15_000)
    assert [(c.need_domain, c.outcomes, c.per_outcome) for c in report.cost_per_outcome] == [
        ("housing-instability", 2, 7_500)
    ]
    assert [(p.partner_id, p.outcomes_paid, p.owed, p.paid_out) for p in report.partners] == [
        ("cbo-1", 2, 7_500, 7_500)
    ]
    general = next(u for u in report.streams if u.stream.stream_id == "general")
    assert (general.contributed, general.spent, general.available) == (100_000, 15_000, 85_000)
    # Burn over December to February: 15,000 cents in three months; cash 92,500 lasts 18.5 months.
    assert report.runway.monthly_burn == 5_000 and report.runway.secured == 92_500
    assert report.runway.months == 18.5 and report.runway.runs_out == date(2027, 10, 1)


async def test_the_report_command_writes_the_years_report_as_csv(
    sessions: async_sessionmaker[AsyncSession], database_url: str, tmp_path: Path
) -> None:
    f = fund()
    await run(sessions, lambda s: f.record_contribution(s, "c-1", "general", 100_001, AT))
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "FUNDING_DATABASE_URL": database_url,
        "FUNDING_FUNDS_FILE": str(Path(__file__).with_name("funds.yaml")),
    }
    command = [sys.executable, "-m", "ach_funding.main", "report", "--year", "2026", "--out", str(tmp_path)]
    done = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-500:]
    with (tmp_path / "fund-streams-2026.csv").open(newline="") as found:
        rows = {r["stream_id"]: r for r in csv.DictReader(found)}
    assert rows["general"]["contributed_usd"] == "1000.01" and rows["general"]["available_usd"] == "1000.01"
    with (tmp_path / "budget-vs-actual-2026.csv").open(newline="") as found:
        budget = {r["purpose"]: r for r in csv.DictReader(found)}
    assert (
        budget["outcome-payment"]["budget_usd"] == "10000.00"
        and budget["outcome-payment"]["actual_usd"] == "0.00"
    )
    bad = await asyncio.to_thread(
        subprocess.run, [*command[:4], "--year", "1999"], env=env, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and "--year" in bad.stdout and "Traceback" not in bad.stderr
