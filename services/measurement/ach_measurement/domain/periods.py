"""Reporting periods: a month, a quarter or a year of the network's own calendar (its time zone), so
a screening at 23:30 on 31 March in California lands in March, not in April."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo


class PeriodKind(StrEnum):
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


_PER_YEAR = {PeriodKind.MONTH: 12, PeriodKind.QUARTER: 4, PeriodKind.YEAR: 1}
_LABEL = {
    PeriodKind.MONTH: re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$"),
    PeriodKind.QUARTER: re.compile(r"^(\d{4})-Q([1-4])$"),
    PeriodKind.YEAR: re.compile(r"^(\d{4})()$"),
}


@dataclass(frozen=True, order=True)
class Period:
    kind: PeriodKind
    year: int
    index: int  # month 1-12, quarter 1-4, 1 for a year

    @property
    def label(self) -> str:
        if self.kind is PeriodKind.MONTH:
            return f"{self.year:04d}-{self.index:02d}"
        if self.kind is PeriodKind.QUARTER:
            return f"{self.year:04d}-Q{self.index}"
        return f"{self.year:04d}"

    def _ordinal(self) -> int:
        return self.year * _PER_YEAR[self.kind] + self.index - 1

    @classmethod
    def _from_ordinal(cls, kind: PeriodKind, ordinal: int) -> Period:
        year, index = divmod(ordinal, _PER_YEAR[kind])
        return cls(kind, year, index + 1)

    def shifted(self, by: int) -> Period:
        return Period._from_ordinal(self.kind, self._ordinal() + by)

    def minus(self, other: Period) -> int:
        """How many periods after ``other`` this one is."""
        return self._ordinal() - other._ordinal()

    def start(self, zone: ZoneInfo) -> datetime:
        months = {PeriodKind.MONTH: 1, PeriodKind.QUARTER: 3, PeriodKind.YEAR: 12}[self.kind]
        return datetime(self.year, (self.index - 1) * months + 1, 1, tzinfo=zone)

    def end(self, zone: ZoneInfo) -> datetime:
        """The first instant after the period."""
        return self.shifted(1).start(zone)

    def __str__(self) -> str:
        return self.label


def period_of(at: datetime, kind: PeriodKind, zone: ZoneInfo) -> Period:
    local = at.astimezone(zone)
    if kind is PeriodKind.MONTH:
        return Period(kind, local.year, local.month)
    if kind is PeriodKind.QUARTER:
        return Period(kind, local.year, (local.month - 1) // 3 + 1)
    return Period(kind, local.year, 1)


def parse_period(label: str, kind: PeriodKind) -> Period:
    """``2026-11``, ``2026-Q4`` or ``2026``; ValueError naming the expected shape."""
    match = _LABEL[kind].match(label)
    if match is None:
        shape = {PeriodKind.MONTH: "YYYY-MM", PeriodKind.QUARTER: "YYYY-Qn", PeriodKind.YEAR: "YYYY"}[kind]
        raise ValueError(f"{label[:20]!r} is not a {kind} ({shape})")
    year = int(match.group(1))
    return Period(kind, year, int(match.group(2) or 1))


def periods_between(first: Period, last: Period) -> list[Period]:
    return [first.shifted(i) for i in range(last.minus(first) + 1)]


def is_period_label(label: str, kinds: Iterable[PeriodKind] = tuple(PeriodKind)) -> bool:
    """Whether ``label`` names a period of one of these kinds."""
    for kind in kinds:
        try:
            parse_period(label, kind)
        except ValueError:
            continue
        return True
    return False
