"""The public scorecard page: the network's results for residents, partners and funders, with no
login, in English and Spanish, as plain server-rendered HTML (charts drawn on the server, a table
behind each, no script).

Only what the API publishes reaches it: the network's publication (small cells suppressed by the
same decision over every measure), never a partner's own scope, and the same scorecard rows as
``GetScorecard`` (``scorecards``). Breakdowns by partner or site stay with the partners (the API):
the page breaks figures down by the community's groups. A page is rendered once per publication
and kept until the figures change.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import yaml
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ach_measurement import charts, scorecards
from ach_measurement.catalog import ScorecardDefinition
from ach_measurement.domain.budget import Line, Money, PublicBudget, public_budget
from ach_measurement.domain.definitions import Calculation, Measure, MeasureUnit, RbaKind
from ach_measurement.domain.facts import PARTY_DIMENSIONS
from ach_measurement.domain.periods import is_period_label
from ach_measurement.domain.publication import Figure, MeasureFigures, PeriodFigures, Publication
from ach_measurement.domain.scorecard import FIGURES, Direction, forecast
from ach_measurement.domain.suppression import SMALLEST_SHOWN, Status
from ach_measurement.publications import NETWORK, Publications

log = logging.getLogger(__name__)

PAGES = Path(__file__).parent / "pages"
LANGUAGES = ("en", "es")
KINDS = (RbaKind.HOW_MUCH, RbaKind.HOW_WELL, RbaKind.BETTER_OFF)
KEPT_PAGES = 512  # rendered pages kept per publication, the most recently read
MAX_PARAMETER = 100
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "public, max-age=60",
}
# The embeddable measure may be framed by any partner's site; everything else may not.
EMBED_HEADERS = HEADERS | {
    "Content-Security-Policy": HEADERS["Content-Security-Policy"].replace(
        "frame-ancestors 'none'", "frame-ancestors *"
    )
}


class BadParameter(Exception):
    def __init__(self, name: str, expected: str) -> None:
        self.name, self.expected = name, expected


class PageNotFound(Exception):
    pass


@cache
def texts() -> dict[str, dict[str, dict[str, str]]]:
    loaded: dict[str, dict[str, dict[str, str]]] = yaml.safe_load((PAGES / "texts.yaml").read_text())
    return loaded


@dataclass(frozen=True)
class Words:
    """The page's words in one language."""

    lang: str

    def __call__(self, key: str) -> str:
        return texts()["ui"][key][self.lang]

    def of(self, table: str, code: str) -> str:
        entry = texts()[table].get(code)
        return entry[self.lang] if entry else code

    def text(self, values: Mapping[str, str]) -> str:
        return values.get(self.lang) or values.get("en", "")


# ---- numbers as the page shows them ---------------------------------------------------------------


def dollars(cents: int, words: Words) -> str:
    """Whole dollars, grouped as the language writes them ($1,234 and $1.234)."""
    text = f"{round(cents / 100):,}"
    return "$" + (text.replace(",", ".") if words.lang == "es" else text)


def shown_value(measure: Measure, value: float | None, words: Words) -> str:
    """A figure in the measure's unit. A count-like number below 11 that is not a published count
    (a forecast or a target of a count measure) reads "fewer than 11": no 1 to 10 where a count
    would stand."""
    if value is None or math.isnan(value):
        return "—"
    if _counted(measure):
        if 0 < value < SMALLEST_SHOWN:
            return words("fewer_than_11")
        return f"{round(value):,}"
    if measure.unit is MeasureUnit.PERCENT:
        return f"{value:.1f}%"
    if measure.unit is MeasureUnit.INDEX:
        return f"{value:,.2f}"
    return f"{value:,.1f}"


def shown_change(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:+.1f}%"


@dataclass(frozen=True)
class Cell:
    text: str
    value: float | None = None  # the published number, for readers and the page's test
    column: str = ""
    note: str = ""


@dataclass(frozen=True)
class TrendView:
    arrow: str
    text: str
    good: bool | None


