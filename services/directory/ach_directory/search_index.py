"""The candidates of a search, narrowed by the database's indexes before matching decides in full,
and read lean: only the columns the query's filters need, as plain values (the full records are read
for the page returned only).

With a point and a radius, the located places in the box around it come first, with their
coordinates (the most selective filter: a few hundred of 100,000), the need domain and language
checked per place through their primary keys; only services with a place within the radius are read
further. Without a point, the need domain and language indexes narrow."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ach.directory.v1 import directory_pb2
from ach_platform.geo import bounding_box, distance_km
from ach_platform.opening_hours import Hours
from sqlalchemy import select as core_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_directory.domain.search import (
    Candidate,
    Match,
    Place,
    Query,
    match,
    ranked,
)
from ach_directory.mappers import to_proto
from ach_directory.store import (
    ServiceLanguage,
    ServiceNeedDomain,
    ServicePoint,
    ServiceRecord,
    ServiceSearchKey,
)

CHUNK = 500


def _narrowed(statement: Any, q: Query, service_id: Any) -> Any:
    if not q.include_inactive:
        statement = statement.where(ServiceRecord.status == directory_pb2.SERVICE_STATUS_ACTIVE)
    if q.need_domain:
        statement = statement.where(
            select(ServiceNeedDomain.service_id)
            .where(ServiceNeedDomain.need_domain == q.need_domain, ServiceNeedDomain.service_id == service_id)
            .exists()
        )
    if q.language:
        statement = statement.where(
            select(ServiceLanguage.service_id)
            .where(
                ServiceLanguage.language == q.language.split("-")[0].lower(),
                ServiceLanguage.service_id == service_id,
            )
            .exists()
        )
    for word in q.words:  # every word, anywhere in the text (matching checks the same)
        statement = statement.where(col(ServiceRecord.search_text).contains(word, autoescape=True))
    return statement


def index_answers(q: Query) -> bool:
    """Whether the search keys alone decide which services match (a need, a primary language, a
    distance): then only the page returned is read further."""
    return (
        q.point is not None
        and q.radius_km > 0
        and bool(q.need_domain)
        and not (q.words or q.taxonomy_term_id or q.resident_age or q.resident_zip or q.with_capacity)
        and q.open_at is None
        and "-" not in q.language
    )


@dataclass(frozen=True)
class Found:
    page: list[Match]
    total: int  # matches in all
    services: dict[str, directory_pb2.Service]  # the page's services, as the API answers with them


async def search(session: AsyncSession, q: Query, offset: int, size: int) -> Found:
    """A page of ranked matches and how many there are in all."""
    if not index_answers(q):
        found = ranked([m for c in await candidates(session, q) if (m := match(c, q))], q.point is not None)
        page = found[offset : offset + size]
        messages, _ = await services(session, [m.candidate.service_id for m in page])
        return Found(page, len(found), messages)
    places, nearest = await _nearby(session, q)
    order = sorted(nearest, key=lambda sid: (nearest[sid], sid))
    remote = await _remote(session, q)
    wanted = set(order[offset : offset + size]) | remote
    # The page's services (needed for the answer anyway) and the columns matching needs: one read.
    messages, rows = await services(session, sorted(wanted), _columns(q, places, remote))
    read = [_candidate(row, q, places) for row in rows]
    matches = [m for c in read if (m := match(c, q))]
    located = sorted(
        (m for m in matches if m.candidate.service_id not in remote),
        key=lambda m: (nearest[m.candidate.service_id], m.candidate.service_id),
    )
    online = ranked([m for m in matches if m.candidate.service_id in remote], by_distance=True)
    everything = len(order) + len(online)
    page = (
        (located + online)[:size]
        if offset < len(order)
        else online[offset - len(order) : offset - len(order) + size]
    )
    return Found(page, everything, messages)


async def candidates(session: AsyncSession, q: Query) -> list[Candidate]:
    places: dict[str, list[Place]] | None = None
    ids: set[str] | None = None
    remote: set[str] = set()
    if q.point is not None and q.radius_km > 0:
        places, _ = await _nearby(session, q)
        remote = await _remote(session, q)
        ids = set(places) | remote
    return await _read(session, q, ids, places, remote)


async def _remote(session: AsyncSession, q: Query) -> set[str]:
    """Online services, which match a distance search only by their service area."""
    if not (q.resident_zip or q.near_zip):
        return set()
    online = _narrowed(select(ServiceRecord.id).where(col(ServiceRecord.remote)), q, ServiceRecord.id)
    return set((await session.exec(online)).all())


async def _nearby(session: AsyncSession, q: Query) -> tuple[dict[str, list[Place]], dict[str, float]]:
    """The located places within the radius, by service; and each service's nearest distance."""
    assert q.point is not None
    low_lat, high_lat, low_lon, high_lon = bounding_box(q.point, q.radius_km)
    if q.need_domain and not q.words:
        # The commonest query: one index range on (need domain, language, latitude).
        key = ServiceSearchKey.__table__.c  # type: ignore[attr-defined]
        statement = core_select(key.service_id, key.location_id, key.latitude, key.longitude).where(
            key.need_domain == q.need_domain,
            key.latitude.between(low_lat, high_lat),
            key.longitude.between(low_lon, high_lon),
        )
        if q.language:
            statement = statement.where(key.language == q.language.split("-")[0].lower())
        if not q.include_inactive:
            statement = statement.where(key.active)
    else:
        point = ServicePoint.__table__.c  # type: ignore[attr-defined]
        statement = _narrowed(
            core_select(point.service_id, point.location_id, point.latitude, point.longitude)
            .join(ServiceRecord.__table__, ServiceRecord.__table__.c.id == point.service_id)  # type: ignore[attr-defined]
            .where(point.latitude.between(low_lat, high_lat), point.longitude.between(low_lon, high_lon)),
            q,
            point.service_id,
        )
    places: dict[str, list[Place]] = {}
    nearest: dict[str, float] = {}
    seen: set[tuple[str, str]] = set()
    # Core statements on the connection: the ORM's execution path costs more than these queries.
    conn = await session.connection()
    for service_id, location_id, lat, lon in (await conn.execute(statement)).all():
        if (service_id, location_id) in seen:
            continue  # once, though a key row per language matched
        away = distance_km(q.point, (lat, lon))
        if away <= q.radius_km:
            seen.add((service_id, location_id))
            places.setdefault(service_id, []).append(Place(location_id, "", lat, lon))
            nearest[service_id] = min(away, nearest.get(service_id, away))
    return places, nearest


