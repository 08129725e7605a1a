"""From units to the figures that may leave the platform: each measure tabulated by period, in total
and by each of its breakdowns; small cells suppressed by one decision over every table
(``suppression``); intervals, stability and disparities computed only from what is published.
Nothing outside this module sees an unsuppressed count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ach_measurement.domain import statistics
from ach_measurement.domain.definitions import Calculation, Measure, MeasureUnit, Selection
from ach_measurement.domain.disparity import Disparities, disparities
from ach_measurement.domain.facts import DIMENSIONS, PARTY_DIMENSIONS, VALUES, Units
from ach_measurement.domain.indicators import IndicatorValue
from ach_measurement.domain.periods import Period, parse_period, period_of, periods_between
from ach_measurement.domain.suppression import SMALLEST_SHOWN, Row, Status, Table, TableKey, decide

TOTAL = ""  # the dimension of a measure's totals, and the group of a total


@dataclass
class Cell:
    """Raw tallies of one group in one period: never published as such."""

    numerator: int = 0
    denominator: int = 0
    values: list[float] = field(default_factory=list)
    residents: set[str] = field(default_factory=set)
    denominator_residents: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Figure:
    group: str
    status: Status
    numerator: int | None  # None when hidden
    denominator: int | None  # ratios only
    value: float | None
    low: float | None
    high: float | None
    unstable: bool


@dataclass(frozen=True)
class PeriodFigures:
    period: Period
    provisional: bool  # the period, or the time a unit in it has to meet the measure, is not over
    total: Figure
    groups: Mapping[str, tuple[Figure, ...]]  # by dimension
    disparities: Mapping[str, Disparities]  # by dimension, over published groups
    # The definition version the figures follow: the current one for counted measures; for a
    # population indicator, the version its values were imported under (a change is a series break).
    definition_version: int = 0


@dataclass(frozen=True)
class MeasureFigures:
    measure: Measure
    periods: tuple[PeriodFigures, ...]

    def series(self) -> list[tuple[Period, float | None]]:
        return [(p.period, p.total.value) for p in self.periods]


@dataclass(frozen=True)
class Publication:
    measures: Mapping[str, MeasureFigures]  # by measure id: those counted from events
    as_of: datetime
    # Population indicators by (measure id, geography).
    indicators: Mapping[tuple[str, str], MeasureFigures] = field(default_factory=dict)


def _window(measure: Measure) -> timedelta:
    """The longest time a unit has to meet the measure (e.g. need met within 90 days)."""
    arguments = [c.argument for c in measure.counted.where if isinstance(c.argument, timedelta)]
    return max(arguments, default=timedelta(0))


def _tally(
    measure: Measure, units: Units, zone: ZoneInfo
) -> tuple[dict[Period, Cell], dict[tuple[Period, str, str], Cell]]:
    numerator, denominator = measure.counted, measure.denominator
    kind = numerator.kind
    value_of = VALUES.get(kind, {}).get(measure.value) if measure.calculation is Calculation.MEDIAN else None
    dimensions = [(d, DIMENSIONS[kind][d]) for d in measure.breakdowns]
    totals: dict[Period, Cell] = defaultdict(Cell)
    groups: dict[tuple[Period, str, str], Cell] = defaultdict(Cell)
    for unit in units.of(kind):
        in_denominator = denominator.selects(unit) if denominator is not None else False
        in_numerator = numerator.selects(unit) and (denominator is None or in_denominator)
        if not (in_numerator or in_denominator):
            continue
        value = value_of(unit) if value_of is not None and in_numerator else None
        if value_of is not None and value is None:
            continue
        period = period_of(unit.at, measure.period, zone)
        cells = [totals[period]] + [groups[(period, name, group(unit))] for name, group in dimensions]
        for cell in cells:
            if in_denominator:
                cell.denominator += 1
                cell.denominator_residents.add(unit.resident_id)
            if in_numerator:
                cell.numerator += 1
                cell.residents.add(unit.resident_id)
                if value is not None:
                    cell.values.append(value)
    return totals, groups


def _counts(measure: Measure, cell: Cell) -> tuple[int, int]:
    if measure.counted.distinct_residents:
        return len(cell.residents), len(cell.denominator_residents)
    return cell.numerator, cell.denominator


def _figure(measure: Measure, group: str, cell: Cell, status: Status) -> Figure:
    n, d = _counts(measure, cell)
    if status is not Status.FREE:
        return Figure(group, status, None, None, None, None, None, False)
    value: float | None
    low = high = None
    if measure.calculation is Calculation.RATIO:
        value = n / d * measure.factor if d else None
        if d:
            if measure.unit is MeasureUnit.PERCENT:
                a, b = statistics.wilson_interval(n, d)
            else:
                a, b = statistics.rate_interval(n, d, measure.factor)
                a, b = a / measure.factor, b / measure.factor
            low, high = a * measure.factor, b * measure.factor
    elif measure.calculation is Calculation.MEDIAN:
        value = statistics.median(cell.values)
    else:
        value = float(n)
        low, high = statistics.gamma_interval(n)
    return Figure(
        group,
        status,
        n,
        d if measure.calculation is Calculation.RATIO else None,
        value,
        low,
        high,
        unstable=statistics.unstable(n) and measure.calculation is not Calculation.COUNT,
    )


# What a measure counts, as a quantity measures can share: the unit kind, whether residents are
# counted once, the conditions (with a median's value as one more: only units that have it count)
# and the filters.
Signature = tuple[object, frozenset[object], frozenset[tuple[str, frozenset[str]]], bool]


def _signature(selection: Selection, value: str = "") -> Signature:
    conditions: frozenset[object] = frozenset(selection.where) | ({("has", value)} if value else frozenset())
    return (selection.kind, conditions, frozenset(selection.filter), selection.distinct_residents)


def _quantities_of(m: Measure) -> list[tuple[Signature, int]]:
    """The signatures a measure publishes, and which of its cell's counts each one is (0: the
    numerator, 1: the denominator)."""
    value = m.value if m.calculation is Calculation.MEDIAN else ""
    found = [(_signature(m.counted, value), 0)]
    if m.denominator is not None:
        found.append((_signature(m.denominator), 1))
    return found


def _within(a: Signature, b: Signature) -> bool:
    """Every unit ``a`` counts, ``b`` counts too: ``b - a`` is then a count a reader can work out."""
    if a == b or a[0] != b[0] or a[3] != b[3] or not b[1] <= a[1]:
        return False
    a_filters = dict(a[2])
    return all(d in a_filters and a_filters[d] <= groups for d, groups in b[2])


def _related(signatures: list[Signature]) -> dict[Signature, str]:
    """Signatures linked by nesting, as components (union-find): their tables hide the same groups."""
    parent = {s: s for s in signatures}

    def root(s: Signature) -> Signature:
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    for a in signatures:
        for b in signatures:
            if _within(a, b):
                parent[root(a)] = root(b)
    roots = sorted({root(s) for s in signatures}, key=repr)
    return {s: f"q{roots.index(root(s))}" for s in signatures}


def publish(measures: Sequence[Measure], units: Units, zone: ZoneInfo, now: datetime) -> Publication:
    """Every measure's figures from its first period with data to the current one;
    population indicators (imported) are published apart.

    Suppression is decided over the quantities the measures count (signatures), not measure by
    measure: a count two measures share is one table; a count nested in another (adults among all
    screenings, a funnel stage in the stage before, a numerator in its denominator) protects the
    difference of the two as well, and their tables hide the same groups."""
    measures = [m for m in measures if not m.imported]
    tallies = {m.id: _tally(m, units, zone) for m in measures}
    spans: dict[str, list[Period]] = {}
    for m in measures:
        totals, _ = tallies[m.id]
        current = period_of(now, m.period, zone)
        start = min(totals, default=current)
        spans[m.id] = periods_between(min(start, current), current)

    empty = Cell()
    # Each signature's counts: total by period, and by (period, dimension, group).
    totals_of: dict[Signature, dict[Period, int]] = defaultdict(dict)
    groups_of: dict[Signature, dict[tuple[Period, str, str], int]] = defaultdict(dict)
    dimensions_of: dict[Signature, set[str]] = defaultdict(set)
    periods_of: dict[Signature, set[Period]] = defaultdict(set)
    for m in measures:
        totals, groups = tallies[m.id]
        for signature, which in _quantities_of(m):
            dimensions_of[signature] |= set(m.breakdowns)
            periods_of[signature] |= set(spans[m.id])
            for p in spans[m.id]:
                totals_of[signature][p] = _counts(m, totals.get(p, empty))[which]
            for key, cell in groups.items():
                groups_of[signature][key] = _counts(m, cell)[which]
    signatures = sorted(totals_of, key=repr)
    related = _related(signatures)
    names = {s: f"s{i}" for i, s in enumerate(signatures)}
    supersets = {a: [b for b in signatures if _within(a, b)] for a in signatures}

    tables = []
    for a in signatures:
        for p in sorted(periods_of[a]):
            total = Row(
                TOTAL,
                (
                    totals_of[a].get(p, 0),
                    *(totals_of[b].get(p, 0) - totals_of[a].get(p, 0) for b in supersets[a]),
                ),
            )
            tables.append(Table(TableKey(names[a], p.label, TOTAL, related[a]), total, ()))
            for d in sorted(dimensions_of[a]):
                wider = [b for b in supersets[a] if d in dimensions_of[b]]
                present = {g for (pp, dd, g) in groups_of[a] if pp == p and dd == d}
                for b in wider:
                    present |= {g for (pp, dd, g) in groups_of[b] if pp == p and dd == d}
                rows = tuple(
                    Row(
                        g,
                        (
                            groups_of[a].get((p, d, g), 0),
                            *(groups_of[b].get((p, d, g), 0) - groups_of[a].get((p, d, g), 0) for b in wider),
                        ),
                    )
                    for g in sorted(present)
                )
                tables.append(Table(TableKey(names[a], p.label, d, related[a]), total, rows))
    decision = decide(tables, PARTY_DIMENSIONS)

    def combined(statuses: list[Status]) -> Status:
        if all(x is Status.FREE for x in statuses):
            return Status.FREE
        return Status.PRIMARY if Status.PRIMARY in statuses else Status.SECONDARY

    def total_status(m: Measure, p: Period) -> Status:
        return combined(
            [decision.total[TableKey(names[s], p.label, TOTAL, related[s])] for s, _ in _quantities_of(m)]
        )

    def group_statuses(m: Measure, p: Period, d: str) -> dict[str, Status]:
        per_signature = [
            decision.groups.get(TableKey(names[s], p.label, d, related[s]), {}) for s, _ in _quantities_of(m)
        ]
        present = {g for statuses in per_signature for g in statuses}
        return {g: combined([statuses.get(g, Status.FREE) for statuses in per_signature]) for g in present}

    published = {}
    for m in measures:
        totals, groups = tallies[m.id]
        window = _window(m)
        periods = []
        for p in spans[m.id]:
            shown = _figure(m, TOTAL, totals.get(p, empty), total_status(m, p))
            by_dimension: dict[str, tuple[Figure, ...]] = {}
            gaps: dict[str, Disparities] = {}
            # Under a hidden total, no breakdown: groups all shown as 0 would give the total away.
            for d in m.breakdowns if shown.status is Status.FREE else ():
                statuses = group_statuses(m, p, d)
                figures = tuple(
                    _figure(m, g, groups.get((p, d, g), empty), statuses[g]) for g in sorted(statuses)
                )
                by_dimension[d] = figures
                rates = {f.group: f.value for f in figures if f.value is not None and f.group != "unknown"}
                if shown.value is not None and m.calculation is not Calculation.COUNT:
                    found = disparities(rates, shown.value, m.polarity, m.reference_group)
                    if found is not None:
                        gaps[d] = found
            periods.append(
                PeriodFigures(
                    period=p,
                    provisional=p.end(zone) + window > now,
                    total=shown,
                    groups=by_dimension,
                    disparities=gaps,
                    definition_version=m.version,
                )
            )
        published[m.id] = MeasureFigures(m, tuple(periods))
    return Publication(published, now)


INDICATOR_DIMENSION = "race_ethnicity"  # County Health Rankings' race columns


def _indicator_figure(group: str, v: IndicatorValue) -> Figure:
    """A published value as published, but for a small count: a numerator of 1 to 10 (or a value
    computed from one) is not shown here either."""
    n = v.numerator
    if n is not None and 0 < n < SMALLEST_SHOWN:
        return Figure(group, Status.PRIMARY, None, None, None, None, None, False)
    return Figure(
        group,
        Status.FREE,
        int(n) if n is not None else None,
        int(v.denominator) if v.denominator is not None else None,
        v.value,
        v.low,
        v.high,
        unstable=n is not None and statistics.unstable(int(n)),
    )


def publish_indicator(
    measure: Measure, values: Sequence[IndicatorValue], geography: str, zone: ZoneInfo, now: datetime
) -> MeasureFigures:
    """A population indicator's yearly values for one geography, with its race groups where given."""
    mine = [v for v in values if v.indicator == measure.id and v.geography == geography]
    years = sorted({v.period for v in mine})
    periods = []
    if years:
        span = periods_between(
            parse_period(years[0], measure.period), parse_period(years[-1], measure.period)
        )
        for p in span:
            # Values imported under several versions of the definition: the newest.
            of_year: dict[str, IndicatorValue] = {}
            for v in sorted((v for v in mine if v.period == p.label), key=lambda v: v.definition_version):
                of_year[v.group] = v
            total = (
                _indicator_figure(TOTAL, of_year[TOTAL])
                if TOTAL in of_year
                else Figure(TOTAL, Status.FREE, None, None, None, None, None, False)
            )
            groups = tuple(_indicator_figure(g, v) for g, v in sorted(of_year.items()) if g != TOTAL)
            gaps: dict[str, Disparities] = {}
            rates = {f.group: f.value for f in groups if f.value is not None}
            if total.value is not None and (
                found := disparities(rates, total.value, measure.polarity, measure.reference_group)
            ):
                gaps[INDICATOR_DIMENSION] = found
            periods.append(
                PeriodFigures(
                    period=p,
                    provisional=False,
                    total=total,
                    groups={INDICATOR_DIMENSION: groups} if groups else {},
                    disparities=gaps,
                    definition_version=max((v.definition_version for v in of_year.values()), default=0),
                )
            )
    return MeasureFigures(measure, tuple(periods))
