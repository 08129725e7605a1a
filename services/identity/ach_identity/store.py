"""The identity service's tables: the partner registry, the audit log, the resident index with
its partner links and merge history, consents, and the referral replica used to decide shares."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession


class PartnerRecord(SQLModel, table=True):
    __tablename__ = "partner"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=300)
    type: str = Field(max_length=20)
    roles: list[str] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(max_length=20)
    # Serial numbers (lowercase hex) of its client certificates that no longer authenticate.
    revoked_certificates: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )
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


class ResidentRecord(SQLModel, table=True):
    """The one place that holds who a resident is. The id is random (pseudonymous): nothing about
    the person can be read from it."""

    __tablename__ = "resident"

    id: str = Field(primary_key=True, max_length=36)
    given_name: str = Field(max_length=200)
    family_name: str = Field(max_length=200)
    birth_date: str = Field(max_length=10)
    phone: str = Field(default="", max_length=40)
    preferred_language: str = Field(default="", max_length=35)
    postal_code: str = Field(default="", max_length=20)
    name_dob_key: str = Field(index=True, max_length=420)
    phone_key: str = Field(default="", max_length=20)
    merged_into: str | None = Field(default=None, max_length=36, index=True)
    do_not_contact: bool = False
    preference_version: int = 0
    email: str = Field(default="", max_length=320)
    contact_channel: str = Field(default="", max_length=10)  # how the network messages them: "" | sms | email
    contact_language: str = Field(default="", max_length=35)  # for those messages; "" = preferred_language
    # The partner that set the contact preference: messages go to the address it supplied, and only
    # it (or the ACH admin) changes the preference, beyond turning "do not contact" on.
    preference_partner_id: str = Field(default="", max_length=64)
    created_at: datetime
    updated_at: datetime


class ResidentLink(SQLModel, table=True):
    """A partner's own id for a resident (MRN, client number), the network id it maps to, and what
    that partner supplied about the person: what it sees of them, whoever else knows them too."""

    __tablename__ = "resident_link"

    partner_id: str = Field(primary_key=True, max_length=64)
    partner_resident_id: str = Field(primary_key=True, max_length=100)
    resident_id: str = Field(index=True, max_length=36)
    created_at: datetime
    given_name: str = Field(default="", max_length=200)
    family_name: str = Field(default="", max_length=200)
    birth_date: str = Field(default="", max_length=10)
    phone: str = Field(default="", max_length=40)
    preferred_language: str = Field(default="", max_length=35)
    postal_code: str = Field(default="", max_length=20)
    email: str = Field(default="", max_length=320)


class ResidentMerge(SQLModel, table=True):
    """History of merges: who joined which two records, when and why. Never deleted."""

    __tablename__ = "resident_merge"

    id: str = Field(primary_key=True, max_length=36)
    survivor_id: str = Field(index=True, max_length=36)
    merged_id: str = Field(index=True, max_length=36)
    merged_by_partner_id: str = Field(max_length=64)
    merged_by_user_id: str = Field(default="", max_length=200)
    reason: str = ""
    merged_at: datetime


class ConsentRecord(SQLModel, table=True):
    __tablename__ = "consent"

    id: str = Field(primary_key=True, max_length=36)
    resident_id: str = Field(index=True, max_length=36)
    need_domains: list[str] = Field(sa_column=Column(JSON, nullable=False))
    partner_ids: list[str] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(max_length=20)
    given_at: datetime
    expires_at: datetime | None = None
    method: str = Field(max_length=20)
    recorded_by_partner_id: str = Field(max_length=64)
    recorded_by_user_id: str = Field(default="", max_length=200)
    revoked_at: datetime | None = None
    revocation_reason: str = ""
    version: int = 1


class ReferralReplica(SQLModel, table=True):
    """What the identity service knows of a referral (from the referral events) to decide a share:
    its resident, need domain and target. No resident data."""

    __tablename__ = "referral_replica"

    referral_id: str = Field(primary_key=True, max_length=36)
    resident_id: str = Field(index=True, max_length=100)
    need_domain: str = Field(max_length=100)
    target_partner_id: str = Field(default="", max_length=100)
    status: str = Field(default="", max_length=30)
    sequence: int = -1
    # Whose record of the resident the target may be shown (under that partner's consent).
    source_partner_id: str = Field(default="", max_length=100)


async def live_resident(session: AsyncSession, resident_id: str) -> ResidentRecord | None:
    """The resident an id names, following merges to the survivor."""
    record = await session.get(ResidentRecord, resident_id)
    seen: set[str] = set()
    while record is not None and record.merged_into and record.id not in seen:
        seen.add(record.id)
        record = await session.get(ResidentRecord, record.merged_into)
    return record


async def residents_with_key(session: AsyncSession, name_dob_key: str) -> list[ResidentRecord]:
    rows = await session.exec(
        select(ResidentRecord)
        .where(ResidentRecord.name_dob_key == name_dob_key, col(ResidentRecord.merged_into).is_(None))
        .order_by(col(ResidentRecord.created_at))
    )
    return list(rows.all())


async def links_of(session: AsyncSession, resident_ids: list[str]) -> list[ResidentLink]:
    rows = await session.exec(select(ResidentLink).where(col(ResidentLink.resident_id).in_(resident_ids)))
    return list(rows.all())


async def merged_ids_of(session: AsyncSession, survivor_id: str) -> list[str]:
    """Every id merged (directly or through earlier merges) into this resident."""
    found: list[str] = []
    frontier = [survivor_id]
    while frontier:
        rows = await session.exec(
            select(ResidentRecord.id).where(col(ResidentRecord.merged_into).in_(frontier))
        )
        frontier = list(rows.all())
        found.extend(frontier)
    return found


async def consents_of(session: AsyncSession, resident_ids: list[str]) -> list[ConsentRecord]:
    rows = await session.exec(
        select(ConsentRecord)
        .where(col(ConsentRecord.resident_id).in_(resident_ids))
        .order_by(col(ConsentRecord.given_at))
    )
    return list(rows.all())
