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
