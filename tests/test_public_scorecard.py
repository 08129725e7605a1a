"""The public scorecard page as a resident, a partner and a funder meet it: a running measurement
service (events on real Kafka, SQLite), read in headless Chromium at phone and desktop sizes, in
English and Spanish. Every figure on the page equals the scorecard API's for the same scorecard;
hidden figures are hidden on the page too; no count of 1 to 10 appears; the charts are drawn; the
pages pass axe-core's accessibility rules and work from the keyboard; one measure embeds in another
site's page (and nothing else may be framed). Screenshots go to build/screenshots/."""

from __future__ import annotations

import asyncio
import math
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from ach.measurement.v1 import measurement_pb2, measurement_pb2_grpc
from ach_measurement.catalog import load_measures
from ach_measurement.domain.scorecard import FIGURES as COLUMNS
from ach_measurement.main import load_sample_indicators
from ach_measurement.public_pages import Words, shown_change, shown_value
from ach_measurement.synthetic import events_of, sample_facts
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

from tests.browser import DESKTOP, PHONE, chromium
from tests.harness import ROOT, Stack, eventually, free_port
from tests.test_measurement import produce

pytestmark = pytest.mark.slow

SCREENSHOTS = ROOT / "build" / "screenshots"
FREE = measurement_pb2.CONFIDENTIALITY_STATUS_FREE
RATIO_MEASURE = "referred-within-7-days"
COUNT_MEASURE = "screenings"
SCORECARD = "jackson-shared-goals"

# Every figure cell of a page: its table row's keys and its column, number and text.
READ_CELLS = """() => [...document.querySelectorAll('td[data-column]')].map(td => {
  const tr = td.closest('tr');
  const section = td.closest('[data-dimension]');
  return {measure: tr.dataset.measure || '', group: tr.dataset.group || '', period: tr.dataset.period || '',
          dimension: section ? section.dataset.dimension : '', table: td.closest('table').className,
          column: td.dataset.column, value: td.dataset.value === undefined ? null : Number(td.dataset.value),
          text: td.textContent.trim()};
})"""


@contextmanager
def host_site(body: str) -> Iterator[str]:
    """Another web site (another origin), as a partner's own page that embeds a measure."""
    port = free_port()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://localhost:{port}/"
    finally:
        server.shutdown()
        server.server_close()


