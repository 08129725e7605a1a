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


async def hsds_object(
    session: AsyncSession, entity: str, record_id: str, depth: int = 2
) -> dict[str, Any] | None:
    conn = await session.connection()
    table = HSDS_TABLES[entity]
    row = (await conn.execute(select(table).where(table.c.id == record_id))).mappings().first()
    if row is None:
        return None
    return await _nested(conn, entity, dict(row), depth)


async def _nested(conn: AsyncConnection, entity: str, row: dict[str, Any], depth: int) -> dict[str, Any]:
    out = hsds_values(row)
    if depth <= 0:
        return out
    spec = load_catalog().entities[entity]
    children = [(c.name, c.entity) for c in spec.children] + EXTRA_CHILDREN.get(entity, [])
    for name, child in children:
        if child not in HSDS_TABLES:
            continue
        table = HSDS_TABLES[child]
        link = "link_id" if child == "attribute" else "resource_id" if child == "metadata" else f"{entity}_id"
        if link not in table.c:
            continue
        rows = (
            await conn.execute(select(table).where(table.c[link] == row["id"]).order_by(table.c.id))
        ).mappings()
        nested = [await _nested(conn, child, dict(r), depth - 1) for r in rows]
        if nested:
            out[name] = nested
    if entity == "service_at_location" and row.get("location_id"):
        table = HSDS_TABLES["location"]
        found = (await conn.execute(select(table).where(table.c.id == row["location_id"]))).mappings().first()
        if found is not None:
            out["location"] = await _nested(conn, "location", dict(found), depth - 1)
    return out
