"""The HSDS records a service summary is made of, read from the directory's HSDS tables: every
service's (or some), and which services an import's written records touch."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from ach_platform import zip_codes
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
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
from ach_directory.settings import network_time_zone
from ach_directory.store import HSDS_TABLES

CHUNK = 500
NEED_DOMAIN_TERMS = Path(__file__).parent / "need_domain_terms.csv"


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