async def _read(
    session: AsyncSession,
    q: Query,
    ids: set[str] | None,
    places: dict[str, list[Place]] | None,
    remote: set[str],
) -> list[Candidate]:
    """The candidates as matching sees them, reading only the columns the query's filters need
    (``ids``: these services only; None: every service the indexes let through)."""
    table = ServiceRecord.__table__  # type: ignore[attr-defined]
    names = _columns(q, places, remote)
    chosen = [table.c[name] for name in names]
    conn = await session.connection()
    rows: list[Any] = []
    if ids is None:
        rows = list((await conn.execute(_narrowed(core_select(*chosen), q, table.c.id))).all())
    else:
        ordered = sorted(ids)
        for i in range(0, len(ordered), CHUNK):
            statement = core_select(*chosen).where(table.c.id.in_(ordered[i : i + CHUNK]))
            rows += list((await conn.execute(statement)).all())
    return [_candidate(dict(zip(names, row, strict=True)), q, places) for row in rows]


def _columns(q: Query, places: dict[str, list[Place]] | None, remote: set[str]) -> list[str]:
    """The service columns matching needs for this query."""
    names = [
        "id",
        "name",
        "status",
        "languages",
        "minimum_age",
        "maximum_age",
        "capacity_available",
        "capacity_maximum",
        "remote",
    ]
    wanted = {
        "need_domains": not q.need_domain,  # known from the index when the query names one
        "term_ids": bool(q.taxonomy_term_id),
        "search_text": bool(q.words),
        "service_area_zips": bool(q.resident_zip or q.near_zip),
        "service_area_radius_km": bool(q.resident_zip),
        "opening_hours": q.open_at is not None,
        # Else the index gave the places (within the search radius; a radius area needs them all).
        "locations": places is None or bool(remote) or bool(q.resident_zip),
    }
    return names + [name for name, needed in wanted.items() if needed]


def _candidate(row: dict[str, Any], q: Query, located: dict[str, list[Place]] | None) -> Candidate:
    service_id = row["id"]
    stored = row.get("locations")
    places: Sequence[Place]
    if located is not None and not row["remote"]:
        places = located.get(service_id, ())  # the places within the radius, from the index
    else:
        places = _stored_places(stored)
    return Candidate(
        service_id=service_id,
        name=row["name"],
        active=row["status"] == directory_pb2.SERVICE_STATUS_ACTIVE,
        need_domains=frozenset(row["need_domains"]) if "need_domains" in row else frozenset({q.need_domain}),
        term_ids=frozenset(row.get("term_ids") or ()),
        languages=frozenset(row["languages"]),
        text=row.get("search_text") or "",
        places=tuple(places),
        hours=tuple(Hours(**h) for h in row.get("opening_hours") or ()),
        minimum_age=row["minimum_age"],
        maximum_age=row["maximum_age"],
        area_zips=frozenset(row.get("service_area_zips") or ()),
        area_radius_km=row.get("service_area_radius_km") or 0.0,
        area_places=_stored_places(row.get("locations"))
        if located is not None and "locations" in row
        else None,
        capacity_available=row["capacity_available"],
        capacity_maximum=row["capacity_maximum"],
    )


def _stored_places(stored: list[dict[str, Any]] | None) -> tuple[Place, ...]:
    return tuple(
        Place(
            str(p["location_id"]),
            str(p.get("name") or ""),
            p.get("latitude"),
            p.get("longitude"),
            virtual=bool(p.get("virtual")),
        )
        for p in stored or ()
    )


async def services(
    session: AsyncSession, ids: Sequence[str], names: Sequence[str] = ()
) -> tuple[dict[str, directory_pb2.Service], list[dict[str, Any]]]:
    """The services' messages by id, and the columns ``names`` of each (for matching)."""
    if not ids:
        return {}, []
    table = ServiceRecord.__table__  # type: ignore[attr-defined]
    conn = await session.connection()
    statement = core_select(table.c.id, table.c.message, *[table.c[n] for n in names])
    rows = (await conn.execute(statement.where(table.c.id.in_(list(ids))))).all()
    messages = {row.id: directory_pb2.Service.FromString(row.message) for row in rows if row.message}
    if len(messages) < len(rows):  # records written before messages were kept: built from the columns
        older = [row.id for row in rows if not row.message]
        found = await session.exec(select(ServiceRecord).where(col(ServiceRecord.id).in_(older)))
        messages |= {r.id: to_proto(r) for r in found.all()}
    return messages, [dict(zip(names, row[2:], strict=True)) for row in rows]
