"""Run every benchmark: python -m bench (make bench). Env: BENCH_N, BENCH_CLIENTS, BENCH_CALLS,
BENCH_PARTNER_N, BENCH_DIRECTORY_N, BENCH_SEARCH_N, BENCH_LOOP_RATE, BENCH_LOOP_SECONDS,
BENCH_LOOP_BACKENDS, BENCH_CHAIN_ROUNDS, BENCH_MEASURE_N, BENCH_MEASURE_RATE, BENCH_MEASURE_SECONDS,
BENCH_PAGE_CALLS, BENCH_PAGE_SCREENINGS, BENCH_LEDGER_N, BENCH_LEDGER_WRITERS,
BENCH_ONLY (backbone, chain, screening, directory, loop, measurement, page or ledger),
KAFKA_BOOTSTRAP_SERVERS,
TEST_DATABASE_URL (PostgreSQL server; fresh databases are made for the run)."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path

from bench import backbone, chain, directory, funding, measurement, public_page, referral_loop, screening
from bench.results import print_table, write_json
from tests.databases import drop_postgres_database, fresh_postgres_database


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    n = int(os.environ.get("BENCH_N", "5000"))
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    os.environ.setdefault("ACH_KAFKA_NAMESPACE", "bench")
    only = os.environ.get("BENCH_ONLY", "")
    server = os.environ.get("TEST_DATABASE_URL")
    figures = []
    if only in ("", "backbone"):
        with tempfile.TemporaryDirectory() as scratch:
            databases = {"sqlite": f"sqlite:///{scratch}/bench.db"}
            pg_name = None
            if server:
                databases["postgresql"], pg_name = fresh_postgres_database(server)
            try:
                figures += asyncio.run(backbone.run(bootstrap, databases, n))
            finally:
                if server and pg_name:
                    drop_postgres_database(server, pg_name)
    if only in ("", "chain"):
        figures += chain.run(bootstrap)
    if only in ("", "screening"):
        figures += screening.run(bootstrap, server)
    if only in ("", "directory"):
        figures += directory.run(bootstrap, server)
    if only in ("", "loop"):
        figures += referral_loop.run(bootstrap, server)
    if only in ("", "measurement"):
        figures += measurement.run(bootstrap, server)
    if only in ("", "page"):
        figures += public_page.run(bootstrap)
    if only in ("", "ledger"):
        figures += funding.run(server)
    print()
    print_table(figures)
    out = Path(__file__).parent / "results.json"
    write_json(figures, out)
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
