"""Periods, intervals, disparities and the scorecard's columns, against published values."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from ach_measurement.domain.definitions import Polarity
from ach_measurement.domain.disparity import disparities
from ach_measurement.domain.periods import Period, PeriodKind, parse_period, period_of
from ach_measurement.domain.scorecard import Direction, scorecard_row
from ach_measurement.domain.statistics import gamma_interval, median, unstable, wilson_interval

LA = ZoneInfo("America/Los_Angeles")


def test_periods_are_the_networks_calendar() -> None:
    late_march = datetime(2026, 4, 1, 6, 30, tzinfo=UTC)  # 23:30 on 31 March in California
    assert period_of(late_march, PeriodKind.MONTH, LA).label == "2026-03"
    assert period_of(late_march, PeriodKind.QUARTER, LA).label == "2026-Q1"
    assert period_of(late_march, PeriodKind.MONTH, ZoneInfo("UTC")).label == "2026-04"
    assert parse_period("2026-Q4", PeriodKind.QUARTER).shifted(1).label == "2027-Q1"
    assert Period(PeriodKind.MONTH, 2026, 1).shifted(-1).label == "2025-12"
    with pytest.raises(ValueError, match="is not a quarter"):
        parse_period("2026-Q5", PeriodKind.QUARTER)


def test_intervals_match_published_tables() -> None:
    low, high = wilson_interval(10, 100)
    assert (round(low, 4), round(high, 4)) == (0.0552, 0.1744)
    assert gamma_interval(0)[0] == 0 and round(gamma_interval(0)[1], 3) == 3.689
    low, high = gamma_interval(5)
    assert (round(low, 3), round(high, 3)) == (1.623, 11.668)
    assert unstable(19) and not unstable(20)
    assert median([3, 1, 2]) == 2 and median([4, 1, 2, 3]) == 2.5 and median([]) is None


def test_disparities_against_the_best_group() -> None:
    rates = {"a": 60.0, "b": 30.0, "c": 45.0}
    d = disparities(rates, 50.0, Polarity.HIGHER_IS_BETTER)
    assert d is not None and d.reference_group == "a"
    b = next(g for g in d.groups if g.group == "b")
    assert b.rate_difference == -30.0 and b.rate_ratio == 0.5
    assert d.index_of_disparity == pytest.approx((10 + 20 + 5) / 3 / 50 * 100)
    assert d.attributable_proportion == pytest.approx(0.2)
    lower = disparities(rates, 50.0, Polarity.LOWER_IS_BETTER)
    assert lower is not None and lower.reference_group == "b"
    assert disparities({"a": 1.0}, 1.0, Polarity.HIGHER_IS_BETTER) is None


def test_scorecard_columns() -> None:
    months = [Period(PeriodKind.MONTH, 2026, m) for m in range(1, 6)]
    series = list(zip(months, [40.0, 42.0, 45.0, 47.0, 50.0], strict=True))
    row = scorecard_row(series, {months[-1]: 55.0, months[-1].shifted(1): 60.0}, Polarity.HIGHER_IS_BETTER)
    assert (row.prior_actual, row.current_actual, row.current_target, row.next_target) == (
        47.0,
        50.0,
        55.0,
        60.0,
    )
    assert row.variance_from_target == pytest.approx(-5 / 55)
    assert row.baseline_change == pytest.approx(0.25)
    assert row.trend.direction is Direction.UP and row.trend.good is True and row.trend.periods == 4
    assert row.forecast == pytest.approx(52.3)
    # A hidden period breaks the trend, is never used for it, and the forecast skips it.
    hidden = [*series[:3], (months[3], None), series[4]]
    row = scorecard_row(hidden, {}, Polarity.LOWER_IS_BETTER, baseline=50.0)
    assert row.prior_actual is None and row.trend.direction is Direction.NONE and row.baseline_change == 0
