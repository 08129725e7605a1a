"""Measures and published figures as protobuf messages (only published figures: a suppressed value
is an unset field with its status, never a number)."""

from __future__ import annotations

from collections.abc import Mapping

from ach.measurement.v1 import measurement_pb2 as pb

from ach_measurement.catalog import ScorecardDefinition
from ach_measurement.domain.definitions import Measure, Selection
from ach_measurement.domain.disparity import Disparities
from ach_measurement.domain.publication import Figure, PeriodFigures
from ach_measurement.domain.scorecard import FIGURES, Direction
from ach_measurement.domain.suppression import Status
from ach_measurement.scorecards import Row

STATUS = {
    Status.FREE: pb.CONFIDENTIALITY_STATUS_FREE,
    Status.PRIMARY: pb.CONFIDENTIALITY_STATUS_PRIMARY,
    Status.SECONDARY: pb.CONFIDENTIALITY_STATUS_SECONDARY,
}
DIRECTION = {
    Direction.UP: pb.TREND_DIRECTION_UP,
    Direction.DOWN: pb.TREND_DIRECTION_DOWN,
    Direction.FLAT: pb.TREND_DIRECTION_FLAT,
    Direction.NONE: pb.TREND_DIRECTION_NONE,
}


def text(values: Mapping[str, str]) -> pb.LocalizedText:
    return pb.LocalizedText(en=values.get("en", ""), es=values.get("es", ""))


def selection_text(s: Selection | None) -> str:
    if s is None:
        return ""
    what = f"distinct residents of {s.kind}s" if s.distinct_residents else s.kind
    parts = [c.text for c in s.where] + [f"{d} in {', '.join(sorted(g))}" for d, g in s.filter]
    return f"{what} where {'; '.join(parts)}" if parts else what


def definition(m: Measure) -> pb.MeasureDefinition:
    message = pb.MeasureDefinition(
        id=m.id,
        version=m.version,
        name=text(m.name),
        description=text(m.description),
        kind=m.kind.value,
        calculation=m.calculation.value,
        unit=m.unit.value,
        polarity=m.polarity.value,
        period=m.period.value,
        breakdowns=list(m.breakdowns),
        targets={p.label: v for p, v in m.targets.items()},
        family_id=m.family[0] if m.family else "",
        family_order=m.family[1] if m.family else 0,
        source=text(m.source),
        notes=text(m.notes),
        numerator=selection_text(m.numerator),
        denominator=selection_text(m.denominator),
        value=m.value,
    )
    if m.baseline is not None:
        message.baseline_period = m.baseline[0].label
        message.baseline_value = m.baseline[1]
    return message


def figure(f: Figure) -> pb.Figure:
    message = pb.Figure(group=f.group, status=STATUS[f.status], unstable=f.unstable)
    for name in ("numerator", "denominator", "value", "low", "high"):
        value = getattr(f, name)
        if value is not None:
            setattr(message, name, value)
    return message


def disparities(d: Disparities | None) -> pb.Disparities | None:
    if d is None:
        return None
    message = pb.Disparities(reference_group=d.reference_group)
    for g in d.groups:
        item = message.groups.add(group=g.group, rate_difference=g.rate_difference)
        if g.rate_ratio is not None:
            item.rate_ratio = g.rate_ratio
    if d.index_of_disparity is not None:
        message.index_of_disparity = d.index_of_disparity
    if d.attributable_proportion is not None:
        message.attributable_proportion = d.attributable_proportion
    return message


def period_figures(p: PeriodFigures, dimension: str = "") -> pb.PeriodFigures:
    message = pb.PeriodFigures(
        period=p.period.label,
        provisional=p.provisional,
        total=figure(p.total),
        definition_version=p.definition_version,
    )
    for name, figures in p.groups.items():
        if dimension and name != dimension:
            continue
        message.breakdowns.append(
            pb.Breakdown(
                dimension=name,
                figures=[figure(f) for f in figures],
                disparities=disparities(p.disparities.get(name)),
            )
        )
    return message


def scorecard_row(r: Row) -> pb.ScorecardRow:
    m, row = r.measure, r.columns
    message = pb.ScorecardRow(
        measure_id=m.id,
        name=text(m.name),
        time_period=row.period.label,
        trend=DIRECTION[row.trend.direction],
        trend_periods=row.trend.periods,
        status=STATUS[r.status],
        provisional=r.provisional,
        geography=r.geography,
        unit=m.unit.value,
        polarity=m.polarity.value,
    )
    for name in FIGURES:
        value = getattr(row, name)
        if value is not None:
            setattr(message, name, value)
    if row.trend.good is not None:
        message.trend_good = row.trend.good
    return message


def scorecard_definition(c: ScorecardDefinition) -> pb.ScorecardDefinition:
    return pb.ScorecardDefinition(
        id=c.id, name=text(c.name), geography=c.geography, measure_ids=list(c.measures)
    )
