"""The workflow of a scorecard: which measures it shows, and for each its row of Clear Impact columns
for a period and (optionally) one group, from the published figures. The gRPC API and the public
page both show these rows, so the page's numbers are the API's by construction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ach_measurement.catalog import ScorecardDefinition
from ach_measurement.domain.definitions import Calculation, Measure
from ach_measurement.domain.periods import parse_period
from ach_measurement.domain.publication import Figure, MeasureFigures, PeriodFigures, Publication
from ach_measurement.domain.scorecard import ScorecardRow, scorecard_row
from ach_measurement.domain.suppression import Status


@dataclass(frozen=True)
class Row:
    measure: Measure
    columns: ScorecardRow
    status: Status  # of the current actual
    provisional: bool
    geography: str  # a population indicator's place, else ""


def figures_of(publication: Publication, measure: Measure, geography: str) -> MeasureFigures:
    if measure.imported:
        return publication.indicators.get((measure.id, geography), MeasureFigures(measure, ()))
    return publication.measures[measure.id]


def chosen(figures: MeasureFigures, pf: PeriodFigures, dimension: str, group: str) -> Figure:
    """The total, or one group's figure (a group with no unit in the period: none counted)."""
    if not dimension:
        return pf.total
    for f in pf.groups.get(dimension, ()):
        if f.group == group:
            return f
    empty = 0.0 if figures.measure.calculation is Calculation.COUNT else None
    return Figure(group, Status.FREE, 0 if empty is not None else None, None, empty, None, None, False)


def row_of(
    figures: MeasureFigures, period_label: str, dimension: str, group: str, geography: str = ""
) -> Row | None:
    """A measure's row for the period (its latest when none is named, or when the label is another
    kind of period: a scorecard mixes months and years), or None when it has nothing to show."""
    measure = figures.measure
    if dimension and dimension not in {d for p in figures.periods for d in p.groups} | set(
        measure.breakdowns
    ):
        return None
    try:
        period = parse_period(period_label, measure.period) if period_label else None
    except ValueError:
        period = None
    periods = [p for p in figures.periods if period is None or p.period <= period]
    if not periods:
        return None
    series = [(p.period, chosen(figures, p, dimension, group).value) for p in periods]
    baseline = measure.baseline[1] if measure.baseline and not dimension else None
    columns = scorecard_row(series, measure.targets if not dimension else {}, measure.polarity, baseline)
    last = periods[-1]
    return Row(
        measure,
        columns,
        chosen(figures, last, dimension, group).status,
        last.provisional,
        geography if measure.imported else "",
    )


def measure_ids(
    measures: Sequence[Measure], card: ScorecardDefinition | None, requested: Sequence[str]
) -> tuple[list[str], str]:
    """The measures a scorecard shows and the place its population indicators are read for: a
    defined scorecard's own, else those asked for, else every measure counted from events."""
    if card is not None:
        return list(card.measures), card.geography
    return list(requested) or [m.id for m in measures if not m.imported], ""


def rows(
    publication: Publication,
    by_id: Mapping[str, Measure],
    ids: Sequence[str],
    geography: str,
    period: str = "",
    dimension: str = "",
    group: str = "",
) -> list[Row]:
    found = []
    for measure_id in ids:
        figures = figures_of(publication, by_id[measure_id], geography)
        row = row_of(figures, period, dimension, group, geography)
        if row is not None:
            found.append(row)
    return found
