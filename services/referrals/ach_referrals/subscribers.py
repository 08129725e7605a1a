"""What the referral service consumes."""

from __future__ import annotations

from ach.directory.v1 import directory_pb2
from ach.partners.v1 import partners_pb2
from ach.screening.v1 import screening_pb2
from ach_events.consumer import require_fields
from ach_events.envelope import Envelope
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_referrals.mappers import HOURS_FIELDS
from ach_referrals.status_changes import apply_status_report
from ach_referrals.store import (
    DirectoryServiceReplica,
)
from ach_referrals.workflow import ReferralWorkflow


class ReferralSubscribers:
    """The events the referral service consumes, translated and handed to the workflow: identified
    needs, the directory's service changes (kept as a replica) and CBOs' status reports from their
    own systems. (The resident events are kept by ``replica_handlers``, whose consent and merge
    changes the workflow acts on.)"""

    def __init__(self, workflow: ReferralWorkflow) -> None:
        self._workflow = workflow

    async def on_service_changed(
        self, session: AsyncSession, envelope: Envelope, event: directory_pb2.ServiceChanged
    ) -> None:
        """Keep the local directory replica; an older version than the one held is ignored."""
        require_fields(event, "service")
        require_fields(event.service, "service_id", "organization_id")
        svc = event.service
        current = await session.get(DirectoryServiceReplica, svc.service_id)
        if current is not None and current.version >= event.version:
            return
        replica = current or DirectoryServiceReplica(
            service_id=svc.service_id,
            organization_id="",
            need_domains=[],
            languages=[],
            active=False,
            capacity_available=0,
            version=0,
        )
        replica.organization_id = svc.organization_id
        replica.need_domains = list(svc.need_domains)
        replica.languages = list(svc.languages)
        replica.active = svc.status == directory_pb2.SERVICE_STATUS_ACTIVE
        replica.capacity_available = svc.capacity_available
        replica.version = event.version
        replica.places = [[p.latitude, p.longitude] for p in svc.locations if not p.virtual]
        replica.minimum_age, replica.maximum_age = svc.minimum_age, svc.maximum_age
        replica.area_zips = list(svc.service_area_zips)
        replica.area_radius_km = svc.service_area_radius_km
        replica.opening_hours = [{f: getattr(h, f) for f in HOURS_FIELDS} for h in svc.opening_hours]
        replica.partner_id = svc.partner_id
        replica.name = svc.name[:500]
        replica.organization_name = svc.organization_name[:500]
        replica.phone = svc.phone[:100]
        replica.address = next((p.address for p in svc.locations if p.address and not p.virtual), "")[:500]
        session.add(replica)

    async def on_need_identified(
        self, session: AsyncSession, envelope: Envelope, need: screening_pb2.NeedIdentified
    ) -> None:
        require_fields(need, "need_id", "resident_id", "need_domain", "source_partner_id")
        await self._workflow.place_for_need(session, need)

    async def on_referral_status_reported(
        self, session: AsyncSession, envelope: Envelope, event: partners_pb2.ReferralStatusReported
    ) -> None:
        """Admitted by the gateway under the partner's identity: the source says who reports."""
        await apply_status_report(session, self._workflow, envelope.source.removeprefix("/partners/"), event)
