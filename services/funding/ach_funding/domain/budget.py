"""Budget against actual and runway, as plain-text accounting reports them (hledger, Beancount):
runway is how many months the secured money lasts at the recent burn, and the month it runs out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class BudgetLine:
    purpose: str
    budget: int
    actual: int

    @property
    def variance(self) -> int:
        """Budget left (negative: over budget)."""
        return self.budget - self.actual

    @property
    def used_percent(self) -> float | None:
        return round(100 * self.actual / self.budget, 1) if self.budget else None


@dataclass(frozen=True)
class Runway:
    secured: int
    monthly_burn: int
    months: float | None  # None: nothing is being spent
    runs_out: date | None  # the first month the secured money no longer covers


def add_months(day: date, months: int) -> date:
    y, m = divmod(day.month - 1 + months, 12)
    return date(day.year + y, m + 1, 1)


def runway(secured: int, monthly_burn: int, today: date) -> Runway:
    if monthly_burn <= 0:
        return Runway(secured, 0, None, None)
    months = max(secured, 0) / monthly_burn
    return Runway(
        secured,
        monthly_burn,
        round(months, 1),
        add_months(today, int(months) + 1) if secured > 0 else today.replace(day=1),
    )
