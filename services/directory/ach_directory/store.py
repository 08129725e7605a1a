"""Directory tables: the HSDS 3.0 records (one table per entity of the official schema, built from
it), and the service records the gRPC API keeps."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Float, Index, Integer, LargeBinary, String, Table, Text
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_directory.domain.hsds import Entity
from ach_directory.hsds_catalog import load_catalog


class ServiceRecord(SQLModel, table=True):
    """A service as search and the other services see it: summarised from its HSDS records (source
    "hsds-import"), or given through UpsertService (source "api"). Published as ServiceChanged."""

    __tablename__ = "service"

    id: str = Field(primary_key=True, max_length=100)
    organization_id: str = Field(index=True, max_length=100)
    name: str = Field(max_length=500)
    description: str = ""
    status: int
    need_domains: list[str] = Field(sa_column=Column(JSON, nullable=False))
    languages: list[str] = Field(sa_column=Column(JSON, nullable=False))
    # Claimed by the partner, awaiting the ACH admin's review: never matched until approved.
    claimed_need_domains: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )
    capacity_available: int = 0
    capacity_maximum: int = 0
    version: int = 0
    updated_at: datetime
    capacity_waitlist: int = 0
    minimum_age: int = 0
    maximum_age: int = 0
    eligibility_description: str = ""
    # [{"location_id", "name", "latitude", "longitude", "postal_code", "virtual"}]
    locations: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # [{"location_id", "rrule", "opens_at", "closes_at", "valid_from", "valid_to", "time_zone", "closed"}]
    opening_hours: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    service_area_zips: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    service_area_radius_km: float = 0.0
    term_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    search_text: str = ""
    source: str = Field(default="api", max_length=20)
    remote: bool = Field(default=False, index=True)  # has a virtual location: no distance limit
    reported_at: datetime | None = None  # the last partner report applied (reports apply in order)
    # The record as the Service message the API answers with, written by every change (projection's
    # index()): a search's page is then one parse per result, not JSON columns rebuilt into messages.
    message: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    # The network partner that runs it ("": none, information only), and what residents are told.
    partner_id: str = Field(default="", max_length=100, index=True)
    organization_name: str = Field(default="", max_length=500)
    phone: str = Field(default="", max_length=100)
    # Which summary format the record was written in: records older than the current one are
    # summarised and published again at start-up (SUMMARY_FORMAT in projection).
    summary_format: int = 0


class ServiceNeedDomain(SQLModel, table=True):
    """Search index: the need domains a service addresses."""

    __tablename__ = "service_need_domain"

    need_domain: str = Field(primary_key=True, max_length=60)
    service_id: str = Field(primary_key=True, max_length=100, index=True)


class ServiceLanguage(SQLModel, table=True):
    """Search index: the languages a service speaks, by primary subtag (es for es-MX)."""

    __tablename__ = "service_language"

    language: str = Field(primary_key=True, max_length=10)
    service_id: str = Field(primary_key=True, max_length=100, index=True)


class ServiceSearchKey(SQLModel, table=True):
    """Search index for the commonest query (a need, a language, near a place): one row per service
    place, need domain and language, so the database answers it from one index range."""

    __tablename__ = "service_search_key"
    __table_args__ = (
        Index("ix_service_search_key_domain_language_latitude", "need_domain", "language", "latitude"),
        Index("ix_service_search_key_domain_latitude", "need_domain", "latitude"),
    )

    need_domain: str = Field(primary_key=True, max_length=60)
    language: str = Field(primary_key=True, max_length=10)
    service_id: str = Field(primary_key=True, max_length=100, index=True)
    location_id: str = Field(primary_key=True, max_length=100)
    latitude: float
    longitude: float
    active: bool


class ServicePoint(SQLModel, table=True):
    """Search index: where a service is, one row per located place (latitude indexed for a box)."""

    __tablename__ = "service_point"

    service_id: str = Field(primary_key=True, max_length=100)
    location_id: str = Field(primary_key=True, max_length=100)
    latitude: float = Field(index=True)
    longitude: float


# The directory's own columns of an HSDS table, beside the entity's fields.
BOOKKEEPING = ("record_version", "record_modified_at")


def hsds_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored HSDS row as the record's fields: no bookkeeping, no empty fields, whole numbers as
    integers (a number column gives 12.0 back for 12)."""
    return {
        k: (int(v) if isinstance(v, float) and v.is_integer() else v)
        for k, v in row.items()
        if v is not None and k not in BOOKKEEPING
    }


def _hsds_table(entity: Entity) -> Table:
    """An HSDS entity's table: one column per field of its official schema (text or number), the
    references indexed, and the directory's bookkeeping (version, when it last changed)."""
    columns: list[Column[Any]] = []
    for f in entity.fields:
        if f.name == "id":
            columns.append(Column("id", String(100), primary_key=True))
        elif f.kind == "number":
            columns.append(Column(f.name, Float, nullable=True))
        else:
            columns.append(Column(f.name, Text, nullable=True, index=f.name.endswith("_id")))
    columns += [
        Column("record_version", Integer, nullable=False, server_default="1"),
        Column("record_modified_at", DateTime, nullable=False),
    ]
    return Table(f"hsds_{entity.name}", SQLModel.metadata, *columns)


HSDS_TABLES: dict[str, Table] = {
    name: _hsds_table(entity) for name, entity in load_catalog().entities.items()
}


async def services_with_claims(session: AsyncSession) -> list[ServiceRecord]:
    """Services with need domains claimed and not yet reviewed (few: scanned in Python, since JSON
    emptiness reads differently on SQLite and PostgreSQL)."""
    rows = await session.exec(select(ServiceRecord).where(ServiceRecord.source == "api"))
    return [r for r in rows.all() if r.claimed_need_domains]
