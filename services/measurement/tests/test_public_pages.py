"""The public page's own rules, in-process: how figures read, and the charts of counts."""

from __future__ import annotations

import re

from ach_measurement import charts
from ach_measurement.catalog import load_measures
from ach_measurement.domain.periods import PeriodKind, parse_period
from ach_measurement.public_pages import Words, shown_change, shown_value

MEASURES = {m.id: m for m in load_measures()}
EN, ES = Words("en"), Words("es")


def _labels(svg: str) -> list[float]:
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg) + re.findall(r'<desc class="value">([^<]*)<', svg)
    return [
        float(n.replace(",", ""))
        for t in texts
        if not re.fullmatch(r"\d{4}(-\d{2})?", t.strip())
        for n in re.findall(r"\d[\d,]*(?:\.\d+)?", t)
    ]


def test_a_count_chart_has_no_label_of_1_to_10_where_a_count_stands() -> None:
    months = [parse_period(f"2026-{m:02d}", PeriodKind.MONTH) for m in range(1, 5)]
    points = [
        charts.CurvePoint(p, v, None, None) for p, v in zip(months, [0.0, 11.0, 14.0, 12.0], strict=True)
    ]
    names = {"actual": "Actual", "forecast": "Forecast", "target": "Target", "baseline": "Baseline"}
    screenings = MEASURES["screenings"]
    protected = charts.turn_the_curve(
        "t", points, None, names, lambda v: shown_value(screenings, v, EN), counts=True
    )
    assert not [n for n in _labels(protected) if 1 <= n <= 10]
    # Without it the chart library labels the axis 0, 2, 4...: the protection is what keeps them out.
    plain = charts.turn_the_curve("t", points, None, names, lambda v: f"{v:g}")
    assert [n for n in _labels(plain) if 1 <= n <= 10]
    bars = charts.groups_chart("g", [("a", 0.0), ("b", 12.0)], lambda v: f"{v:g}", counts=True)
    assert not [n for n in _labels(bars) if 1 <= n <= 10]
    assert charts.count_axis([0, 11, 14]) == [0, 20] and charts.count_axis([950.0])[1] >= 20


def test_figures_read_in_the_measures_unit_and_small_forecasts_of_counts_are_words() -> None:
    screenings, percent = MEASURES["screenings"], MEASURES["referred-within-7-days"]
    assert shown_value(screenings, 1234.0, EN) == "1,234"
    assert (
        shown_value(screenings, 7.4, EN) == "fewer than 11"
        and shown_value(screenings, 7.4, ES) == "menos de 11"
    )
    assert shown_value(screenings, 0.0, EN) == "0" and shown_value(screenings, None, EN) == "—"
    assert shown_value(percent, 33.333, ES) == "33.3%" and shown_value(percent, 5.0, EN) == "5.0%"
    assert shown_change(0.1234) == "+12.3%" and shown_change(-0.05) == "-5.0%" and shown_change(None) == "—"
