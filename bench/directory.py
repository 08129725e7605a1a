"""The directory at scale: a generated HSDS package of BENCH_DIRECTORY_N services (100,000 by default)
imported through the import path (records/s), its ServiceChanged events published (events/s), then
BENCH_SEARCH_N (1,000) "need + language + 10 km" searches through the running directory's gRPC API (mutual
TLS, one client, p50/p99), beside the same searches as plain SQL over the HSDS tables (no search
index) on the same database in the same run. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from ach.directory.v1 import directory_pb2, directory_pb2_grpc
from ach_directory.hsds_catalog import load_catalog
from ach_directory.hsds_files import write_package
from ach_directory.main import DEFINITION, import_directory
from ach_directory.sample_package import DOMAINS, generate
from ach_directory.summary_queries import domain_terms
from ach_platform import migrations
from ach_platform.database import create_engine
from ach_platform.dev_pki import create as create_pki
from ach_platform.geo import bounding_box, distance_km
from ach_platform.grpc_client import partner_aio_channel
from sqlalchemy import make_url, text

from bench.results import Figure
from bench.stacks import backends, bench_stack, p99
from tests.harness import TEST_PARTNER_ROLES, Stack, eventually

RADIUS_KM = 10.0
PLAIN_SQL = """
SELECT DISTINCT s.id, loc.latitude, loc.longitude
FROM hsds_service s
JOIN hsds_attribute a ON a.link_id = s.id
JOIN hsds_taxonomy_term t ON t.id = a.taxonomy_term_id
JOIN hsds_language l ON l.service_id = s.id
JOIN hsds_service_at_location sal ON sal.service_id = s.id
JOIN hsds_location loc ON loc.id = sal.location_id
WHERE s.status = 'active' AND l.code = :language
  AND ((t.taxonomy = 'ach-need-domain' AND t.code = :domain) OR (t.taxonomy = 'AIRS' AND t.code IN ({codes})))
  AND loc.latitude BETWEEN :low_lat AND :high_lat AND loc.longitude BETWEEN :low_lon AND :high_lon
"""


def queries(rows: dict[str, list[dict[str, Any]]], n: int) -> list[tuple[str, str, float, float]]:
    """Need + language + a point near where the directory's places are (a resident's home)."""
    rng = random.Random(5)
    places = [x for x in rows["location"] if "latitude" in x]
    out = []
    for _ in range(n):
        where = rng.choice(places)
        domain = rng.choices([d for d, _ in DOMAINS], weights=[w for _, w in DOMAINS])[0]
        language = "es" if rng.random() < 0.8 else rng.choice(("vi", "zh", "tl"))
        out.append(
            (
                domain,
                language,
                where["latitude"] + rng.gauss(0, 0.03),
                where["longitude"] + rng.gauss(0, 0.03),
            )
        )
    return out


async def grpc_search(stack: Stack, asks: list[tuple[str, str, float, float]]) -> tuple[list[float], float]:
    service = stack.services["directory"]
    latencies, found = [], 0
    async with partner_aio_channel(
        service.address,
        stack.pki.ca_cert,
        cert=stack.pki.client_cert("clinic-1"),
        key=stack.pki.client_key("clinic-1"),
    ) as channel:
        directory = directory_pb2_grpc.DirectoryServiceStub(channel)
        for i, (domain, language, lat, lon) in enumerate([*asks[:20], *asks]):  # the first 20 warm up
            request = directory_pb2.SearchServicesRequest(
                need_domain=domain,
                language=language,
                near=directory_pb2.GeoPoint(latitude=lat, longitude=lon),
                radius_km=RADIUS_KM,
                page_size=20,
            )
            started = time.perf_counter()
            answer = await directory.SearchServices(request, timeout=30)
            if i >= 20:
                latencies.append((time.perf_counter() - started) * 1000)
                found += answer.total
    return latencies, found / len(asks)


async def sql_search(url: str, asks: list[tuple[str, str, float, float]]) -> tuple[list[float], float]:
    engine = create_engine(url)
    latencies, found = [], 0
    try:
        async with engine.connect() as conn:
            for i, (domain, language, lat, lon) in enumerate([*asks[:20], *asks]):
                low_lat, high_lat, low_lon, high_lon = bounding_box((lat, lon), RADIUS_KM)
                started = time.perf_counter()
                rows = (
                    await conn.execute(
                        text(PLAIN_SQL.format(codes=airs_codes(domain))),
                        {
                            "domain": domain,
                            "language": language,
                            "low_lat": low_lat,
                            "high_lat": high_lat,
                            "low_lon": low_lon,
                            "high_lon": high_lon,
                        },
                    )
                ).all()
                hits = {r[0] for r in rows if distance_km((lat, lon), (r[1], r[2])) <= RADIUS_KM}
                if i >= 20:
                    latencies.append((time.perf_counter() - started) * 1000)
                    found += len(hits)
    finally:
        await engine.dispose()
    return latencies, found / len(asks)


def airs_codes(domain: str) -> str:
    """The maintained table's codes for a need domain, as SQL literals (our own data, not input)."""
    codes = [t.code for t in domain_terms() if t.need_domain == domain and t.taxonomy == "AIRS"]
    return ", ".join(f"'{c}'" for c in codes) or "''"


