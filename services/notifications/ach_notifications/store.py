"""The delivery log partners and ops query, and who is the source of each referral."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class DeliveryRecord(SQLModel, table=True):
    __tablename__ = "delivery"

    id: str = Field(primary_key=True, max_length=36)
    partner_id: str = Field(index=True, max_length=100)
    channel: str = Field(max_length=20)
    subject_type: str = Field(max_length=50)
    subject_id: str = Field(index=True, max_length=100)
    event_type: str = Field(max_length=100)
    status: int
    attempts: int = 0
    source_event_id: str = Field(max_length=100)
    created_at: datetime
    delivered_at: datetime | None = None


class ReferralParty(SQLModel, table=True):
    """Source and target of each referral, learned from ReferralCreated (events carry ids only)."""

    __tablename__ = "referral_party"

    referral_id: str = Field(primary_key=True, max_length=36)
    source_partner_id: str = Field(max_length=100)
    target_partner_id: str = Field(max_length=100)
