"""The public scorecard page against the scorecard API, same figures, same run: a running
measurement service (SQLite) holding a made-up network's facts; the network's scorecard by race and
ethnicity (every counted measure with that breakdown x its 8 groups) fetched as one page over HTTP,
beside the same rows from ``GetScorecard`` (one call per group, over the same mutual TLS the
partners use). BENCH_PAGE_CALLS requests of each, interleaved; p50 and p99. The page is rendered
once per publication and served from memory after: its first render (in-process, without the
kept page) is reported too."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from ach.measurement.v1 import measurement_pb2, measurement_pb2_grpc
from ach_measurement import scorecards
from ach_measurement.catalog import load_measures, load_scorecards
from ach_measurement.domain.facts import assemble
from ach_measurement.domain.publication import Publication, publish
from ach_measurement.indicator_imports import network_geographies, place_names
from ach_measurement.public_pages import PublicPages, Words, groups_of
from ach_measurement.synthetic import events_of, sample_facts
from ach_platform.dev_pki import create as create_pki

from bench.results import Figure
from bench.stacks import bench_stack, p99
from tests.harness import eventually
from tests.test_measurement import produce

DIMENSION = "race_ethnicity"


class _Fixed:
    """The publications of a service that has computed its figures: one publication."""

    def __init__(self, publication: Publication) -> None:
        self.measures = tuple(load_measures())
        self.by_id = {m.id: m for m in self.measures}
        self._publication = publication

    async def current(self, partner_id: str = "") -> Publication:
        return self._publication


def render_figures(facts_seed: int, screenings: int, months: int, rounds: int) -> list[Figure]:
    """The page's first render (nothing kept) beside the API's rows for the same figures, in-process."""
    facts = sample_facts(seed=facts_seed, screenings=screenings, months=months, prefix="page-")
    measures = load_measures()
    publication = publish(measures, assemble(facts), ZoneInfo("America/Los_Angeles"), datetime.now(UTC))
    fixed = _Fixed(publication)
    pages = PublicPages(
        fixed,  # type: ignore[arg-type]
        load_scorecards(measures, network_geographies()),
        "http://bench",
        place_names(),
    )

    class Request:
        path_params = {"lang": "en"}
        query_params = {"dimension": DIMENSION}

    ids = [m.id for m in measures if not m.imported]
    groups = sorted({g for m in ids for g in groups_of(publication.measures[m], DIMENSION)})
    pages.index(publication, Words("en"), Request())  # type: ignore[arg-type]  # templates compiled
    page_ms, rows_ms = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        pages.index(publication, Words("en"), Request())  # type: ignore[arg-type]
        page_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        for g in groups:
            scorecards.rows(publication, fixed.by_id, ids, "", "", DIMENSION, g)
        rows_ms.append((time.perf_counter() - started) * 1000)
    return [
        Figure(f"page.first_render_p50 (in-process, {len(groups)} groups)", statistics.median(page_ms), "ms"),
        Figure(
            f"page.first_render_p99 (in-process, {len(groups)} groups)",
            p99(page_ms),
            "ms",
            "scorecard rows for every group, in-process",
            p99(rows_ms),
        ),
    ]


def run(bootstrap: str) -> list[Figure]:
    calls = int(os.environ.get("BENCH_PAGE_CALLS", "300"))
    screenings = int(os.environ.get("BENCH_PAGE_SCREENINGS", "3000"))
    months = 6
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        os.environ["ACH_KAFKA_NAMESPACE"] = namespace
        pki = create_pki(work / "pki", ["ach-backbone"])
        os.environ["ACH_PKI_DIR"] = str(pki.directory)
        facts = sample_facts(seed=11, screenings=screenings, months=months, prefix="page-")
        with bench_stack(
            work, "sqlite", ["identity", "measurement"], bootstrap, namespace, pki, None
        ) as stack:
            stack.start("measurement")
            asyncio.run(produce(bootstrap, events_of(facts)))
            eventually(
                lambda: (
                    stack.count_rows("measurement", "SELECT COUNT(*) FROM referral_fact")
                    == len(facts.referrals)
                    or None
                ),
                120,
                "facts stored",
            )
            all_in = datetime.now(UTC)
            base = f"http://127.0.0.1:{stack.services['measurement'].env['HTTP_PORT']}"
            with stack.channel("measurement") as channel:
                api = measurement_pb2_grpc.MeasurementServiceStub(channel)

                def scorecard(group: str = "") -> measurement_pb2.Scorecard:
                    request = measurement_pb2.GetScorecardRequest(
                        dimension=DIMENSION if group else "", group=group
                    )
                    return api.GetScorecard(request, timeout=30)

                eventually(
                    lambda: scorecard().as_of.ToDatetime(tzinfo=UTC) > all_in or None, 60, "figures computed"
                )
                figures_of = api.GetMeasureFigures(
                    measurement_pb2.GetMeasureFiguresRequest(measure_id="screenings", dimension=DIMENSION),
                    timeout=30,
                )
                groups = sorted(
                    {f.group for p in figures_of.periods for b in p.breakdowns for f in b.figures}
                )
                url = f"{base}/en/?dimension={DIMENSION}"
                with urllib.request.urlopen(url, timeout=30) as r:
                    page = r.read()
                measures_shown = len({r.measure_id for g in groups for r in scorecard(g).rows})
                page_ms, call_ms, set_ms = [], [], []
                for _ in range(calls):
                    started = time.perf_counter()
                    with urllib.request.urlopen(url, timeout=30) as r:
                        r.read()
                    page_ms.append((time.perf_counter() - started) * 1000)
                    set_started = time.perf_counter()
                    for g in groups:
                        started = time.perf_counter()
                        scorecard(g)
                        call_ms.append((time.perf_counter() - started) * 1000)
                    set_ms.append((time.perf_counter() - set_started) * 1000)
        print(
            f"bench: page: {measures_shown} measures x {len(groups)} groups, {len(page) // 1024} KiB",
            file=sys.stderr,
        )
        shape = f"{measures_shown} measures x {len(groups)} groups"
        figures += [
            Figure(f"page.p50 ({shape}, HTTP)", statistics.median(page_ms), "ms"),
            Figure(
                f"page.p99 ({shape}, HTTP)",
                p99(page_ms),
                "ms",
                f"GetScorecard x {len(groups)} groups p99",
                p99(set_ms),
            ),
            Figure("page.api_call_p99 (GetScorecard, one group)", p99(call_ms), "ms"),
        ]
    figures += render_figures(11, screenings, months, max(100, calls // 3))
    return figures
