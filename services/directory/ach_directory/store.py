"""Directory tables (HSDS service subset for now; the full HSDS 3.0 model comes with its import)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


class ServiceRecord(SQLModel, table=True):
    __tablename__ = "service"

    id: str = Field(primary_key=True, max_length=100)
    organization_id: str = Field(index=True, max_length=100)
    name: str = Field(max_length=500)
    description: str = ""
    status: int
    need_domains: list[str] = Field(sa_column=Column(JSON, nullable=False))
    languages: list[str] = Field(sa_column=Column(JSON, nullable=False))
    capacity_available: int = 0
    capacity_maximum: int = 0
    version: int = 0
    updated_at: datetime
