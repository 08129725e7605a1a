"""The candidates of a search, narrowed by the database's indexes before matching decides in full,
and read lean: only the columns the query's filters need, as plain values (the full records are read
for the page returned only).

With a point and a radius, the located places in the box around it come first, with their
coordinates (the most selective filter: a few hundred of 100,000), the need domain and language
checked per place through their primary keys; only services with a place within the radius are read
further. Without a point, the need domain and language indexes narrow."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ach.directory.v1 import directory_pb2
from sqlalchemy import select as core_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_directory.domain.search import Candidate, Hours, Place, Query, bounding_box, distance_km
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


async def candidates(session: AsyncSession, q: Query) -> list[Candidate]:
    places: dict[str, list[Place]] | None = None
    ids: set[str] | None = None
    remote: set[str] = set()
    if q.point is not None and q.radius_km > 0:
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
        places = {}
        seen: set[tuple[str, str]] = set()
        # Core statements on the connection: the ORM's execution path costs more than these queries.
        conn = await session.connection()
        for service_id, location_id, lat, lon in (await conn.execute(statement)).all():
            if (service_id, location_id) not in seen and distance_km(q.point, (lat, lon)) <= q.radius_km:
                seen.add((service_id, location_id))  # once, though a key row per language matched
                places.setdefault(service_id, []).append(Place(location_id, "", lat, lon))
        ids = set(places)
        if q.resident_zip or q.near_zip:  # remote services match only by their service area
            online = _narrowed(select(ServiceRecord.id).where(col(ServiceRecord.remote)), q, ServiceRecord.id)
            remote = set((await session.exec(online)).all())
            ids |= remote
    table = ServiceRecord.__table__  # type: ignore[attr-defined]
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
    names += [name for name, needed in wanted.items() if needed]
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


async def records(session: AsyncSession, ids: Sequence[str]) -> dict[str, ServiceRecord]:
    """The full records of a page of results."""
    if not ids:
        return {}
    found = await session.exec(select(ServiceRecord).where(col(ServiceRecord.id).in_(list(ids))))
    return {r.id: r for r in found.all()}
