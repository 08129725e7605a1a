"""Idempotent consumers: the id of every processed event is recorded in the same transaction as
the handler's effects, so a redelivered event has no second effect."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel


class InboxEvent(SQLModel, table=True):
    __tablename__ = "inbox_event"

    consumer: str = Field(primary_key=True, max_length=100)
    event_id: str = Field(primary_key=True, max_length=100)
    event_type: str = Field(max_length=200)
    topic: str = Field(max_length=200)
    partition: int
    offset: int = Field(sa_type=BigInteger)
    processed_at: datetime = Field(index=True)  # pruning deletes by age
