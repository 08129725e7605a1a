"""End-to-end fixtures: a stack of real service processes."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ach_platform.dev_pki import DevPki

from tests.databases import drop_postgres_database, fresh_postgres_database
from tests.harness import ROOT, Stack

SERVICES = ("screening", "referrals", "directory", "measurement", "funding", "notifications")
ALL_SERVICES = ("identity", *SERVICES)


@pytest.fixture
def make_stack(
    tmp_path: Path,
    kafka_bootstrap: str,
    kafka_namespace: str,
    dev_pki: DevPki,
    request: pytest.FixtureRequest,
) -> Iterator[Callable[[str], Stack]]:
    """make_stack(backend) -> a Stack whose services use SQLite files or fresh PostgreSQL databases."""
    stacks: list[Stack] = []
    cleanups: list[Callable[[], None]] = []

    def make(backend: str) -> Stack:
        urls: dict[str, str] = {}
        for name in ALL_SERVICES:
            if backend == "sqlite":
                urls[name] = f"sqlite:///{tmp_path / f'{name}.db'}"
            else:
                server = request.getfixturevalue("postgres_server_url")
                url, db = fresh_postgres_database(server)
                urls[name] = url
                cleanups.append(functools.partial(drop_postgres_database, server, db))
        stack = Stack(tmp_path, kafka_bootstrap, kafka_namespace, urls, dev_pki)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        for service in stack.services.values():
            if service.process is not None and service.process.poll() is None:
                service.process.kill()
                service.process.wait()
    for cleanup in cleanups:
        cleanup()


@pytest.fixture(scope="session")
def sasl_bootstrap(kafka_bootstrap: str) -> tuple[str, str]:
    """(bootstrap, CA file) of the broker's SASL_SSL listener."""
    bootstrap = os.environ.get("KAFKA_SASL_TEST_BOOTSTRAP", "")
    cafile = os.environ.get("KAFKA_SASL_TEST_CAFILE", str(ROOT / ".data" / "kafka" / "tls" / "ca.pem"))
    if not bootstrap:
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            pytest.skip("an external cluster: set KAFKA_SASL_TEST_BOOTSTRAP to its SASL_SSL listener")
        bootstrap = "127.0.0.1:9094"
    if not Path(cafile).is_file():
        pytest.fail(f"no CA file {cafile} for the broker's TLS listener: run 'make kafka'")
    return bootstrap, cafile
