"""HSDS records read back as HSDS 3.0 JSON: a record with the records nested under it, as the
official examples nest them (an organization with its services and locations, a location with its
addresses, phones and schedules), without empty fields."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_directory.hsds_catalog import load_catalog
from ach_directory.store import HSDS_TABLES, hsds_values

EXTRA_CHILDREN = {"organization": [("services", "service")]}  # nested in organization_full.json


CHUNK = 500


async def hsds_object(
    session: AsyncSession, entity: str, record_id: str, depth: int = 2
) -> dict[str, Any] | None:
    conn = await session.connection()
    table = HSDS_TABLES[entity]
    row = (await conn.execute(select(table).where(table.c.id == record_id))).mappings().first()
    if row is None:
        return None
    return (await hsds_objects(conn, entity, [dict(row)], depth))[0]


async def hsds_objects(
    conn: AsyncConnection, entity: str, rows: list[dict[str, Any]], depth: int
) -> list[dict[str, Any]]:
    """The rows as HSDS objects with ``depth`` levels of their records nested under them. One
    query per child table for all the rows at once (a page of organizations in full is a few dozen
    queries, not one per record and child table)."""
    out = [hsds_values(row) for row in rows]
    if depth <= 0 or not rows:
        return out
    ids = [str(row["id"]) for row in rows]
    spec = load_catalog().entities[entity]
    children = [(c.name, c.entity) for c in spec.children] + EXTRA_CHILDREN.get(entity, [])
    for name, child in children:
        if child not in HSDS_TABLES:
            continue
        table = HSDS_TABLES[child]
        link = "link_id" if child == "attribute" else "resource_id" if child == "metadata" else f"{entity}_id"
        if link not in table.c:
            continue
        found = await _rows_where_in(conn, child, link, ids)
        nested = await hsds_objects(conn, child, found, depth - 1)
        by_parent: dict[str, list[dict[str, Any]]] = {}
        for row, value in zip(found, nested, strict=True):
            by_parent.setdefault(str(row[link]), []).append(value)
        for row, value in zip(rows, out, strict=True):
            if by_parent.get(str(row["id"])):
                value[name] = by_parent[str(row["id"])]
    if entity == "service_at_location":
        wanted = sorted({str(row["location_id"]) for row in rows if row.get("location_id")})
        places = await _rows_where_in(conn, "location", "id", wanted)
        located = dict(
            zip(
                (str(p["id"]) for p in places),
                await hsds_objects(conn, "location", places, depth - 1),
                strict=True,
            )
        )
        for row, value in zip(rows, out, strict=True):
            if row.get("location_id") and str(row["location_id"]) in located:
                value["location"] = located[str(row["location_id"])]
    return out


async def _rows_where_in(
    conn: AsyncConnection, entity: str, column: str, values: list[str]
) -> list[dict[str, Any]]:
    """The entity's rows whose ``column`` is one of ``values``, ordered by id (as one would list them
    record by record)."""
    table = HSDS_TABLES[entity]
    found: list[dict[str, Any]] = []
    for i in range(0, len(values), CHUNK):
        statement = select(table).where(table.c[column].in_(values[i : i + CHUNK])).order_by(table.c.id)
        found += [dict(r) for r in (await conn.execute(statement)).mappings()]
    if len(values) > CHUNK:
        found.sort(key=lambda r: str(r["id"]))
    return found
