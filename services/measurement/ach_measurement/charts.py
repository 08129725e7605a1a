"""The public page's charts, drawn on the server as SVG (pygal), so a phone shows them without
script: a measure's "turn the curve" chart (history, the forecast ahead, targets, baseline) and its
groups side by side. Only published values reach a chart; the page puts a table behind each one."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pygal
from markupsafe import Markup, escape
from pygal.style import Style

from ach_measurement.domain.periods import Period

FORECAST_AHEAD = 3  # periods drawn past the last one

# Dark on white, at least 4.5:1 against the background; series also differ by dash, not colour alone.
STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#1a1a1a",
    foreground_strong="#1a1a1a",
    foreground_subtle="#595959",
    colors=("#1f4e79", "#8a4b00", "#0b6e4f", "#595959"),
    font_family="system-ui, sans-serif",
    label_font_size=16,
    major_label_font_size=16,
    legend_font_size=17,
    title_font_size=18,
    tooltip_font_size=16,
)


@dataclass(frozen=True)
class CurvePoint:
    period: Period
    actual: float | None
    forecast: float | None
    target: float | None


def count_axis(values: Sequence[float | None]) -> list[float]:
    """Value-axis labels for counts: 0 and steps of at least 20, so no label reads 1 to 10 where a
    count would stand."""
    top = max((v for v in values if v is not None), default=0.0)
    nice = (20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10_000, 20_000, 50_000, 100_000)
    step = float(next((n for n in nice if top / n <= 6), 10 ** math.ceil(math.log10(max(top, 6) / 6))))
    return [step * i for i in range(int(top // step) + 2)]


def _accessible(svg: str, label: str) -> Markup:
    """The SVG as an image with a name; its figures are in the table the page puts beside it."""
    head = f'<svg role="img" aria-label="{escape(label)}" focusable="false" '
    return Markup(svg.replace("<svg ", head, 1))


def _chart(kind: type[pygal.graph.graph.Graph], title: str, shown: Callable[[float], str]) -> pygal.Graph:
    return kind(
        style=STYLE,
        title=title,
        js=[],  # no script: nothing is fetched, nothing runs
        disable_xml_declaration=True,
        width=600,
        height=420,
        show_legend=True,
        legend_at_bottom=True,
        legend_at_bottom_columns=2,
        x_label_rotation=30,
        truncate_label=-1,
        value_formatter=lambda v: shown(v) if v is not None else "",
        margin=16,
    )


def turn_the_curve(
    title: str,
    points: Sequence[CurvePoint],
    baseline: float | None,
    names: dict[str, str],
    shown: Callable[[float], str],
    counts: bool = False,
) -> Markup:
    chart = _chart(pygal.Line, title, shown)
    if counts:
        every = [v for p in points for v in (p.actual, p.forecast, p.target)] + [baseline]
        chart.y_labels = count_axis(every)
    chart.x_labels = [p.period.label for p in points]
    chart.add(names["actual"], [p.actual for p in points], stroke_style={"width": 3})
    chart.add(names["forecast"], [p.forecast for p in points], stroke_style={"width": 3, "dasharray": "8,6"})
    if any(p.target is not None for p in points):
        chart.add(names["target"], [p.target for p in points], stroke=False, dots_size=6)
    if baseline is not None:
        chart.add(
            names["baseline"],
            [baseline] * len(points),
            show_dots=False,
            stroke_style={"width": 2, "dasharray": "2,4"},
        )
    return _accessible(chart.render(is_unicode=True), title)


def money_axis(values: Sequence[float]) -> list[float]:
    """Value-axis labels for amounts: 0 and up to five round steps (1, 2 or 5 times a power of ten)."""
    top = max(values, default=0.0)
    if top <= 0:
        return [0.0, 1.0]
    power = 10 ** math.floor(math.log10(top / 5)) if top >= 5 else 1
    step = float(next(m * power for m in (1, 2, 5, 10) if top / (m * power) <= 5))
    return [step * i for i in range(int(top // step) + 2)]


def groups_chart(
    title: str,
    values: Sequence[tuple[str, float]],
    shown: Callable[[float], str],
    counts: bool = False,
    money: bool = False,
) -> Markup:
    chart = _chart(pygal.HorizontalBar, title, shown)
    names = [name for name, _ in values]
    if money:  # long names would squeeze the bars: the table beside the chart has them whole
        chart.y_labels = money_axis([v for _, v in values])
        chart.x_label_rotation = 0
        names = [name if len(name) <= 24 else name[:23].rstrip() + "…" for name in names]
    if counts:
        chart.y_labels = count_axis([v for _, v in values])
    chart.show_legend = False
    chart.x_labels = names
    chart.add(title, [v for _, v in values])
    return _accessible(chart.render(is_unicode=True), title)
