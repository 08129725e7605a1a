"""Which partners a stored resource of the identity service belongs to, for the access policy."""

from __future__ import annotations

from ach_platform.access import OwnerResolver
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_identity.resident_queries import (
    resident_ids,
)
from ach_identity.store import (
    ConsentRecord,
    links_of,
    live_resident,
)

Sessions = async_sessionmaker[AsyncSession]


def owner_resolvers(sessions: Sessions) -> dict[str, OwnerResolver]:
    async def resident_owners(resident_id: str) -> set[str] | None:
        """The partners that have the resident on their own books (a link)."""
        async with sessions() as session:
            resident = await live_resident(session, resident_id)
            if resident is None:
                return None
            return {k.partner_id for k in await links_of(session, await resident_ids(session, resident))}

    async def consent_owners(consent_id: str) -> set[str] | None:
        async with sessions() as session:
            consent = await session.get(ConsentRecord, consent_id)
        return await resident_owners(consent.resident_id) if consent else None

    return {"resident": resident_owners, "consent": consent_owners}
