"""Which services are partners', on real databases (SQLite and PostgreSQL): the ach-partner
identifier of an import, the ACH admin's link and its removal, what a resident is told of a
service (organization name, phone, address), and records written before partner links summarised
and published again when the service starts after an upgrade."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ach.directory.v1 import directory_pb2
from ach_directory.hsds_catalog import load_catalog
from ach_directory.hsds_files import read_source, write_package
from ach_directory.hsds_import import import_records
from ach_directory.main import DEFINITION
from ach_directory.partner_links import link_organization
from ach_directory.projection import SUMMARY_FORMAT, apply, refresh_summaries
from ach_directory.sample_package import generate, link_partners
from ach_directory.store import ServiceRecord
from ach_directory.summary_queries import affected_services, summaries
from ach_events.outbox import Outbox, OutboxEvent
from ach_platform import migrations
from ach_platform.database import create_engine, session_factory
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

pytestmark = pytest.mark.postgres
CATALOG = load_catalog()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    migrations.upgrade(DEFINITION.migrations_dir, database_url)
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def published(engine: AsyncEngine) -> dict[str, directory_pb2.Service]:
    """The latest ServiceChanged per service in the outbox."""
    async with session_factory(engine)() as session:
        rows = (await session.exec(select(OutboxEvent).order_by(col(OutboxEvent.seq)))).all()
    latest: dict[str, directory_pb2.Service] = {}
    for row in rows:
        latest[row.key] = directory_pb2.ServiceChanged.FromString(row.payload).service
    return latest


async def test_partners_come_from_identifiers_and_the_admins_link_and_old_records_are_refreshed(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    rows = generate(30, seed=3)
    links = link_partners(rows, ["cbo-1"])
    write_package(tmp_path / "p", CATALOG.entities, rows)
    outbox = Outbox(source="/ach/directory")
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        report = await import_records(session, CATALOG, read_source(tmp_path / "p", CATALOG.entities))
        await apply(
            session,
            outbox,
            await summaries(session, await affected_services(session, report.touched, report.links)),
        )
    services = await published(engine)
    assert len(services) == 30
    organizations = {str(o["id"]): str(o["name"]) for o in rows["organization"]}
    for service in services.values():
        assert service.partner_id == links.get(service.organization_id, "")
        assert service.organization_name == organizations[service.organization_id]
        assert service.phone.startswith("+1 209 555 ")
        physical = [p for p in service.locations if not p.virtual]
        assert all(p.address.endswith(f", CA {p.postal_code}") for p in physical), physical

    # The ACH admin links another organization, then takes the link away.
    other = str(rows["organization"][1]["id"])
    async with sessions() as session, session.begin():
        changed = await link_organization(session, outbox, other, "cbo-2")
        assert await link_organization(session, outbox, "no-such-organization", "cbo-2") is None
    assert changed == sum(1 for s in rows["service"] if s["organization_id"] == other) > 0
    assert {s.partner_id for s in (await published(engine)).values() if s.organization_id == other} == {
        "cbo-2"
    }
    async with sessions() as session, session.begin():
        assert await link_organization(session, outbox, other, "") == changed
    assert {s.partner_id for s in (await published(engine)).values() if s.organization_id == other} == {""}

    # Records written before partner links (format 0, no partner id): summarised and published again.
    async with sessions() as session, session.begin():
        session.add(
            ServiceRecord(
                id="svc-api",
                organization_id="cbo-pantry",
                name="Pantry",
                status=directory_pb2.SERVICE_STATUS_ACTIVE,
                need_domains=["food-insecurity"],
                languages=["en"],
                updated_at=datetime.now(UTC),
                source="api",
                version=3,
            )
        )
        await session.exec(update(ServiceRecord).values(partner_id="", summary_format=0))  # type: ignore[call-overload]
    of_cbo_1 = sum(1 for s in rows["service"] if s["organization_id"] in links)
    assert await refresh_summaries(sessions, outbox) == of_cbo_1 + 1  # cbo-1's, and the API service
    latest = await published(engine)
    assert latest["svc-api"].partner_id == "cbo-pantry"
    assert {s.partner_id for s in latest.values() if s.organization_id in links} == {"cbo-1"}
    async with sessions() as session:
        kept = (await session.exec(select(ServiceRecord))).all()
    assert {r.summary_format for r in kept} == {SUMMARY_FORMAT}
    assert await refresh_summaries(sessions, outbox) == 0  # once
