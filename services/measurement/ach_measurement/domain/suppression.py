"""Small cells: the CMS cell-size rule with complementary suppression, one policy for everything
that leaves the platform (the API, the public page, every export).

A *table* is one measure's figures for one period broken down by one dimension: a row per group and
the total. Each row has additive quantities: the units counted (numerator), the units they are
counted among (denominator), and the difference of the two (those not counted). A row is **primary**
suppressed when any of them is 1 to 10; a rate, percentage, median or interval of a suppressed row
is suppressed with it, since each would give the count back.

**Complementary** suppression makes sure no hidden row can be recomputed: the hidden rows of a table
must add up, in every quantity, to 0 or more than 10 (a single hidden row would be the total minus
the others), so more rows are hidden, smallest first, until that holds. Where groups are partners or
sites, the rule must also hold with any one hidden row taken out, since a partner knows its own.

Related tables (``TableKey.related``: quantities that are equal, or nested so that their difference
is itself a count) hide the same groups in a (period, dimension): a group hidden in one is hidden
in all of them, and complementary suppression runs until every table holds.
A hidden total cannot be subtracted from; rows showing 0 are shown (0 is allowed).

Each published value carries its status, as SDMX does: F free, A primary, D secondary.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

SMALLEST_SHOWN = 11  # CMS: no cell of 1 to 10


class Status(StrEnum):
    FREE = "F"
    PRIMARY = "A"  # a small count
    SECONDARY = "D"  # hidden so that a small count cannot be recomputed


@dataclass(frozen=True)
class Row:
    group: str
    quantities: tuple[int, ...]  # numerator; for ratios and medians also denominator and the rest


def small(value: int) -> bool:
    return 0 < value < SMALLEST_SHOWN


def primary(row: Row) -> bool:
    return any(small(q) for q in row.quantities)


def _safe(rows: Iterable[Row]) -> bool:
    rows = list(rows)
    if not rows:
        return True
    width = len(rows[0].quantities)
    return not any(small(sum(r.quantities[i] for r in rows)) for i in range(width))


def _holds(table: Sequence[Row], hidden: set[str], party: bool) -> bool:
    hidden_rows = [r for r in table if r.group in hidden]
    if not hidden_rows:
        return True
    if not _safe(hidden_rows):
        return False
    if party and len(hidden_rows) > 1:
        return all(_safe(r for r in hidden_rows if r is not known) for known in hidden_rows)
    return True


def _extend(table: Sequence[Row], hidden: set[str], party: bool) -> set[str]:
    """Hide the smallest visible rows until the table holds (or everything is hidden)."""
    hidden = set(hidden)
    candidates = sorted(
        (r for r in table if r.group not in hidden and any(r.quantities)),
        key=lambda r: (sum(r.quantities), r.group),
    )
    while not _holds(table, hidden, party) and candidates:
        hidden.add(candidates.pop(0).group)
    return hidden


@dataclass(frozen=True)
class TableKey:
    measure: str  # what is counted (a measure, or one of the quantities measures share)
    period: str
    dimension: str
    related: str = ""  # tables of related quantities hide the same groups


@dataclass(frozen=True)
class Table:
    key: TableKey
    total: Row
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Decision:
    """What may be published of each table: the status of its total and of every group."""

    total: Mapping[TableKey, Status]
    groups: Mapping[TableKey, Mapping[str, Status]]


def decide(tables: Sequence[Table], party_dimensions: frozenset[str]) -> Decision:
    """Statuses for every table, consistent across the related tables of each (period, dimension). A table
    that cannot be made safe with its total shown (every row hidden and still one is recoverable,
    e.g. by a partner that knows its own) gets its total hidden too, in every table of that measure
    and period."""
    hidden_totals: set[tuple[str, str]] = {(t.key.measure, t.key.period) for t in tables if primary(t.total)}
    while True:
        groups, unsafe = _decide_groups(tables, party_dimensions, hidden_totals)
        if not unsafe - hidden_totals:
            break
        hidden_totals |= unsafe
    total_status = {}
    for t in tables:
        mp = (t.key.measure, t.key.period)
        total_status[t.key] = (
            Status.FREE
            if mp not in hidden_totals
            else Status.PRIMARY
            if primary(t.total)
            else Status.SECONDARY
        )
    return Decision(total_status, groups)


def _decide_groups(
    tables: Sequence[Table], party_dimensions: frozenset[str], hidden_totals: set[tuple[str, str]]
) -> tuple[dict[TableKey, dict[str, Status]], set[tuple[str, str]]]:
    by_slice: dict[tuple[str, str, str], list[Table]] = {}
    for t in tables:
        by_slice.setdefault((t.key.period, t.key.dimension, t.key.related), []).append(t)
    groups: dict[TableKey, dict[str, Status]] = {}
    unsafe: set[tuple[str, str]] = set()
    for (_period, dimension, _related), slice_tables in by_slice.items():
        party = dimension in party_dimensions
        shown = [t for t in slice_tables if (t.key.measure, t.key.period) not in hidden_totals]
        hidden = {r.group for t in slice_tables for r in t.rows if primary(r)}
        while True:
            grown = set(hidden)
            for t in shown:
                grown = _extend(t.rows, grown, party)
            for t in slice_tables:
                # A hidden total must not be the sum of rows all shown.
                if t not in shown and not any(r.group in grown and any(r.quantities) for r in t.rows):
                    nonzero = sorted(
                        (r for r in t.rows if any(r.quantities)), key=lambda r: (sum(r.quantities), r.group)
                    )
                    if nonzero:
                        grown.add(nonzero[0].group)
            if grown == hidden:
                break
            hidden = grown
        for t in shown:
            if not _holds(t.rows, hidden, party):
                unsafe.add((t.key.measure, t.key.period))
        for t in slice_tables:
            groups[t.key] = {
                r.group: Status.FREE
                if r.group not in hidden or not any(r.quantities)
                else (Status.PRIMARY if primary(r) else Status.SECONDARY)
                for r in t.rows
            }
    return groups, unsafe
