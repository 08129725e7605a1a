"""What the resident index's servicers ask of its tables: a resident or NotFound, a person's ids,
who supplied what, where a referral's messages go, which partners are admins and CBOs."""

from __future__ import annotations

from ach_platform.errors import (
    InvalidArgument,
    NotFound,
)
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_identity.store import (
    PartnerRecord,
    ResidentLink,
    ResidentRecord,
    links_of,
    live_resident,
    merged_ids_of,
)


async def require_resident(
    session: AsyncSession, resident_id: str, field: str = "resident_id"
) -> ResidentRecord:
    if not resident_id:
        raise InvalidArgument.of(field, "is required")
    record = await live_resident(session, resident_id)
    if record is None:
        raise NotFound(f"resident {resident_id} not found")
    return record


async def resident_ids(session: AsyncSession, survivor: ResidentRecord) -> list[str]:
    """The survivor's id and every id merged into it: consents given under any of them count."""
    return [survivor.id, *await merged_ids_of(session, survivor.id)]


async def is_admin(session: AsyncSession, partner_id: str) -> bool:
    partner = await session.get(PartnerRecord, partner_id)
    return partner is not None and "ach-admin" in partner.roles


async def admin_ids(session: AsyncSession) -> set[str]:
    rows = await session.exec(select(PartnerRecord))
    return {p.id for p in rows.all() if "ach-admin" in p.roles}


async def supplied_by(session: AsyncSession, ids: list[str], partner_id: str) -> ResidentLink | None:
    """What a partner supplied about the person (its first link among the person's ids)."""
    own = sorted(
        (k for k in await links_of(session, ids) if k.partner_id == partner_id), key=lambda k: k.created_at
    )
    return own[0] if own else None


async def addresses_for_messages(
    session: AsyncSession, resident: ResidentRecord, ids: list[str], source_partner_id: str
) -> ResidentRecord | ResidentLink | None:
    """Where the network's messages about a referral go: the addresses the referral's source
    supplied, so a partner matched to the resident later never redirects them to an address of its
    own (the index's record for a referral replicated before sources were kept)."""
    if source_partner_id:
        return await supplied_by(session, ids, source_partner_id)
    return resident


async def cbo_ids(session: AsyncSession) -> set[str]:
    rows = await session.exec(select(PartnerRecord.id).where(col(PartnerRecord.type) == "cbo"))
    return set(rows.all())