@dataclass(frozen=True)
class RowView:
    measure_id: str
    name: str
    href: str
    group: str
    group_label: str
    period: str
    cells: tuple[Cell, ...]
    trend: TrendView
    provisional: bool
    hidden: bool


@dataclass(frozen=True)
class Section:
    title: str
    rows: tuple[RowView, ...]


ARROWS = {Direction.UP: "↑", Direction.DOWN: "↓", Direction.FLAT: "→", Direction.NONE: ""}


def row_view(row: scorecards.Row, words: Words, href: str, group: str = "") -> RowView:
    m, c = row.measure, row.columns
    hidden = row.status is not Status.FREE
    cells = []
    for column in FIGURES:
        value = getattr(c, column)
        if column in ("variance_from_target", "baseline_change"):
            text = shown_change(value)
        elif column == "current_actual" and hidden:
            text = words("hidden")
        else:
            text = shown_value(m, value, words)
        cells.append(Cell(text, value, column))
    t = c.trend
    trend_text = words(t.direction.value)
    if t.direction in (Direction.UP, Direction.DOWN):
        many = words("periods") if t.periods != 1 else words("one_period")
        trend_text += f", {words('good') if t.good else words('bad')}, {t.periods} {many}"
    return RowView(
        measure_id=m.id,
        name=words.text(m.name),
        href=href,
        group=group,
        group_label=words.of("groups", group) if group else words("whole_network"),
        period=c.period.label,
        cells=tuple(cells),
        trend=TrendView(ARROWS[t.direction], trend_text, t.good),
        provisional=row.provisional,
        hidden=hidden,
    )


# ---- the pages ----------------------------------------------------------------------------------


@dataclass
class _Kept:
    publication: Publication | None = None
    pages: OrderedDict[tuple[Any, ...], str] = field(default_factory=OrderedDict)


class MoneySource(Protocol):
    """The fund's posted money, as measurement's projection holds it."""

    async def version(self) -> object: ...
    async def facts(self) -> Sequence[Money]: ...