def settle(url: str, limit_s: float = 180) -> None:
    """Steady state before measuring: PostgreSQL's autovacuum of what the import and the publishing
    left behind (the outbox's 100,000 updated rows) runs by itself for a while after; searches are
    measured once it is done (or after ``limit_s``), not against it on this machine's two cores."""
    admin = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    deadline = time.monotonic() + limit_s
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("ANALYZE outbox_event")
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
            ).fetchone()
            if not row or not row[0]:
                return
            time.sleep(1)


def all_published(stack: Stack) -> bool:
    return stack.count_rows("directory", "SELECT count(*) FROM outbox_event WHERE published_at IS NULL") == 0


def run(bootstrap: str, postgres_server: str | None) -> list[Figure]:
    n = int(os.environ.get("BENCH_DIRECTORY_N", "100000"))
    n_search = int(os.environ.get("BENCH_SEARCH_N", "1000"))
    figures: list[Figure] = []
    rows = generate(n, seed=7)
    records = sum(map(len, rows.values()))
    asks = queries(rows, n_search)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        package = work / "package"
        write_package(package, load_catalog().entities, rows)
        del rows  # a million records held by the client would stall its measurements in full collections
        gc.collect()
        gc.freeze()
        pki = create_pki(work / "pki", list(TEST_PARTNER_ROLES))
        os.environ["ACH_PKI_DIR"] = str(pki.directory)
        namespace = f"bench-dir-{uuid.uuid4().hex[:8]}"
        os.environ["ACH_KAFKA_NAMESPACE"] = namespace
        only = os.environ.get("BENCH_DIRECTORY_BACKENDS")  # e.g. "postgresql", to measure one again
        for backend in [b for b in backends(postgres_server) if not only or b in only.split(",")]:
            with bench_stack(
                work, backend, ("identity", "directory"), bootstrap, namespace, pki, postgres_server
            ) as stack:
                url = stack.database_urls["directory"]
                migrations.upgrade(DEFINITION.migrations_dir, url)
                started = time.perf_counter()
                report = asyncio.run(import_directory(url, package, show_progress=False))
                import_s = time.perf_counter() - started
                assert report.rejected == 0, report.problems[:5]
                started = time.perf_counter()
                stack.start("directory")
                eventually(
                    functools.partial(all_published, stack),
                    3600,
                    "the import's ServiceChanged events published",
                )
                publish_s = time.perf_counter() - started
                # The import ran in this process: its garbage out of the way, so the client's own
                # full collections do not land in the service's measured latencies.
                gc.collect()
                gc.freeze()
                if backend == "postgresql":
                    settle(url)
                latencies, per_query = asyncio.run(grpc_search(stack, asks))
                sql_latencies, sql_per_query = asyncio.run(sql_search(url, asks))
                stack.stop_all()
            figures += [
                Figure(
                    f"directory.import.{backend} ({n:,} services, {records:,} records)",
                    records / import_s,
                    "records/s",
                ),
                Figure(f"directory.service_changed_published.{backend}", n / publish_s, "events/s"),
                Figure(
                    f"directory.search_grpc_p50.{backend} (need+language+{RADIUS_KM:g} km, {n_search} asks)",
                    statistics.median(latencies),
                    "ms",
                    "plain SQL over HSDS tables",
                    statistics.median(sql_latencies),
                ),
                Figure(
                    f"directory.search_grpc_p99.{backend}",
                    p99(latencies),
                    "ms",
                    "plain SQL over HSDS tables",
                    p99(sql_latencies),
                ),
                Figure(
                    f"directory.search_results_per_query.{backend}",
                    per_query,
                    "services",
                    "plain SQL",
                    sql_per_query,
                ),
            ]
    return figures
