"""From the HSDS records to the service records search uses and ServiceChanged publishes: after an
import (or a partner's edit), each affected service is summarised again; one that changed gets a new
version, its search index rows and a ServiceChanged in the same transaction."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from ach.directory.v1 import directory_pb2
from ach_events.outbox import Outbox
from ach_platform import zip_codes
from ach_platform.clock import to_timestamp, utc_now
from ach_platform.opening_hours import Hours
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel import col
from sqlmodel import select as select_records
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_directory.domain.search import Place
from ach_directory.domain.summary import (
    DomainTerm,
    Summary,
    address_line,
    partner_of,
    phone_number,
    summarize,
)
from ach_directory.publishers import publish_service_changed
from ach_directory.settings import network_time_zone
from ach_directory.store import (
    HSDS_TABLES,
    ServiceLanguage,
    ServiceNeedDomain,
    ServicePoint,
    ServiceRecord,
    ServiceSearchKey,
)

CHUNK = 500
# The format of the summaries records are written in. Raise it when a summary gains something the
# other services need (1: partner links, organization name, phone, addresses): at start-up the
# service summarises older records again and publishes those that changed (refresh_summaries).
SUMMARY_FORMAT = 1
NEED_DOMAIN_TERMS = Path(__file__).parent / "need_domain_terms.csv"
STATUS = {
    "active": directory_pb2.SERVICE_STATUS_ACTIVE,
    "inactive": directory_pb2.SERVICE_STATUS_INACTIVE,
    "defunct": directory_pb2.SERVICE_STATUS_DEFUNCT,
    "temporarily closed": directory_pb2.SERVICE_STATUS_TEMPORARILY_CLOSED,
}


@cache
def domain_terms(path: Path = NEED_DOMAIN_TERMS) -> tuple[DomainTerm, ...]:
    """The maintained table of taxonomy terms per need domain (a reviewed data file)."""
    with path.open(newline="") as handle:
        return tuple(DomainTerm(r["need_domain"], r["taxonomy"], r["code"]) for r in csv.DictReader(handle))


async def _rows(
    conn: AsyncConnection, entity: str, column: str | None, ids: Iterable[str] | None
) -> list[dict[str, Any]]:
    table = HSDS_TABLES[entity]
    if ids is None:
        return [dict(r) for r in (await conn.execute(select(table))).mappings()]
    wanted = sorted(set(ids))
    out: list[dict[str, Any]] = []
    for i in range(0, len(wanted), CHUNK):
        statement = select(table).where(table.c[column or "id"].in_(wanted[i : i + CHUNK]))
        out += [dict(r) for r in (await conn.execute(statement)).mappings()]
    return out


async def summaries(session: AsyncSession, service_ids: set[str] | None) -> list[Summary]:
    """The summaries of these services (None: of every service) from the HSDS tables."""
    conn = await session.connection()
    services = await _rows(conn, "service", "id", service_ids)
    ids = {str(s["id"]) for s in services}
    scope = None if service_ids is None else ids
    organizations = {
        str(o["id"]): o
        for o in await _rows(
            conn,
            "organization",
            "id",
            None if scope is None else {str(s.get("organization_id")) for s in services},
        )
    }
    at_locations = await _rows(conn, "service_at_location", "service_id", scope)
    location_ids = {str(a["location_id"]) for a in at_locations if a.get("location_id")}
    locations = {
        str(x["id"]): x for x in await _rows(conn, "location", "id", None if scope is None else location_ids)
    }
    addresses = await _rows(conn, "address", "location_id", None if scope is None else location_ids)
    languages = await _rows(conn, "language", "service_id", scope)
    if scope is not None:  # the languages of its locations too
        languages += [
            x for x in await _rows(conn, "language", "location_id", location_ids) if not x.get("service_id")
        ]
    schedules = await _rows(conn, "schedule", "service_id", scope)
    if scope is not None:
        schedules += [
            x for x in await _rows(conn, "schedule", "location_id", location_ids) if not x.get("service_id")
        ]
    areas = await _rows(conn, "service_area", "service_id", scope)
    attributes = await _rows(conn, "attribute", "link_id", scope)
    terms = {str(t["id"]): t for t in await _rows(conn, "taxonomy_term", None, None)}
    capacities = await _rows(conn, "service_capacity", "service_id", scope)
    organization_ids = {str(s.get("organization_id")) for s in services}
    identifiers = await _rows(
        conn, "organization_identifier", "organization_id", None if scope is None else organization_ids
    )
    phones = await _rows(conn, "phone", "service_id", scope)
    if scope is not None:  # its places' and its organization's phones too
        phones += await _rows(conn, "phone", "location_id", location_ids)
        phones += await _rows(conn, "phone", "organization_id", organization_ids)

    postal: dict[str, str] = {}
    street: dict[str, str] = {}
    for a in sorted(addresses, key=lambda a: (a.get("address_type") != "physical", str(a["id"]))):
        postal.setdefault(str(a["location_id"]), str(a.get("postal_code") or "")[:5])
        street.setdefault(str(a["location_id"]), address_line(a))
    partner_of_organization: dict[str, list[dict[str, Any]]] = {}
    for i in identifiers:
        partner_of_organization.setdefault(str(i.get("organization_id")), []).append(i)
    # A phone by what it is the phone of; the first by id where there are several.
    phone_of: dict[tuple[str, str], str] = {}
    for ph in sorted(phones, key=lambda p: str(p["id"])):
        for key in ("service_id", "location_id", "organization_id"):
            if ph.get(key) and (number := phone_number(ph)):
                phone_of.setdefault((key, str(ph[key])), number)
    zone_of_location = {loc: zip_codes.time_zone(code) for loc, code in postal.items()}
    places: dict[str, list[Place]] = {}
    location_of_service: dict[str, set[str]] = {}
    for a in at_locations:
        loc = locations.get(str(a.get("location_id")))
        if loc is None:
            continue
        service_id = str(a["service_id"])
        location_of_service.setdefault(service_id, set()).add(str(loc["id"]))
        places.setdefault(service_id, []).append(
            Place(
                location_id=str(loc["id"]),
                name=str(loc.get("name") or ""),
                latitude=loc.get("latitude"),
                longitude=loc.get("longitude"),
                postal_code=postal.get(str(loc["id"]), ""),
                virtual=loc.get("location_type") == "virtual",
                address=street.get(str(loc["id"]), ""),
            )
        )
    spoken: dict[str, set[str]] = {}
    by_location: dict[str, set[str]] = {}
    for lang in languages:
        code = str(lang.get("code") or "").strip()
        if lang.get("service_id"):
            spoken.setdefault(str(lang["service_id"]), set()).add(code)
        elif lang.get("location_id"):
            by_location.setdefault(str(lang["location_id"]), set()).add(code)
    schedule_of: dict[str, list[dict[str, Any]]] = {}
    by_location_schedules: dict[str, list[dict[str, Any]]] = {}
    for s in schedules:
        if s.get("service_id"):
            schedule_of.setdefault(str(s["service_id"]), []).append(s)
        elif s.get("location_id"):
            by_location_schedules.setdefault(str(s["location_id"]), []).append(s)
    area_of: dict[str, list[dict[str, Any]]] = {}
    for area in areas:
        area_of.setdefault(str(area["service_id"]), []).append(area)
    terms_of: dict[str, list[dict[str, Any]]] = {}
    for attribute in attributes:
        term = terms.get(str(attribute.get("taxonomy_term_id")))
        if term is not None and str(attribute.get("link_entity") or "service") == "service":
            terms_of.setdefault(str(attribute["link_id"]), []).append(term)
    capacity_of: dict[str, dict[str, Any]] = {}
    for c in sorted(capacities, key=lambda c: str(c.get("updated") or "")):
        capacity_of[str(c["service_id"])] = c  # the latest report

    table = domain_terms()
    out = []
    for service in services:
        sid = str(service["id"])
        at = location_of_service.get(sid, set())
        # A place without a known zone (online, or an address outside the ZIP data) keeps the
        # service's other places' zone, else the network's.
        known = sorted(z for loc in at if (z := zone_of_location.get(loc)))
        fallback = known[0] if known else network_time_zone()
        zones = {loc: zone_of_location.get(loc) or fallback for loc in at} | {"": fallback}
        out.append(
            summarize(
                service,
                organizations.get(str(service.get("organization_id"))),
                places.get(sid, []),
                spoken.get(sid, set()) | set().union(*(by_location.get(loc, set()) for loc in at)),
                [
                    *schedule_of.get(sid, []),
                    *(x for loc in sorted(at) for x in by_location_schedules.get(loc, [])),
                ],
                zones,
                area_of.get(sid, []),
                terms_of.get(sid, []),
                capacity_of.get(sid),
                table,
                partner_id=partner_of(partner_of_organization.get(str(service.get("organization_id")), [])),
                phone=next(
                    (
                        phone_of[key]
                        for key in [
                            ("service_id", sid),
                            *(("location_id", loc) for loc in sorted(at)),
                            ("organization_id", str(service.get("organization_id"))),
                        ]
                        if key in phone_of
                    ),
                    "",
                ),
            )
        )
    return out


def _record_fields(s: Summary) -> dict[str, Any]:
    return {
        "organization_id": s.organization_id,
        "name": s.name,
        "description": s.description,
        "status": STATUS.get(s.status, directory_pb2.SERVICE_STATUS_ACTIVE),
        "need_domains": list(s.need_domains),
        "languages": list(s.languages),
        "capacity_available": s.capacity_available,
        "capacity_maximum": s.capacity_maximum,
        "capacity_waitlist": s.capacity_waitlist,
        "minimum_age": s.minimum_age,
        "maximum_age": s.maximum_age,
        "eligibility_description": s.eligibility_description,
        "partner_id": s.partner_id,
        "organization_name": s.organization_name,
        "phone": s.phone,
        "locations": [
            {
                "location_id": p.location_id,
                "name": p.name,
                "latitude": p.latitude,
                "longitude": p.longitude,
                "postal_code": p.postal_code,
                "virtual": p.virtual,
                "address": p.address,
            }
            for p in s.places
        ],
        "opening_hours": [h.__dict__.copy() for h in s.hours],
        "service_area_zips": list(s.area_zips),
        "service_area_radius_km": s.area_radius_km,
        "term_ids": list(s.term_ids),
        "search_text": s.text,
        "source": "hsds-import",
        "remote": any(p.virtual for p in s.places),
    }


async def affected_services(
    session: AsyncSession, touched: dict[str, set[str]], links: dict[str, set[str]]
) -> set[str] | None:
    """The services whose summary an import may have changed (None: all of them, when taxonomy
    terms changed). ``touched``: ids of the records written, by entity; ``links``: the service,
    location and organization ids those records name."""
    if touched.get("taxonomy_term") or touched.get("taxonomy"):
        return None
    services = set(touched.get("service", set())) | links.get("service", set())
    conn = await session.connection()
    locations = set(touched.get("location", set())) | links.get("location", set())
    if locations:
        services |= {
            str(r["service_id"]) for r in await _rows(conn, "service_at_location", "location_id", locations)
        }
    # An organization's own records (its partner link, its phone) show in its services' summaries.
    organizations = set(touched.get("organization", set())) | links.get("organization", set())
    if organizations:
        services |= {str(r["id"]) for r in await _rows(conn, "service", "organization_id", organizations)}
    return services


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
        fields = _record_fields(summary)
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


def places_of(record: ServiceRecord) -> tuple[Place, ...]:
    return tuple(
        Place(
            location_id=str(p["location_id"]),
            name=str(p.get("name") or ""),
            latitude=p.get("latitude"),
            longitude=p.get("longitude"),
            postal_code=str(p.get("postal_code") or ""),
            virtual=bool(p.get("virtual")),
            address=str(p.get("address") or ""),
        )
        for p in record.locations
    )


def hours_of_record(record: ServiceRecord) -> tuple[Hours, ...]:
    return tuple(Hours(**h) for h in record.opening_hours)


def to_proto(r: ServiceRecord) -> directory_pb2.Service:
    return directory_pb2.Service(
        service_id=r.id,
        organization_id=r.organization_id,
        name=r.name,
        description=r.description,
        status=r.status,  # type: ignore[arg-type]
        need_domains=r.need_domains,
        claimed_need_domains=r.claimed_need_domains,
        languages=r.languages,
        capacity_available=r.capacity_available,
        capacity_maximum=r.capacity_maximum,
        updated_at=to_timestamp(r.updated_at),
        locations=[
            directory_pb2.ServiceLocation(
                location_id=p.location_id,
                name=p.name,
                latitude=p.latitude or 0.0,
                longitude=p.longitude or 0.0,
                postal_code=p.postal_code,
                virtual=p.virtual,
                address=p.address,
            )
            for p in places_of(r)
        ],
        minimum_age=r.minimum_age,
        maximum_age=r.maximum_age,
        service_area_zips=r.service_area_zips,
        service_area_radius_km=r.service_area_radius_km,
        opening_hours=[directory_pb2.OpeningHours(**h.__dict__) for h in hours_of_record(r)],
        capacity_waitlist=r.capacity_waitlist,
        eligibility_description=r.eligibility_description,
        source=r.source,
        partner_id=r.partner_id,
        organization_name=r.organization_name,
        phone=r.phone,
    )


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
