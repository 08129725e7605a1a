"""Backbone tables declared once: a database migrated by the main of before the library branches
(each service's own revisions made its outbox, inbox and resident replica) upgrades in place,
keeping its rows, and ends with exactly the schema of a database made new."""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from ach_platform import migrations
from ach_platform.database import sync_url
from alembic import command
from alembic.config import Config

from tests.conftest import ALL_SERVICES
from tests.databases import drop_postgres_database, fresh_postgres_database
from tests.harness import ROOT

# The last main whose services declared the backbone tables in their own revisions.
BEFORE_THE_BRANCHES = "fa37f0759ee939cdde727fc0cc8ee0a195ef2286"


def migrations_before(service: str, into: Path) -> Path:
    """The service's migrations as they were on that main (from this clone's history)."""
    where = f"services/{service}/ach_{service}/migrations"
    found = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", BEFORE_THE_BRANCHES, where],
        capture_output=True,
        check=False,
    )
    if found.returncode != 0:
        pytest.fail(f"this clone has no commit {BEFORE_THE_BRANCHES[:7]}: {found.stderr.decode()[:200]}")
    with tarfile.open(fileobj=io.BytesIO(found.stdout)) as archive:
        archive.extractall(into, filter="data")
    return into / where


def schema(url: str) -> dict[str, Any]:
    engine = sa.create_engine(sync_url(url))
    try:
        inspector = sa.inspect(engine)
        return {
            table: {
                "columns": {
                    c["name"]: (str(c["type"]), c["nullable"], str(c.get("default")))
                    for c in inspector.get_columns(table)
                },
                "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                    for i in inspector.get_indexes(table)
                ),
                "unique": sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
                "foreign keys": sorted(
                    (tuple(f["constrained_columns"]), f["referred_table"])
                    for f in inspector.get_foreign_keys(table)
                ),
            }
            for table in inspector.get_table_names()
            if table != "alembic_version"
        }
    finally:
        engine.dispose()


def rows(url: str, statement: str) -> list[Any]:
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement))
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


@pytest.fixture
def new_database(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Iterator[str]:
    """A second empty database on the same backend as ``database_url``."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'new.db'}"
        return
    server = request.getfixturevalue("postgres_server_url")
    url, name = fresh_postgres_database(server)
    try:
        yield url
    finally:
        drop_postgres_database(server, name)


# Each service at the head of that main; and two at revisions before their backbone tables took
# their last shape (the library branches add what is missing: a column, an index, a table).
AT = [(s, "head") for s in ALL_SERVICES] + [("screening", "0002"), ("referrals", "0008")]


@pytest.mark.parametrize(("service", "revision"), AT)
def test_a_database_of_the_earlier_main_upgrades_in_place(
    service: str, revision: str, database_url: str, new_database: str, tmp_path: Path
) -> None:
    before = Config()
    before.set_main_option("script_location", str(migrations_before(service, tmp_path / "before")))
    before.set_main_option("sqlalchemy.url", sync_url(database_url).replace("%", "%%"))
    command.upgrade(before, revision)
    rows(
        database_url,
        "INSERT INTO outbox_event (event_id, topic, key, event_type, headers, payload, created_at)"
        " VALUES ('e-1', 't', 'k', 'ach.x', '{}', 'x', '2026-12-01 00:00:00')",
    )
    rows(
        database_url,
        'INSERT INTO inbox_event (consumer, event_id, event_type, topic, partition, "offset", processed_at)'
        " VALUES ('c', 'e-0', 'ach.x', 't', 0, 7, '2026-12-01 00:00:00')",
    )

    here = ROOT / "services" / service / f"ach_{service}" / "migrations"
    migrations.upgrade(here, database_url)
    migrations.upgrade(here, database_url)  # at every head already: nothing to do
    migrations.upgrade(here, new_database)

    assert schema(database_url) == schema(new_database)
    assert rows(database_url, "SELECT event_id, set_aside_reason FROM outbox_event") == [("e-1", None)]
    assert rows(database_url, "SELECT event_id FROM inbox_event") == [("e-0",)]
    heads = {r[0] for r in rows(database_url, "SELECT version_num FROM alembic_version")}
    assert heads == {r[0] for r in rows(new_database, "SELECT version_num FROM alembic_version")}
    assert "backbone_0001" in heads and len(heads) == 1 + len(migrations.schema_of(here).branches)


def test_the_backbone_tables_are_declared_by_the_library_branch_alone() -> None:
    declaring = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "services").rglob("migrations/versions/*.py")
        if any(f'"{table}",' in path.read_text() for table in ("outbox_event", "inbox_event"))
    )
    assert declaring == []
