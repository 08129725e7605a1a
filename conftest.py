"""Fixtures shared by every test folder: a real Kafka broker and real databases (SQLite and PostgreSQL).

`make test` starts the local broker and a throwaway PostgreSQL server when none is configured;
KAFKA_BOOTSTRAP_SERVERS and TEST_DATABASE_URL point the tests at others. A test that needs them
fails (never skips) when they are absent: CI must not go green without really exercising them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from ach_platform.dev_pki import DevPki
from ach_platform.dev_pki import create as create_pki
from sqlalchemy.engine import make_url

from tests.databases import drop_postgres_database, fresh_postgres_database


def _reachable(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def pytest_sessionstart(session: pytest.Session) -> None:
    """Ports claimed by earlier runs' workers (tests/harness.py free_port) are forgotten after a day."""
    for claims in Path(tempfile.gettempdir()).glob("ach-test-ports-*"):
        with contextlib.suppress(OSError):
            if time.time() - claims.stat().st_mtime > 86_400:
                shutil.rmtree(claims)


def _kafka_servers() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def _kafka_reachable(servers: str) -> bool:
    host, _, port = servers.split(",")[0].rpartition(":")
    return _reachable(host, int(port))


TEST_PARTNERS = ["ach-backbone", "clinic-1", "cbo-1", "cbo-2", "cbo-pantry"]


@pytest.fixture(scope="session", autouse=True)
def dev_pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevPki]:
    """Services run with authentication on, in tests too: a development PKI for the session, which
    service processes find through ACH_PKI_DIR."""
    pki = create_pki(tmp_path_factory.mktemp("pki"), TEST_PARTNERS)
    previous = os.environ.get("ACH_PKI_DIR")
    os.environ["ACH_PKI_DIR"] = str(pki.directory)
    yield pki
    if previous is None:
        os.environ.pop("ACH_PKI_DIR", None)
    else:
        os.environ["ACH_PKI_DIR"] = previous


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    servers = _kafka_servers()
    if not _kafka_reachable(servers):
        pytest.fail(f"no Kafka broker at {servers}: run 'make kafka' (make test starts it)")
    return servers


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.fail("TEST_DATABASE_URL is not set: run the tests with 'make test' (it starts PostgreSQL)")
    parsed = make_url(url)
    if not _reachable(parsed.host or "127.0.0.1", parsed.port or 5432):
        pytest.fail(f"no PostgreSQL server at {parsed.host}:{parsed.port}: run 'make postgres'")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend the platform supports."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    server = request.getfixturevalue("postgres_server_url")
    url, name = fresh_postgres_database(server)
    try:
        yield url
    finally:
        drop_postgres_database(server, name)


@pytest.fixture
def kafka_namespace(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Topics and consumer groups of this test only (ACH_KAFKA_NAMESPACE), its topics deleted after
    it: a run makes hundreds of namespaces, and a broker holding thousands of partitions is slow
    to create and describe topics for every test that follows."""
    namespace = f"test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("ACH_KAFKA_NAMESPACE", namespace)
    yield namespace
    _delete_topics(namespace)


def _delete_topics(namespace: str) -> None:
    from kafka.admin import KafkaAdminClient

    servers = _kafka_servers()
    if not _kafka_reachable(servers):
        return
    with contextlib.suppress(Exception):  # best effort: a test's outcome never depends on it
        admin = KafkaAdminClient(bootstrap_servers=servers.split(","), request_timeout_ms=10_000)
        try:
            ours = [t for t in admin.list_topics() if t.startswith(namespace + ".")]
            if ours:
                admin.delete_topics(ours, timeout_ms=10_000)
        finally:
            admin.close()
