"""Measure definitions: data, like the screening instruments. A definition file names a measure in
English and Spanish, its Results-Based Accountability kind, what it counts (numerator and
denominator over the named facts of ``facts``, as DHIS2 indicators are expressions over data
elements), its unit, polarity, reporting period, the groups it may be broken down by, baseline and
targets, source and notes. A malformed file stops the service naming the file and every problem.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ach_measurement.domain.facts import CONDITIONS, DIMENSIONS, VALUES, UnitKind
from ach_measurement.domain.periods import Period, PeriodKind, parse_period


class Polarity(StrEnum):
    HIGHER_IS_BETTER = "higher-is-better"
    LOWER_IS_BETTER = "lower-is-better"


class RbaKind(StrEnum):
    POPULATION_INDICATOR = "population-indicator"
    HOW_MUCH = "how-much"  # how much did we do?
    HOW_WELL = "how-well"  # how well did we do it?
    BETTER_OFF = "better-off"  # is anyone better off?


class Calculation(StrEnum):
    COUNT = "count"
    RATIO = "ratio"  # numerator / denominator x the unit's factor
    MEDIAN = "median"  # of a value over the numerator's units
    IMPORTED = "imported"  # a population indicator's published values (County Health Rankings, PLACES...)


class MeasureUnit(StrEnum):
    COUNT = "count"
    PERCENT = "percent"
    DAYS = "days"
    PER_1000 = "per-1000"
    PER_100000 = "per-100000"
    YEARS_PER_100000 = "years-per-100000"  # years of potential life lost
    INDEX = "index"  # a score on the publisher's own scale


FACTOR = {MeasureUnit.PERCENT: 100, MeasureUnit.PER_1000: 1000, MeasureUnit.PER_100000: 100_000}
MEASURE_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
MAX_TEXT = 2000
# Equity by default: a definition that lists no breakdowns is broken down by these (those its unit has).
EQUITY_BREAKDOWNS = ("race_ethnicity", "language", "age_band", "zip", "neighbourhood", "site", "partner")


class MeasureError(Exception):
    """A malformed definition: every problem, each naming where in the file it is."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__("\n".join(f"{source}: {p}" for p in self.problems))


# ---- the file's shape --------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Texts(_Strict):
    en: str = Field(min_length=1, max_length=MAX_TEXT)
    es: str = Field(min_length=1, max_length=MAX_TEXT)


class _Selection(_Strict):
    count: UnitKind
    distinct: Literal["resident"] | None = None
    where: list[str | dict[str, Any]] = Field(default_factory=list, max_length=20)
    filter: dict[str, list[str]] = Field(default_factory=dict)


class _Baseline(_Strict):
    period: str | int  # a year may be written bare
    value: float


class _Codes(_Strict):
    chr: str = Field(default="", pattern=r"^(v\d{3})?$")  # County Health Rankings' measure number
    places: str = Field(default="", pattern=r"^[A-Z0-9_]{0,20}$")  # CDC PLACES' MeasureId


class _Family(_Strict):
    id: str = Field(pattern=MEASURE_ID.pattern, max_length=80)
    order: int = Field(ge=1, le=100)


class _Definition(_Strict):
    id: str = Field(pattern=MEASURE_ID.pattern, max_length=80)
    version: int = Field(ge=1)
    name: _Texts
    description: _Texts | None = None
    kind: RbaKind
    calculation: Calculation
    unit: MeasureUnit
    polarity: Polarity
    period: PeriodKind
    numerator: _Selection | None = None
    denominator: _Selection | None = None
    codes: _Codes | None = None  # how a population indicator is named in the files it is imported from
    value: str | None = None
    breakdowns: list[str] | None = Field(default=None, max_length=20)
    reference_group: str = "best"
    baseline: _Baseline | None = None
    targets: dict[str | int, float] = Field(default_factory=dict)
    family: _Family | None = None
    source: _Texts
    notes: _Texts | None = None


# ---- the measure, checked ----------------------------------------------------------------------


@dataclass(frozen=True)
class ConditionUse:
    name: str
    argument: Any = None  # parsed (a timedelta, a set of domains), None for plain conditions
    text: str = ""  # as written, for the definition's export

    def holds(self, unit: Any, kind: UnitKind) -> bool:
        return CONDITIONS[kind][self.name].holds(unit, self.argument)


@dataclass(frozen=True)
class Selection:
    kind: UnitKind
    distinct_residents: bool
    where: tuple[ConditionUse, ...]
    filter: tuple[tuple[str, frozenset[str]], ...]

    def selects(self, unit: Any) -> bool:
        for dimension, groups in self.filter:
            if DIMENSIONS[self.kind][dimension](unit) not in groups:
                return False
        return all(c.holds(unit, self.kind) for c in self.where)


