"""From the HSDS records to the service records search uses and ServiceChanged publishes: after an
import (or a partner's edit), each affected service is summarised again; one that changed gets a new
version, its search index rows and a ServiceChanged in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence

from ach.directory.v1 import directory_pb2
from ach_events.outbox import Outbox
from ach_platform.clock import utc_now
from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col
from sqlmodel import select as select_records
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_directory.domain.summary import (
    Summary,
)
from ach_directory.mappers import record_fields, to_proto
from ach_directory.publishers import publish_service_changed
from ach_directory.store import (
    ServiceLanguage,
    ServiceNeedDomain,
    ServicePoint,
    ServiceRecord,
    ServiceSearchKey,
)
from ach_directory.summary_queries import CHUNK, summaries

# The format of the summaries records are written in. Raise it when a summary gains something the
# other services need (1: partner links, organization name, phone, addresses): at start-up the
# service summarises older records again and publishes those that changed (refresh_summaries).
SUMMARY_FORMAT = 1


async def apply(session: AsyncSession, outbox: Outbox, found: Sequence[Summary]) -> int:
    """Store the summaries that changed (new version, index rows, ServiceChanged); how many did."""
    written: list[ServiceRecord] = []
    ids = [s.service_id for s in found]
    kept: dict[str, ServiceRecord] = {}
    for i in range(0, len(ids), CHUNK):
        rows = await session.exec(
            select_records(ServiceRecord).where(col(ServiceRecord.id).in_(ids[i : i + CHUNK]))
        )
        kept |= {r.id: r for r in rows.all()}
    now = utc_now()
    for summary in found:
        fields = record_fields(summary)
        record = kept.get(summary.service_id)
        if record is not None and all(getattr(record, k) == v for k, v in fields.items()):
            if record.summary_format != SUMMARY_FORMAT:
                record.summary_format = SUMMARY_FORMAT
                session.add(record)
            continue
        if record is None:
            record = ServiceRecord(id=summary.service_id, updated_at=now, **fields)
        else:
            for k, v in fields.items():
                setattr(record, k, v)
        record.version += 1
        record.updated_at = now
        record.summary_format = SUMMARY_FORMAT
        session.add(record)
        written.append(record)
    messages = await index(session, written)
    for record in written:
        publish_service_changed(session, outbox, messages[record.id], record.version)
    return len(written)


async def index(session: AsyncSession, records: Sequence[ServiceRecord]) -> dict[str, directory_pb2.Service]:
    """The services' search index rows, replaced: one delete per table and chunk of services, one
    insert per table (an import re-indexes thousands at once); and each record's Service message,
    kept with it (returned too, by service id)."""
    messages: dict[str, directory_pb2.Service] = {}
    for record in records:
        messages[record.id] = to_proto(record)
        record.message = messages[record.id].SerializeToString()
    if not records:
        return messages
    await session.flush()  # the records themselves first (a new one must exist for its rows)
    conn = await session.connection()
    ids = [r.id for r in records]
    tables = [m.__table__ for m in (ServiceNeedDomain, ServiceLanguage, ServicePoint, ServiceSearchKey)]  # type: ignore[union-attr]
    for table in tables:
        for i in range(0, len(ids), CHUNK):
            await conn.execute(delete(table).where(table.c.service_id.in_(ids[i : i + CHUNK])))
    domains, languages, points, keys = [], [], [], []
    for record in records:
        domains += [{"need_domain": d, "service_id": record.id} for d in sorted(set(record.need_domains))]
        primary = sorted({lang.split("-")[0].lower() for lang in record.languages})
        languages += [{"language": lang, "service_id": record.id} for lang in primary]
        located = [
            {
                "service_id": record.id,
                "location_id": p["location_id"],
                "latitude": p["latitude"],
                "longitude": p["longitude"],
            }
            for p in record.locations
            if p.get("latitude") is not None and p.get("longitude") is not None and not p.get("virtual")
        ]
        points += located
        active = record.status == directory_pb2.SERVICE_STATUS_ACTIVE
        keys += [
            {**point, "need_domain": domain, "language": lang, "active": active}
            for point in located
            for domain in sorted(set(record.need_domains))
            for lang in primary
        ]
    for table, rows in zip(tables, (domains, languages, points, keys), strict=True):
        if rows:
            await conn.execute(insert(table), rows)
    return messages


async def refresh_summaries(sessions: async_sessionmaker[AsyncSession], outbox: Outbox) -> int:
    """Bring records written in an older summary format up to date, a chunk per transaction, and
    publish those that changed (after an upgrade, the other services' replicas learn what is new,
    e.g. which services are partners'). Services kept through the API belong to the partner named
    as their organization. Returns how many were published again."""
    published = 0
    while True:
        async with sessions() as session, session.begin():
            rows = await session.exec(
                select_records(ServiceRecord)
                .where(col(ServiceRecord.summary_format) < SUMMARY_FORMAT)
                .order_by(col(ServiceRecord.id))
                .limit(CHUNK)
                .with_for_update(skip_locked=True)  # replicas starting together share the work
            )
            stale = list(rows.all())
            if not stale:
                return published
            imported = {r.id for r in stale if r.source == "hsds-import"}
            if imported:
                published += await apply(session, outbox, await summaries(session, imported))
            by_api = [r for r in stale if r.id not in imported]
            for record in by_api:
                record.partner_id = record.organization_id
                record.summary_format = SUMMARY_FORMAT
                record.version += 1
                record.updated_at = utc_now()
                session.add(record)
            messages = await index(session, by_api)
            for record in by_api:
                publish_service_changed(session, outbox, messages[record.id], record.version)
            published += len(by_api)
            # A service the HSDS tables no longer hold keeps its record: mark it, or it comes again.
            for record in stale:
                if record.summary_format < SUMMARY_FORMAT:
                    record.summary_format = SUMMARY_FORMAT
                    session.add(record)