def get(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def check_scorecard(cells: list[dict[str, Any]], rows: list[Any], words: Words, group: str = "") -> int:
    """The page's scorecard rows against the API's rows: every column's number and text."""
    measures = {m.id: m for m in load_measures()}
    by_measure = {(c["measure"], c["column"]): c for c in cells if c["group"] == group and c["measure"]}
    checked = 0
    for row in rows:
        m = measures[row.measure_id]
        for column in COLUMNS:
            cell = by_measure[(row.measure_id, column)]
            if row.HasField(column):
                value = getattr(row, column)
                assert cell["value"] is not None and same(cell["value"], value), (row.measure_id, column)
                expected = (
                    shown_change(value) if column in ("variance_from_target", "baseline_change") else None
                )
                assert cell["text"] == (expected or shown_value(m, value, words)), (row.measure_id, column)
            else:
                assert cell["value"] is None, (row.measure_id, column)
                hidden = column == "current_actual" and row.status != FREE
                assert cell["text"] == (words("hidden") if hidden else "—"), (row.measure_id, column)
            checked += 1
    # Nothing on the page that the API does not show.
    assert {c["measure"] for c in cells if c["group"] == group and c["measure"]} == {
        r.measure_id for r in rows
    }
    return checked


def no_small_counts(cells: list[dict[str, Any]]) -> None:
    """No 1 to 10 where a count stands: counted and out-of columns, and every figure of a count measure."""
    counts = {m.id for m in load_measures() if m.calculation.value == "count"}
    for c in cells:
        is_count = c["column"] in ("numerator", "denominator") or (
            c["measure"] in counts and c["column"] not in ("variance_from_target", "baseline_change")
        )
        if is_count and c["value"] is not None:
            assert not 1 <= c["value"] <= 10, c
        if is_count:
            assert not re.fullmatch(r"([1-9]|10)", c["text"].split(" ")[0]), c


def chart_drawn(page: Page) -> None:
    """The turn-the-curve chart: an SVG with a drawn line of real length, on the page's width."""
    drawn = page.evaluate(
        """() => { const svg = document.querySelector('figure.chart svg');
                   const box = svg.getBoundingClientRect();
                   const lines = [...svg.querySelectorAll('path.line')].map(p => p.getTotalLength());
                   return {width: box.width, height: box.height, lines: lines,
                           overflow: document.documentElement.scrollWidth - window.innerWidth}; }"""
    )
    assert drawn["width"] > 200 and drawn["height"] > 100, drawn
    assert max(drawn["lines"]) > 100, drawn
    assert drawn["overflow"] <= 0, f"the page is wider than the screen: {drawn}"


def accessible(page: Page, axe: Axe) -> None:
    results = axe.run(page)
    assert results.violations_count == 0, results.generate_report()
    assert len(results.response["passes"]) > 20  # the rules really ran (contrast, labels, tables...)


def keyboard(page: Page) -> None:
    """The first Tab reaches the skip link and Enter takes the reader to the figures."""
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    for _ in range(3):
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.tagName") in {"A", "SELECT", "BUTTON", "DIV", "TEXTAREA"}


def test_the_public_page_shows_the_apis_figures_in_english_and_spanish_on_phones_and_desktops(
    make_stack: Callable[[str], Stack], kafka_bootstrap: str
) -> None:
    facts = sample_facts(seed=5, screenings=1500, months=4, prefix="pub-")
    stack = make_stack("sqlite")
    service = stack.add("measurement")
    asyncio.run(load_sample_indicators(stack.database_urls["measurement"]))
    stack.start("measurement")
    asyncio.run(produce(kafka_bootstrap, events_of(facts)))
    stored = len(facts.screenings) + len(facts.demographics) + len(facts.needs) + len(facts.referrals)
    stored += len(facts.changes) + len(facts.reroutes)
    tables = (
        "screening",
        "screening_demographics",
        "need",
        "referral",
        "referral_change",
        "referral_reroute",
    )
    count = "SELECT " + " + ".join(f"(SELECT COUNT(*) FROM {t}_fact)" for t in tables)
    eventually(lambda: stack.count_rows("measurement", count) == stored or None, 90, "every fact stored")
    all_in = datetime.now(UTC)
    base = f"http://127.0.0.1:{service.env['HTTP_PORT']}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    residents = {s.resident_id for s in facts.screenings}

    with stack.channel("measurement") as channel:
        api = measurement_pb2_grpc.MeasurementServiceStub(channel)

        def scorecard(**fields: str) -> measurement_pb2.Scorecard:
            answer: measurement_pb2.Scorecard = api.GetScorecard(
                measurement_pb2.GetScorecardRequest(**fields), timeout=30
            )
            return answer

        # The figures settle once every fact is in (the page and the API read the same publication).
        def settled() -> measurement_pb2.Scorecard | None:
            answer = scorecard()
            return answer if answer.as_of.ToDatetime(tzinfo=UTC) > all_in else None

        card = eventually(settled, 60, "figures computed over every fact")
        groups = sorted(
            {
                f.group
                for m in (RATIO_MEASURE, COUNT_MEASURE)
                for p in api.GetMeasureFigures(
                    measurement_pb2.GetMeasureFiguresRequest(measure_id=m, dimension="race_ethnicity"),
                    timeout=30,
                ).periods
                for b in p.breakdowns
                for f in b.figures
            }
        )
        by_group = {g: scorecard(dimension="race_ethnicity", group=g) for g in groups}
        population = scorecard(scorecard_id=SCORECARD)
        ratio = api.GetMeasureFigures(
            measurement_pb2.GetMeasureFiguresRequest(measure_id=RATIO_MEASURE), timeout=30
        )
        assert population.rows and len(groups) >= 5

        axe = Axe()
        with chromium() as browser:
            for lang in ("en", "es"):
                words = Words(lang)
                for size_name, size in (("phone", PHONE), ("desktop", DESKTOP)):
                    page = browser.new_page(viewport=size, locale="es-US" if lang == "es" else "en-US")
                    shot = SCREENSHOTS / f"{lang}-{size_name}"

                    page.goto(f"{base}/{lang}/")
                    assert page.evaluate("document.documentElement.lang") == lang
                    page.screenshot(path=f"{shot}-scorecard.png", full_page=True)
                    cells = page.evaluate(READ_CELLS)
                    assert check_scorecard(cells, list(card.rows), words) == len(card.rows) * len(COLUMNS)
                    no_small_counts(cells)
                    accessible(page, axe)
                    keyboard(page)
                    html = page.content()
                    assert not any(r in html for r in residents)

                    # The group view: the choice made with the form, as a reader would.
                    page.select_option("#dimension", "race_ethnicity")
                    page.click("button[type=submit]")
                    page.wait_for_url(re.compile(r"dimension=race_ethnicity"))
                    page.screenshot(path=f"{shot}-by-race-ethnicity.png")
                    cells = page.evaluate(READ_CELLS)
                    for group, answer in by_group.items():
                        check_scorecard(cells, list(answer.rows), words, group)
                    no_small_counts(cells)

                    page.goto(f"{base}/{lang}/measures/{RATIO_MEASURE}")
                    page.screenshot(path=f"{shot}-measure.png", full_page=True)
                    chart_drawn(page)
                    cells = page.evaluate(READ_CELLS)
                    curve = {
                        c["period"]: c for c in cells if c["table"] == "curve" and c["column"] == "actual"
                    }
                    assert set(curve) >= {p.period for p in ratio.periods}
                    for p in ratio.periods:
                        if p.total.HasField("value"):
                            assert same(curve[p.period]["value"], p.total.value), p.period
                        else:
                            assert curve[p.period]["value"] is None, p.period
                    shown_for = page.get_attribute("[data-breakdown-period]", "data-breakdown-period")
                    period = next(p for p in ratio.periods if p.period == shown_for)
                    for b in period.breakdowns:
                        if b.dimension in ("partner", "site", "source_partner"):
                            assert not [c for c in cells if c["dimension"] == b.dimension]
                            continue
                        for f in b.figures:
                            cell = next(
                                c
                                for c in cells
                                if c["dimension"] == b.dimension
                                and c["group"] == f.group
                                and c["column"] == "value"
                            )
                            if f.HasField("value"):
                                assert same(cell["value"], f.value), (b.dimension, f.group)
                            else:
                                assert cell["value"] is None and cell["text"] == words("hidden")
                    no_small_counts(cells)
                    accessible(page, axe)

                    page.goto(f"{base}/{lang}/measures/{COUNT_MEASURE}")
                    chart_drawn(page)
                    no_small_counts(page.evaluate(READ_CELLS))
                    # Nor on the charts of a count: axis labels, values, tooltips.
                    drawn = page.evaluate(
                        "[...document.querySelectorAll('svg text, svg desc.value')].map(t => t.textContent)"
                    )
                    period = re.compile(r"\d{4}(-\d{2}|-Q\d)?")
                    numbers = [
                        float(n.replace(",", ""))
                        for t in drawn
                        if not period.fullmatch(t.strip())
                        for n in re.findall(r"\d[\d,]*(?:\.\d+)?", t)
                    ]
                    assert numbers and not [n for n in numbers if 1 <= n <= 10], drawn

                    page.goto(f"{base}/{lang}/scorecards/{SCORECARD}")
                    page.screenshot(path=f"{shot}-population.png", full_page=True)
                    check_scorecard(page.evaluate(READ_CELLS), list(population.rows), words)
                    page.close()

            # A partner's site embeds one measure; the scorecard itself may not be framed.
            embed = f"{base}/es/embed/{RATIO_MEASURE}"
            framed = (
                '<!doctype html><html lang="en"><title>Partner</title>'
                f'<iframe src="{embed}" width="800" height="700"></iframe><iframe src="{base}/es/"></iframe>'
            )
            with host_site(framed) as site:
                page = browser.new_page(viewport=DESKTOP)
                page.goto(site)
                frames = {f.url: f for f in page.frames}
                eventually(
                    lambda: ((f := page.frame(url=embed)) and f.locator("svg").count()) or None, 10, "embed"
                )
                inside = page.frame(url=embed)
                assert inside is not None and "7 días" in inside.locator("h1").inner_text()
                page.screenshot(path=str(SCREENSHOTS / "es-embedded-in-a-partner-site.png"))
                blocked = page.frame(url=f"{base}/es/")
                assert blocked is None or blocked.locator("h1").count() == 0, frames
                page.close()

    # Bad input is a clear page, never a trace; every page says what may frame it.
    status, headers, body = get(f"{base}/en/?dimension=nope")
    assert status == 400 and "dimension" in body and "Traceback" not in body
    assert get(f"{base}/en/measures/no-such-measure")[0] == 404
    assert get(f"{base}/fr/")[0] == 404
    status, _, body = get(f"{base}/en/?period=%3Cscript%3Ealert(1)%3C/script%3E")
    assert status == 400 and "<script>" not in body and "period" in body  # named, never echoed
    assert get(f"{base}/es/?dimension=%00")[0] == 400
    assert get(f"{base}/en/measures/{'x' * 300}")[0] == 404
    assert get(f"{base}/en/measures/{RATIO_MEASURE}?period=" + "9" * 200)[0] == 400
    status, headers, _ = get(f"{base}/en/")
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "frame-ancestors *" in get(embed)[1]["content-security-policy"]
    assert get(base + "/")[0] == 200  # the redirect to a language is followed
    # What the AchPublicPageSlow alert reads: the page's latency histogram, by the service.
    metrics = get(f"http://127.0.0.1:{service.env['METRICS_PORT']}/metrics")[2]
    assert "http_server_duration_milliseconds_bucket" in metrics