@dataclass(frozen=True)
class Measure:
    id: str
    version: int
    name: Mapping[str, str]
    description: Mapping[str, str]
    kind: RbaKind
    calculation: Calculation
    unit: MeasureUnit
    polarity: Polarity
    period: PeriodKind
    numerator: Selection | None  # None for a population indicator (imported)
    denominator: Selection | None
    value: str
    breakdowns: tuple[str, ...]
    reference_group: str
    baseline: tuple[Period, float] | None
    targets: Mapping[Period, float]
    family: tuple[str, int] | None
    source: Mapping[str, str]
    notes: Mapping[str, str]
    codes: Mapping[str, str] = field(default_factory=dict)  # chr, places

    @property
    def imported(self) -> bool:
        return self.calculation is Calculation.IMPORTED

    @property
    def counted(self) -> Selection:
        """What a measure counted from events counts."""
        assert self.numerator is not None, f"{self.id} is imported, not counted"
        return self.numerator

    @property
    def key(self) -> tuple[str, int]:
        return (self.id, self.version)

    @property
    def factor(self) -> int:
        return FACTOR.get(self.unit, 1)


def _texts(t: _Texts | None) -> Mapping[str, str]:
    return {"en": t.en, "es": t.es} if t is not None else {}


def _condition(
    raw: str | dict[str, Any], kind: UnitKind, where: str, problems: list[str]
) -> ConditionUse | None:
    if isinstance(raw, str):
        name, argument, given = raw, None, False
    elif len(raw) == 1:
        ((name, argument),) = raw.items()
        given = True
    else:
        problems.append(f"{where}: a condition is a name or one name: argument")
        return None
    known = CONDITIONS[kind]
    if name not in known:
        choices = ", ".join(sorted(known)) or "none"
        problems.append(f"{where}: {name[:40]!r} is not a condition of a {kind} (known: {choices})")
        return None
    condition = known[name]
    if condition.parse is None:
        if given:
            problems.append(f"{where}: {name} takes no argument")
            return None
        return ConditionUse(name, None, name)
    if not given:
        problems.append(f"{where}: {name} needs an argument, e.g. {name}: 7d")
        return None
    try:
        parsed = condition.parse(argument)
    except ValueError as exc:
        problems.append(f"{where}: {name}: {exc}")
        return None
    return ConditionUse(name, parsed, f"{name}: {argument}")


def _selection(raw: _Selection, where: str, problems: list[str]) -> Selection:
    kind = raw.count
    conditions = tuple(
        c
        for i, item in enumerate(raw.where)
        if (c := _condition(item, kind, f"{where}.where[{i}]", problems))
    )
    filters = []
    for dimension, groups in sorted(raw.filter.items()):
        if dimension not in DIMENSIONS[kind]:
            problems.append(f"{where}.filter: {dimension[:40]!r} is not a dimension of a {kind}")
        elif not groups:
            problems.append(f"{where}.filter.{dimension}: list the groups kept")
        else:
            filters.append((dimension, frozenset(groups)))
    return Selection(kind, raw.distinct == "resident", conditions, tuple(filters))


def _subset_problems(numerator: Selection, denominator: Selection) -> list[str]:
    """A ratio's numerator must count a subset of its denominator's units (a proportion)."""
    problems = []
    if numerator.kind != denominator.kind:
        problems.append(f"numerator counts {numerator.kind}s but the denominator counts {denominator.kind}s")
        return problems
    if numerator.distinct_residents != denominator.distinct_residents:
        problems.append("numerator and denominator must both count distinct residents, or neither")
    missing = [c.text for c in denominator.where if c not in numerator.where]
    if missing:
        problems.append(
            "numerator must count a subset of the denominator's units: add "
            + ", ".join(missing)
            + " to numerator.where"
        )
    numerator_filters = dict(numerator.filter)
    for dimension, groups in denominator.filter:
        if not numerator_filters.get(dimension, groups) <= groups:
            problems.append(f"numerator.filter.{dimension} must keep only groups the denominator keeps")
        elif dimension not in numerator_filters:
            problems.append(f"numerator.filter must repeat the denominator's filter on {dimension}")
    return problems


def _format(error: ValidationError) -> list[str]:
    problems = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"])
        message = e["msg"]
        if e["type"] == "extra_forbidden":
            message = "is not a field of a measure definition"
        problems.append(f"{where}: {message}" if where else message)
    return problems


def _baseline_and_targets(
    raw: _Definition, problems: list[str]
) -> tuple[tuple[Period, float] | None, dict[Period, float]]:
    baseline = None
    if raw.baseline is not None:
        try:
            baseline = (parse_period(str(raw.baseline.period), raw.period), raw.baseline.value)
        except ValueError as exc:
            problems.append(f"baseline.period: {exc}")
    targets: dict[Period, float] = {}
    for label, value in raw.targets.items():
        try:
            targets[parse_period(str(label), raw.period)] = value
        except ValueError as exc:
            problems.append(f"targets: {exc}")
    return baseline, targets


