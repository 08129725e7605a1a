"""What funders and the network ask of the fund: where each cent of a stream came from and what it
paid; the year's report (streams' use, budget against actual, runway, cost per outcome, payments
per CBO)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sqlmodel.ext.asyncio.session import AsyncSession

from ach_funding import store
from ach_funding.domain.budget import BudgetLine, Runway, add_months, runway
from ach_funding.domain.streams import FundStream, Inflow, Outflow, lineage
from ach_funding.fund_catalog import FundCatalog
from ach_funding.store import LedgerAccount, view


@dataclass(frozen=True)
class CentTrace:
    contribution_id: str
    payment_id: str
    cents: int
    referral_id: str
    need_domain: str
    partner_id: str
    outcome: str


@dataclass(frozen=True)
class StreamTrace:
    traces: list[CentTrace]
    contributed: int
    spent: int


async def trace_stream(session: AsyncSession, stream: FundStream) -> StreamTrace:
    """Contributions to payments, first in first out, with the outcome each payment was for."""
    flows = await store.stream_flows(session, stream.account_id)
    inflows = [Inflow(t, c) for t, side, c, _ in flows if side == "credit"]
    outflows = [Outflow(t, c) for t, side, c, _ in flows if side == "debit"]
    about = {t: json.loads(m) for t, _, _, m in flows}
    traces = []
    for link in lineage(inflows, outflows):
        meta = about.get(link.payment_id, {})
        traces.append(
            CentTrace(
                link.contribution_id,
                link.payment_id,
                link.cents,
                meta.get("referral_id", ""),
                meta.get("need_domain", ""),
                meta.get("partner_id", ""),
                "need-met" if meta.get("referral_id") else "",
            )
        )
    return StreamTrace(traces, sum(i.cents for i in inflows), sum(o.cents for o in outflows))


@dataclass(frozen=True)
class StreamUse:
    stream: FundStream
    contributed: int
    spent: int
    reserved: int
    available: int


@dataclass(frozen=True)
class PartnerPayments:
    partner_id: str
    outcomes_paid: int
    outcome_cents: int
    owed: int  # the payable's balance: earned, not yet paid out
    paid_out: int


@dataclass(frozen=True)
class DomainCost:
    need_domain: str
    outcomes: int
    cents: int

    @property
    def per_outcome(self) -> int:
        return self.cents // self.outcomes if self.outcomes else 0


@dataclass(frozen=True)
class FundReport:
    year: int
    streams: list[StreamUse]
    budget: list[BudgetLine]
    runway: Runway
    cost_per_outcome: list[DomainCost]
    partners: list[PartnerPayments]
    rapid_releases: int  # cents released from the emergency path in the year


async def fund_report(session: AsyncSession, catalog: FundCatalog, year: int, today: date) -> FundReport:
    start, end = datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    streams = []
    for s in catalog.streams:
        account = await session.get(LedgerAccount, s.account_id)
        if account is None:
            streams.append(StreamUse(s, 0, 0, 0, 0))
            continue
        streams.append(
            StreamUse(
                s,
                account.credits_posted,
                account.debits_posted,
                account.debits_pending,
                view(account).available,
            )
        )
    spent = await store.debits_by_account_prefix(session, "expense:", start, end)
    pooled = await store.debits_by_account_prefix(session, "cost-pool:", start, end)
    actual = {k.removeprefix("expense:"): v for k, v in spent.items()}
    actual["infrastructure"] = actual.get("infrastructure", 0) + sum(pooled.values())
    planned = {c.value: cents for c, cents in catalog.budgets.get(year, {}).items()}
    budget = [BudgetLine(p, planned.get(p, 0), actual.get(p, 0)) for p in sorted(set(planned) | set(actual))]
    month_start = datetime(today.year, today.month, 1, tzinfo=UTC)
    three_back = datetime.combine(add_months(month_start.date(), -3), datetime.min.time(), UTC)
    burned = sum(
        (await store.debits_by_account_prefix(session, "expense:", three_back, month_start)).values()
    ) + sum((await store.debits_by_account_prefix(session, "cost-pool:", three_back, month_start)).values())
    secured = await store.balance_of_kind(session, "cash") + await store.balance_of_kind(
        session, "receivable"
    )
    paid = await store.paid_outcomes(session)
    by_domain: dict[str, list[int]] = {}
    by_partner: dict[str, list[int]] = {}
    for partner_id, domain, cents in paid:
        by_domain.setdefault(domain, [0, 0])
        by_domain[domain][0] += 1
        by_domain[domain][1] += cents
        by_partner.setdefault(partner_id, [0, 0])
        by_partner[partner_id][0] += 1
        by_partner[partner_id][1] += cents
    payables = {a.partner_id or a.id: a for a in await store.accounts_of_kind(session, "payable")}
    partners = [
        PartnerPayments(
            p,
            by_partner.get(p, [0, 0])[0],
            by_partner.get(p, [0, 0])[1],
            view(payables[p]).balance if p in payables else 0,
            payables[p].debits_posted if p in payables else 0,
        )
        for p in sorted(set(by_partner) | set(payables))
    ]
    return FundReport(
        year,
        streams,
        budget,
        runway(secured, burned // 3, today),
        [DomainCost(d, n, c) for d, (n, c) in sorted(by_domain.items())],
        partners,
        actual.get("rapid-release", 0),
    )


def _dollars(cents: int | None) -> str:
    """Cents as a decimal dollar amount, exactly (no float)."""
    if cents is None:
        return ""
    sign, cents = ("-" if cents < 0 else ""), abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def write_csv(report: FundReport, folder: Path) -> list[Path]:
    """One CSV a section of the report, amounts in dollars with cents (``_usd`` columns)."""
    folder.mkdir(parents=True, exist_ok=True)
    y = report.year
    tables: dict[str, tuple[list[str], list[list[object]]]] = {
        f"fund-streams-{y}.csv": (
            ["stream_id", "name", "ends", "contributed_usd", "spent_usd", "reserved_usd", "available_usd"],
            [
                [
                    u.stream.stream_id,
                    u.stream.name_en,
                    u.stream.ends.isoformat(),
                    _dollars(u.contributed),
                    _dollars(u.spent),
                    _dollars(u.reserved),
                    _dollars(u.available),
                ]
                for u in report.streams
            ],
        ),
        f"budget-vs-actual-{y}.csv": (
            ["purpose", "budget_usd", "actual_usd", "variance_usd", "used_percent"],
            [
                [
                    b.purpose,
                    _dollars(b.budget),
                    _dollars(b.actual),
                    _dollars(b.variance),
                    "" if b.used_percent is None else b.used_percent,
                ]
                for b in report.budget
            ],
        ),
        f"runway-{y}.csv": (
            ["secured_usd", "monthly_burn_usd", "months", "runs_out"],
            [
                [
                    _dollars(report.runway.secured),
                    _dollars(report.runway.monthly_burn),
                    "" if report.runway.months is None else report.runway.months,
                    report.runway.runs_out.strftime("%Y-%m") if report.runway.runs_out else "",
                ]
            ],
        ),
        f"cost-per-outcome-{y}.csv": (
            ["need_domain", "outcomes_paid", "spent_usd", "per_outcome_usd"],
            [
                [d.need_domain, d.outcomes, _dollars(d.cents), _dollars(d.per_outcome)]
                for d in report.cost_per_outcome
            ],
        ),
        f"payments-per-cbo-{y}.csv": (
            ["partner_id", "outcomes_paid", "outcome_payments_usd", "owed_usd", "paid_out_usd"],
            [
                [
                    p.partner_id,
                    p.outcomes_paid,
                    _dollars(p.outcome_cents),
                    _dollars(p.owed),
                    _dollars(p.paid_out),
                ]
                for p in report.partners
            ],
        ),
    }
    written = []
    for name, (header, rows) in tables.items():
        path = folder / name
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(header)
            writer.writerows(rows)
        written.append(path)
    return written
