"""Which network partner an HSDS organization is: its organization identifier of scheme
"ach-partner", from an import or set by the ACH admin (LinkOrganization). Only services of partner
organizations receive referrals; every other service is information for residents."""

from __future__ import annotations

import uuid

from ach_events.outbox import Outbox
from ach_platform.clock import utc_now
from sqlalchemy import delete, insert, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_directory.domain.summary import PARTNER_SCHEME
from ach_directory.projection import apply
from ach_directory.store import HSDS_TABLES
from ach_directory.summary_queries import summaries


async def link_organization(
    session: AsyncSession, outbox: Outbox, organization_id: str, partner_id: str
) -> int | None:
    """The organization is that partner (an empty partner_id: no partner): its ach-partner
    identifiers replaced by one, its services summarised again and the changed ones published.
    None when there is no such organization; otherwise how many services changed."""
    conn = await session.connection()
    organizations = HSDS_TABLES["organization"]
    found = await conn.execute(select(organizations.c.id).where(organizations.c.id == organization_id))
    if found.first() is None:
        return None
    identifiers = HSDS_TABLES["organization_identifier"]
    await conn.execute(
        delete(identifiers).where(
            identifiers.c.organization_id == organization_id,
            identifiers.c.identifier_scheme == PARTNER_SCHEME,
        )
    )
    if partner_id:
        await conn.execute(
            insert(identifiers).values(
                id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"ach:partner-link:{organization_id}")),
                organization_id=organization_id,
                identifier_scheme=PARTNER_SCHEME,
                identifier_type="ACH network partner id",
                identifier=partner_id,
                record_version=1,
                record_modified_at=utc_now().replace(tzinfo=None),
            )
        )
    services = HSDS_TABLES["service"]
    ids = {
        str(r[0])
        for r in await conn.execute(
            select(services.c.id).where(services.c.organization_id == organization_id)
        )
    }
    return await apply(session, outbox, await summaries(session, ids)) if ids else 0