def _population_indicator(raw: _Definition, source: str) -> Measure:
    """A population indicator: imported values (no numerator counted from events), yearly."""
    problems = []
    if raw.kind is not RbaKind.POPULATION_INDICATOR:
        problems.append("kind: an imported measure is a population-indicator")
    if raw.calculation is not Calculation.IMPORTED:
        problems.append("calculation: population indicators are imported, not counted from events")
    for name in ("numerator", "denominator", "value", "family"):
        if getattr(raw, name) is not None:
            problems.append(f"{name}: a population indicator has none (its values are imported)")
    if raw.breakdowns:
        problems.append("breakdowns: a population indicator's groups come with its data")
    baseline, targets = _baseline_and_targets(raw, problems)
    if problems:
        raise MeasureError(source, problems)
    codes = raw.codes or _Codes()
    return Measure(
        id=raw.id,
        version=raw.version,
        name=_texts(raw.name),
        description=_texts(raw.description),
        kind=raw.kind,
        calculation=raw.calculation,
        unit=raw.unit,
        polarity=raw.polarity,
        period=raw.period,
        numerator=None,
        denominator=None,
        value="",
        breakdowns=(),
        reference_group=raw.reference_group,
        baseline=baseline,
        targets=targets,
        family=None,
        source=_texts(raw.source),
        notes=_texts(raw.notes),
        codes={k: v for k, v in (("chr", codes.chr), ("places", codes.places)) if v},
    )


def parse_measure(data: Any, source: str) -> Measure:
    """A measure from a data file's content; MeasureError names every problem."""
    if not isinstance(data, Mapping):
        raise MeasureError(source, ["the file must hold one mapping (id, version, name, numerator...)"])
    try:
        raw = _Definition.model_validate(data)
    except ValidationError as exc:
        raise MeasureError(source, _format(exc)) from None
    problems: list[str] = []
    calculation = raw.calculation
    if calculation is Calculation.IMPORTED or raw.kind is RbaKind.POPULATION_INDICATOR:
        return _population_indicator(raw, source)
    if raw.numerator is None:
        raise MeasureError(source, ["numerator: Field required"])
    if raw.codes is not None:
        problems.append("codes: only a population indicator is imported")
    numerator = _selection(raw.numerator, "numerator", problems)
    denominator = _selection(raw.denominator, "denominator", problems) if raw.denominator else None
    if calculation is Calculation.RATIO:
        if denominator is None:
            problems.append("denominator: a ratio needs a denominator")
        elif not problems:
            problems += _subset_problems(numerator, denominator)
        if raw.unit not in FACTOR:
            problems.append(f"unit: a ratio is a percent or a rate ({', '.join(u.value for u in FACTOR)})")
    elif denominator is not None:
        problems.append(f"denominator: a {calculation} measure has none")
    if calculation is Calculation.MEDIAN:
        values = VALUES.get(numerator.kind, {})
        if raw.value not in values:
            choices = ", ".join(sorted(values)) or "none"
            problems.append(f"value: a median of a {numerator.kind} needs one of: {choices}")
    elif raw.value is not None:
        problems.append("value: only a median measure takes a value")
    if calculation is Calculation.COUNT and raw.unit is not MeasureUnit.COUNT:
        problems.append("unit: a count measure's unit is count")
    breakdowns = raw.breakdowns
    if breakdowns is None:
        breakdowns = [b for b in EQUITY_BREAKDOWNS if b in DIMENSIONS[numerator.kind]]
    for b in breakdowns:
        if b not in DIMENSIONS[numerator.kind]:
            problems.append(f"breakdowns: {b[:40]!r} is not a dimension of a {numerator.kind}")
    if len(set(breakdowns)) != len(breakdowns):
        problems.append("breakdowns: a dimension is listed twice")
    baseline, targets = _baseline_and_targets(raw, problems)
    if problems:
        raise MeasureError(source, problems)
    return Measure(
        id=raw.id,
        version=raw.version,
        name=_texts(raw.name),
        description=_texts(raw.description),
        kind=raw.kind,
        calculation=calculation,
        unit=raw.unit,
        polarity=raw.polarity,
        period=raw.period,
        numerator=numerator,
        denominator=denominator,
        value=raw.value or "",
        breakdowns=tuple(breakdowns),
        reference_group=raw.reference_group,
        baseline=baseline,
        targets=targets,
        family=(raw.family.id, raw.family.order) if raw.family else None,
        source=_texts(raw.source),
        notes=_texts(raw.notes),
    )
