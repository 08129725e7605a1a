"""The Wellness Fund's public budget (as Open Collective shows its collectives'): money in by
source, money spent by purpose and by need domain, cash on hand and runway, from the fund's posted
transactions. An outcome payment pays for one referral at a set rate, so its amount tells how many
referrals a CBO closed: amounts by need domain follow the same small-cell policy as every count
that leaves the platform (no group of 1 to 10 referrals, and none recoverable from the total)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from ach_measurement.domain.suppression import Row, Status, Table, TableKey, decide

OUTCOME_PAYMENT = "outcome-payment"


@dataclass(frozen=True)
class Money:
    """A posted transaction as the budget counts it."""

    posted_at: datetime
    source: str
    cash_in: int
    cash_out: int
    spent: int
    purpose: str
    need_domain: str
    referrals: int


@dataclass(frozen=True)
class Line:
    label: str
    cents: int | None  # None: hidden
    status: Status = Status.FREE


@dataclass(frozen=True)
class PublicBudget:
    year: int
    money_in: list[Line]
    money_in_total: int
    spent_by_purpose: list[Line]
    spent_total: int | None
    spent_by_need_domain: list[Line]
    cash_on_hand: int
    monthly_spending: int
    runway_months: float | None
    runs_out: str  # YYYY-MM, "" when nothing is being spent


def _months_back(day: date, months: int) -> date:
    y, m = divmod(day.month - 1 - months, 12)
    return date(day.year + y, m + 1, 1)


def public_budget(facts: Sequence[Money], today: date) -> PublicBudget:
    year = today.year
    this_year = [f for f in facts if f.posted_at.year == year]
    money_in: dict[str, int] = {}
    by_purpose: dict[str, int] = {}
    by_domain: dict[str, list[int]] = {}
    for f in this_year:
        if f.cash_in:
            money_in[f.source or "other"] = money_in.get(f.source or "other", 0) + f.cash_in
        if f.spent:
            by_purpose[f.purpose] = by_purpose.get(f.purpose, 0) + f.spent
            if f.purpose == OUTCOME_PAYMENT:
                cell = by_domain.setdefault(f.need_domain or "other", [0, 0])
                cell[0] += f.spent
                cell[1] += f.referrals
    key = TableKey(OUTCOME_PAYMENT, str(year), "need_domain")
    table = Table(
        key,
        Row("total", (sum(c[1] for c in by_domain.values()),)),
        tuple(Row(d, (c[1],)) for d, c in sorted(by_domain.items())),
    )
    decision = decide([table], frozenset())
    statuses = decision.groups.get(key, {})
    domains = [
        Line(d, c[0] if statuses.get(d, Status.FREE) is Status.FREE else None, statuses.get(d, Status.FREE))
        for d, c in sorted(by_domain.items(), key=lambda item: -item[1][0])
    ]
    outcome_total_hidden = decision.total.get(key, Status.FREE) is not Status.FREE
    purposes = [
        Line(
            p,
            None if p == OUTCOME_PAYMENT and outcome_total_hidden else cents,
            Status.PRIMARY if p == OUTCOME_PAYMENT and outcome_total_hidden else Status.FREE,
        )
        for p, cents in sorted(by_purpose.items(), key=lambda item: -item[1])
    ]
    cash = sum(f.cash_in - f.cash_out for f in facts)
    start, end = _months_back(today, 3), today.replace(day=1)
    burn = sum(f.spent for f in facts if start <= f.posted_at.date() < end) // 3
    months = round(max(cash, 0) / burn, 1) if burn > 0 else None
    runs_out = ""
    if months is not None:
        y, m = divmod(today.month - 1 + int(months) + 1, 12)
        runs_out = f"{today.year + y:04d}-{m + 1:02d}"
    return PublicBudget(
        year=year,
        money_in=[Line(s, c) for s, c in sorted(money_in.items(), key=lambda item: -item[1])],
        money_in_total=sum(money_in.values()),
        spent_by_purpose=purposes,
        spent_total=None if outcome_total_hidden else sum(by_purpose.values()),
        spent_by_need_domain=domains,
        cash_on_hand=cash,
        monthly_spending=burn,
        runway_months=months,
        runs_out=runs_out,
    )
