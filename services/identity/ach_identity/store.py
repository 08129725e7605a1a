"""The partner registry table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


class PartnerRecord(SQLModel, table=True):
    __tablename__ = "partner"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=300)
    type: str = Field(max_length=20)
    roles: list[str] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(max_length=20)
    version: int = 0
    created_at: datetime
    updated_at: datetime


class AuditRecord(SQLModel, table=True):
    """The append-only audit log of access to resident-level data (from every service)."""

    __tablename__ = "audit_record"

    id: str = Field(primary_key=True, max_length=36)
    at: datetime = Field(index=True)
    service: str = Field(max_length=50)
    method: str = Field(max_length=200)
    partner_id: str = Field(index=True, max_length=64)
    user_id: str = Field(max_length=200)
    credential: str = Field(max_length=10)
    purpose_of_use: str = Field(max_length=20)
    resources: dict[str, str] = Field(sa_column=Column(JSON, nullable=False))
    resident_id: str = Field(index=True, max_length=100)
    outcome: str = Field(max_length=40)
    trace_id: str = Field(max_length=32)
