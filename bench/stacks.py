"""The running services a bench measures: a Stack of real processes on one backend's fresh
databases (SQLite files or new PostgreSQL databases), killed and dropped afterwards."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ach_platform.dev_pki import DevPki

from tests.databases import drop_postgres_database, fresh_postgres_database
from tests.harness import Stack


def backends(postgres_server: str | None) -> list[str]:
    return ["sqlite"] + (["postgresql"] if postgres_server else [])


@contextmanager
def bench_stack(
    work: Path,
    backend: str,
    names: Sequence[str],
    bootstrap: str,
    namespace: str,
    pki: DevPki,
    postgres_server: str | None,
) -> Iterator[Stack]:
    """A Stack (not started) whose ``names`` services (identity among them) have fresh databases;
    their processes are killed and PostgreSQL databases dropped when the block ends."""
    dropped: list[str] = []
    urls: dict[str, str] = {}
    (work / backend).mkdir()
    for name in names:
        if backend == "sqlite":
            urls[name] = f"sqlite:///{work / backend / name}.db"
        else:
            assert postgres_server
            urls[name], db = fresh_postgres_database(postgres_server)
            dropped.append(db)
    stack = Stack(work / backend, bootstrap, namespace, urls, pki, trace_to_file=False)
    try:
        yield stack
    finally:
        for service in stack.services.values():
            if service.process is not None and service.process.poll() is None:
                service.process.kill()
        for db in dropped:
            assert postgres_server
            drop_postgres_database(postgres_server, db)


def p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