class PublicPages:
    def __init__(
        self,
        publications: Publications,
        cards: Sequence[ScorecardDefinition],
        public_url: str,
        place_names: Mapping[str, str],
        money: MoneySource | None = None,
    ) -> None:
        self._money = money
        self._budget_pages: dict[str, tuple[object, str]] = {}  # lang -> (money's version, page)
        self._publications = publications
        self._cards = {c.id: c for c in cards}
        self._public_url = public_url.rstrip("/")
        self._places = place_names
        self._kept = _Kept()
        self._templates = Environment(
            loader=FileSystemLoader(PAGES), autoescape=select_autoescape(["html"]), trim_blocks=True
        )
        self._css = (PAGES / "page.css").read_text()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/", self.home),
                Route("/static/page.css", self.css),
                Route("/{lang}/", self.page(self.index)),
                Route("/{lang}/scorecards/{card}", self.page(self.scorecard)),
                Route("/{lang}/measures/{measure}", self.page(self.measure)),
                Route("/{lang}/embed/{measure}", self.page(self.embed, EMBED_HEADERS)),
                Route("/{lang}/budget", self.budget),
            ]
        )

    async def home(self, request: Request) -> Response:
        accepted = request.headers.get("accept-language", "")[:200].lower()
        first = accepted.split(",")[0].strip()
        return RedirectResponse("/es/" if first.startswith("es") else "/en/", status_code=302)

    async def css(self, request: Request) -> Response:
        return Response(self._css, media_type="text/css", headers=HEADERS)

    def page(
        self,
        render: Callable[[Publication, Words, Request], str],
        headers: Mapping[str, str] = HEADERS,
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            lang = request.path_params["lang"]
            if lang not in LANGUAGES:
                return self._error(Words("en"), 404, "not_found", "")
            words = Words(lang)
            publication = await self._publications.current(NETWORK)
            if self._kept.publication is not publication:
                self._kept = _Kept(publication)
            try:
                key = (render.__name__, lang, *self._checked(request))
                pages = self._kept.pages
                html = pages.get(key)
                if html is None:
                    html = pages[key] = render(publication, words, request)
                    if len(pages) > KEPT_PAGES:
                        pages.popitem(last=False)  # the least recently read
                else:
                    pages.move_to_end(key)
            except BadParameter as exc:
                return self._error(words, 400, "bad_request", f"{exc.name}: {exc.expected}")
            except PageNotFound:
                return self._error(words, 404, "not_found", "")
            except Exception as exc:  # the reader gets a page, the log the kind (never a value)
                log.error("public page failed: %s", type(exc).__name__, extra={"page": render.__name__})
                return self._error(words, 500, "bad_request", "")
            return HTMLResponse(html, headers=dict(headers))

        return endpoint

    def _checked(self, request: Request) -> tuple[str, ...]:
        """The parameters a page depends on, bounded (the cache key holds nothing else)."""
        values = [request.path_params.get(k, "") for k in ("card", "measure")]
        for name in ("period", "dimension", "geography"):
            value = request.query_params.get(name, "")
            if len(value) > MAX_PARAMETER or "\x00" in value:
                raise BadParameter(name, f"at most {MAX_PARAMETER} characters")
            values.append(value)
        if any(len(v) > MAX_PARAMETER or "\x00" in v for v in values[:2]):
            raise PageNotFound
        return tuple(values)

    async def budget(self, request: Request) -> Response:
        """The Wellness Fund's public budget, from the fund's posted transactions (small cells
        hidden as everywhere)."""
        lang = request.path_params["lang"]
        if lang not in LANGUAGES or self._money is None:
            return self._error(Words(lang if lang in LANGUAGES else "en"), 404, "not_found", "")
        words = Words(lang)
        try:
            # Rendered again only when money moved (or the day turned): the page has no login.
            today = datetime.now(UTC).date()
            version = (await self._money.version(), today)
            kept = self._budget_pages.get(lang)
            if kept is not None and kept[0] == version:
                html = kept[1]
            else:
                html = self._render_budget(public_budget(await self._money.facts(), today), words)
                self._budget_pages[lang] = (version, html)
        except Exception as exc:  # the reader gets a page, the log the kind (never a value)
            log.error("public page failed: %s", type(exc).__name__, extra={"page": "budget"})
            return self._error(words, 500, "bad_request", "")
        return HTMLResponse(html, headers=dict(HEADERS))

    def _render_budget(self, b: PublicBudget, words: Words) -> str:
        def lines(items: Sequence[Line], table: str) -> list[dict[str, Any]]:
            return [
                {
                    "code": line.label,
                    "label": words.of(table, line.label),
                    "cents": line.cents,
                    "text": dollars(line.cents, words) if line.cents is not None else words("hidden"),
                }
                for line in items
            ]

        def chart(title: str, items: Sequence[Line], table: str) -> Markup | None:
            shown = [(words.of(table, line.label), line.cents / 100) for line in items if line.cents]
            if not shown:
                return None
            return charts.groups_chart(title, shown, lambda v: dollars(round(v * 100), words), money=True)

        charts_by = {
            "money_in": chart(words("money_in"), b.money_in, "sources"),
            "money_out": chart(words("money_out"), b.spent_by_purpose, "purposes"),
            "money_by_need": chart(words("money_by_need"), b.spent_by_need_domain, "groups"),
        }
        runway = (
            f"{b.runway_months:.1f}".replace(".", "," if words.lang == "es" else ".")
            if b.runway_months is not None
            else words("no_spending")
        )
        return self._render(
            "budget.html",
            words,
            title=words("budget_title"),
            path=f"/{words.lang}/budget",
            year=b.year,
            charts=charts_by,
            money_in=lines(b.money_in, "sources"),
            money_in_total=dollars(b.money_in_total, words) if b.money_in else None,
            spent=lines(b.spent_by_purpose, "purposes"),
            spent_total=dollars(b.spent_total, words)
            if b.spent_total is not None and b.spent_by_purpose
            else None,
            by_need=lines(b.spent_by_need_domain, "groups"),
            cash_on_hand=dollars(b.cash_on_hand, words),
            monthly_spending=dollars(b.monthly_spending, words),
            runway=runway,
            runs_out=b.runs_out,
        )

    def _error(self, words: Words, status: int, title: str, detail: str) -> Response:
        html = self._templates.get_template("error.html").render(
            w=words, title=words(title), detail=detail, alternate=f"/{other(words.lang)}/"
        )
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    # -- the network's scorecard ----------------------------------------------------------------

    def index(self, publication: Publication, words: Words, request: Request) -> str:
        period = self._period_label(request)
        dimension = request.query_params.get("dimension", "")
        measures = [m for m in self._publications.measures if not m.imported]
        dimensions = sorted({d for m in measures for d in m.breakdowns if d not in PARTY_DIMENSIONS})
        if dimension and dimension not in dimensions:
            raise BadParameter("dimension", "one of " + ", ".join(dimensions))
        sections = []
        for kind in KINDS:
            rows: list[RowView] = []
            for m in (m for m in measures if m.kind is kind):
                href = f"/{words.lang}/measures/{m.id}"
                figures = publication.measures[m.id]
                if not dimension:
                    row = scorecards.row_of(figures, period, "", "")
                    if row is not None:
                        rows.append(row_view(row, words, href))
                    continue
                for group in groups_of(figures, dimension):
                    row = scorecards.row_of(figures, period, dimension, group)
                    if row is not None:
                        rows.append(row_view(row, words, href, group))
            if rows:
                sections.append(Section(words(kind.value), tuple(rows)))
        return self._render(
            "index.html",
            words,
            title=words("network_scorecard"),
            sections=sections,
            cards=[(c.id, words.text(c.name)) for c in self._cards.values()],
            dimensions=[(d, words.of("dimensions", d)) for d in dimensions],
            dimension=dimension,
            period=period,
            as_of=publication.as_of,
            path=f"/{words.lang}/",
            query=_query(period=period, dimension=dimension),
        )

    def scorecard(self, publication: Publication, words: Words, request: Request) -> str:
        card = self._cards.get(request.path_params["card"])
        if card is None:
            raise PageNotFound
        period = self._period_label(request)
        ids, geography = scorecards.measure_ids(self._publications.measures, card, ())
        rows = [
            row_view(
                r,
                words,
                f"/{words.lang}/measures/{r.measure.id}" + (f"?geography={geography}" if geography else ""),
            )
            for r in scorecards.rows(publication, self._publications.by_id, ids, geography, period)
        ]
        return self._render(
            "index.html",
            words,
            title=words.text(card.name),
            place=self._places.get(geography, geography),
            sections=[Section(words("population-indicator"), tuple(rows))] if rows else [],
            cards=[],
            dimensions=[],
            dimension="",
            period=period,
            as_of=publication.as_of,
            path=f"/{words.lang}/scorecards/{card.id}",
            query=_query(period=period),
        )

    # -- one measure ----------------------------------------------------------------------------

    def _measure_figures(self, publication: Publication, request: Request) -> tuple[MeasureFigures, str]:
        measure = self._publications.by_id.get(request.path_params["measure"])
        if measure is None:
            raise PageNotFound
        geography = request.query_params.get("geography", "")
        if measure.imported:
            places = sorted(g for (mid, g) in publication.indicators if mid == measure.id)
            if geography not in places:
                raise BadParameter("geography", "one of " + ", ".join(places or ["(none imported)"]))
        elif geography:
            raise BadParameter("geography", "only population indicators are read by place")
        return scorecards.figures_of(publication, measure, geography), geography

    def _curve(self, figures: MeasureFigures, words: Words) -> tuple[Markup, list[charts.CurvePoint]]:
        m = figures.measure
        series = figures.series()
        points = [
            charts.CurvePoint(p.period, p.total.value, None, m.targets.get(p.period)) for p in figures.periods
        ]
        if points:
            last = points[-1].period
            ahead = [last.shifted(k) for k in range(1, charts.FORECAST_AHEAD + 1)]
            path = [forecast(series, p) for p in ahead]
            if path[0] is not None:
                points[-1] = charts.CurvePoint(last, points[-1].actual, points[-1].actual, points[-1].target)
                points += [
                    charts.CurvePoint(p, None, _drawable(m, v), m.targets.get(p))
                    for p, v in zip(ahead, path, strict=True)
                ]
        names = {k: words(k) for k in ("actual", "forecast", "target", "baseline")}
        chart = charts.turn_the_curve(
            f"{words.text(m.name)}: {words('chart_title')}",
            points,
            m.baseline[1] if m.baseline else None,
            names,
            lambda v: shown_value(m, v, words),
            counts=_counted(m),
        )
        return chart, points

    def _details(
        self, figures: MeasureFigures, words: Words, request: Request, geography: str
    ) -> dict[str, Any]:
        m = figures.measure
        chart, points = self._curve(figures, words)
        by_period = {p.period: p for p in figures.periods}
        table = [
            {
                "period": pt.period.label,
                "actual": _figure_cell(m, by_period[pt.period].total, words)
                if pt.period in by_period
                else None,
                "forecast": Cell(shown_value(m, pt.forecast, words), pt.forecast, "forecast")
                if pt.forecast is not None and pt.period not in by_period
                else None,
                "target": Cell(shown_value(m, pt.target, words), pt.target, "target")
                if pt.target is not None
                else None,
                "provisional": pt.period in by_period and by_period[pt.period].provisional,
            }
            for pt in points
        ]
        row = scorecards.row_of(figures, "", "", "", geography)
        query = f"?geography={geography}" if geography else ""
        return {
            "measure": m,
            "name": words.text(m.name),
            "description": words.text(m.description),
            "chart": chart,
            "table": table,
            "row": row_view(row, words, f"/{words.lang}/measures/{m.id}{query}") if row else None,
            "baseline": (m.baseline[0].label, shown_value(m, m.baseline[1], words)) if m.baseline else None,
            "place": self._places.get(geography, geography),
            "query": query,
        }

    def measure(self, publication: Publication, words: Words, request: Request) -> str:
        figures, geography = self._measure_figures(publication, request)
        m = figures.measure
        period_label = self._period_label(request)
        chosen = _breakdown_period(figures, period_label)
        breakdowns = []
        if chosen is not None:
            for dimension, found in sorted(chosen.groups.items()):
                if dimension in PARTY_DIMENSIONS:
                    continue
                rows = [(words.of("groups", f.group), f, _figure_cell(m, f, words)) for f in found]
                published = [(label, f.value) for label, f, _ in rows if f.value is not None]
                title = f"{words.text(m.name)}, {words('by')} {words.of('dimensions', dimension)}"
                breakdowns.append(
                    {
                        "dimension": dimension,
                        "label": words.of("dimensions", dimension),
                        "rows": [
                            {
                                "group": f.group,
                                "label": label,
                                "value": cell,
                                "numerator": _count_cell(f.numerator, "numerator", words),
                                "denominator": _count_cell(f.denominator, "denominator", words),
                                "interval": _interval(m, f, words),
                                "unstable": f.unstable,
                            }
                            for label, f, cell in rows
                        ],
                        "chart": charts.groups_chart(
                            title, published, lambda v: shown_value(m, v, words), counts=_counted(m)
                        )
                        if published
                        else None,
                        "disparities": _disparities(m, chosen, dimension, words),
                    }
                )
        details = self._details(figures, words, request, geography)
        embed_path = f"/{words.lang}/embed/{m.id}{details['query']}"
        return self._render(
            "measure.html",
            words,
            title=details["name"],
            **details,
            breakdown_period=chosen.period.label if chosen else "",
            periods=[p.period.label for p in figures.periods],
            breakdowns=breakdowns,
            kind=words(m.kind.value),
            unit=words.of("units", m.unit.value),
            polarity=words(m.polarity.value),
            source=words.text(m.source),
            notes=words.text(m.notes),
            version=max((p.definition_version for p in figures.periods), default=m.version),
            embed=f'<iframe src="{self._public_url}{embed_path}" title="{details["name"]}" '
            'width="100%" height="640" style="border:0" loading="lazy"></iframe>',
            as_of=publication.as_of,
            path=f"/{words.lang}/measures/{m.id}",
        )

    def embed(self, publication: Publication, words: Words, request: Request) -> str:
        figures, geography = self._measure_figures(publication, request)
        details = self._details(figures, words, request, geography)
        return self._render(
            "embed.html",
            words,
            title=details["name"],
            **details,
            as_of=publication.as_of,
            full=f"{self._public_url}/{words.lang}/measures/{figures.measure.id}{details['query']}",
            path=f"/{words.lang}/embed/{figures.measure.id}",
        )

    # -- helpers --------------------------------------------------------------------------------

    def _period_label(self, request: Request) -> str:
        label = request.query_params.get("period", "")
        if label and not is_period_label(label, {m.period for m in self._publications.measures}):
            raise BadParameter("period", "a month (YYYY-MM), a quarter (YYYY-Qn) or a year (YYYY)")
        return label

    def _render(self, template: str, words: Words, **values: Any) -> str:
        alternate = f"/{other(words.lang)}{values['path'][3:]}{values.get('query', '')}"
        return self._templates.get_template(template).render(w=words, alternate=alternate, **values)


def other(lang: str) -> str:
    return "es" if lang == "en" else "en"


def _query(**values: str) -> str:
    given = [f"{k}={v}" for k, v in values.items() if v]
    return "?" + "&".join(given) if given else ""


def _counted(m: Measure) -> bool:
    return m.calculation is Calculation.COUNT or m.unit is MeasureUnit.COUNT


def _drawable(m: Measure, value: float | None) -> float | None:
    """A forecast point as the chart may draw it: not a count of 1 to 10 (the table says "fewer
    than 11")."""
    if value is None:
        return None
    if _counted(m) and 0 < value < SMALLEST_SHOWN:
        return None
    return value


def groups_of(figures: MeasureFigures, dimension: str) -> list[str]:
    return sorted({f.group for p in figures.periods for f in p.groups.get(dimension, ())})


def _breakdown_period(figures: MeasureFigures, label: str) -> PeriodFigures | None:
    """The period the groups are shown for: the one asked for, else the latest whose total is
    published and whose people have had their full time (else the latest with a total)."""
    if label:
        for p in figures.periods:
            if p.period.label == label:
                return p
        return None
    shown = [p for p in figures.periods if p.total.value is not None]
    settled = [p for p in shown if not p.provisional]
    chosen = settled or shown
    return chosen[-1] if chosen else None


def _figure_cell(m: Measure, f: Figure, words: Words) -> Cell:
    if f.status is not Status.FREE:
        return Cell(words("hidden"), None, "value", "hidden")
    return Cell(shown_value(m, f.value, words), f.value, "value", "unstable" if f.unstable else "")


def _count_cell(n: int | None, column: str, words: Words) -> Cell:
    # Published counts are 0 or at least 11 (suppression); a hidden one is None.
    return Cell("—" if n is None else f"{n:,}", None if n is None else float(n), column)


def _interval(m: Measure, f: Figure, words: Words) -> str:
    if f.low is None or f.high is None or m.calculation is Calculation.COUNT:
        return ""
    return f"{shown_value(m, f.low, words)} \N{EN DASH} {shown_value(m, f.high, words)}"


def _disparities(m: Measure, p: PeriodFigures, dimension: str, words: Words) -> dict[str, Any] | None:
    d = p.disparities.get(dimension)
    if d is None:
        return None
    points = m.unit is MeasureUnit.PERCENT
    return {
        "reference": words.of("groups", d.reference_group),
        "groups": [
            {
                "label": words.of("groups", g.group),
                "difference": f"{g.rate_difference:+.1f}" + (" pts" if points else ""),
                "ratio": "—" if g.rate_ratio is None else f"{g.rate_ratio:.2f}",
            }
            for g in d.groups
            if g.group != d.reference_group
        ],
        "index": None if d.index_of_disparity is None else f"{d.index_of_disparity:.1f}",
        "attributable": None
        if d.attributable_proportion is None
        else f"{d.attributable_proportion * 100:.1f}%",
    }
