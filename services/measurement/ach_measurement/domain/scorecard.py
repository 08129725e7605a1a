"""The scorecard's columns, as Clear Impact shows them, over a measure's published values (a hidden
value is None and is never used: nothing here can bring a suppressed figure back).

Time period, prior actual, current actual, current target, next target, forecast, variance from
target = (actual - target) / target, the current trend (direction, whether that is good by the
measure's polarity, and for how many consecutive periods), and baseline % change = (current - first
actual) / first actual, where the first actual is the definition's baseline when it gives one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from ach_measurement.domain.definitions import Polarity
from ach_measurement.domain.periods import Period

FORECAST_FROM = 3  # published periods needed before a linear forecast is drawn
FORECAST_OVER = 6  # at most this many recent periods feed it


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"
    FLAT = "flat"
    NONE = "none"  # fewer than two published periods in a row


@dataclass(frozen=True)
class Trend:
    direction: Direction
    good: bool | None  # by polarity; None when flat or unknown
    periods: int  # consecutive periods moving that way


# The row's figures (each a number or None), in the order Clear Impact shows them.
FIGURES = (
    "prior_actual",
    "current_actual",
    "current_target",
    "next_target",
    "forecast",
    "variance_from_target",
    "baseline_change",
)


@dataclass(frozen=True)
class ScorecardRow:
    period: Period
    prior_actual: float | None
    current_actual: float | None
    current_target: float | None
    next_target: float | None
    forecast: float | None  # for the next period
    variance_from_target: float | None
    trend: Trend
    baseline_change: float | None


def forecast(series: Sequence[tuple[Period, float | None]], ahead: Period) -> float | None:
    """A straight line through the recent published values, read at ``ahead``: the RBA baseline's
    "where we are headed if we stay on course"."""
    known = [(p, v) for p, v in series if v is not None][-FORECAST_OVER:]
    if len(known) < FORECAST_FROM:
        return None
    x = np.array([p.minus(known[0][0]) for p, _ in known], dtype=float)
    y = np.array([v for _, v in known], dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope * ahead.minus(known[0][0]) + intercept)


def trend(series: Sequence[tuple[Period, float | None]], polarity: Polarity) -> Trend:
    """How the last published values moved: consecutive periods only (a hidden period breaks it)."""
    values = [v for _, v in series]
    if len(values) < 2 or values[-1] is None or values[-2] is None:
        return Trend(Direction.NONE, None, 0)

    def step(a: float, b: float) -> Direction:
        return Direction.UP if b > a else Direction.DOWN if b < a else Direction.FLAT

    direction = step(values[-2], values[-1])
    periods = 1
    for i in range(len(values) - 2, 0, -1):
        a, b = values[i - 1], values[i]
        if a is None or b is None or step(a, b) is not direction:
            break
        periods += 1
    good = None
    if direction is Direction.UP:
        good = polarity is Polarity.HIGHER_IS_BETTER
    elif direction is Direction.DOWN:
        good = polarity is Polarity.LOWER_IS_BETTER
    return Trend(direction, good, periods)


def _ratio_change(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return (value - base) / base


def scorecard_row(
    series: Sequence[tuple[Period, float | None]],
    targets: Mapping[Period, float],
    polarity: Polarity,
    baseline: float | None = None,
) -> ScorecardRow:
    """The row for the last period of ``series`` (periods in order, without gaps)."""
    period, current = series[-1]
    prior = series[-2][1] if len(series) > 1 else None
    first = baseline if baseline is not None else next((v for _, v in series if v is not None), None)
    target = targets.get(period)
    return ScorecardRow(
        period=period,
        prior_actual=prior,
        current_actual=current,
        current_target=target,
        next_target=targets.get(period.shifted(1)),
        forecast=forecast(series, period.shifted(1)),
        variance_from_target=_ratio_change(current, target),
        trend=trend(series, polarity),
        baseline_change=_ratio_change(current, first),
    )
