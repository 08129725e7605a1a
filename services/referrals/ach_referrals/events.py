"""What the referral service consumes (identified needs, the directory's service changes) and
publishes (referral created, status changed)."""

from __future__ import annotations

import logging
import uuid

from ach.common.v1 import common_pb2
from ach.directory.v1 import directory_pb2
from ach.referrals.v1 import referrals_pb2
from ach.screening.v1 import screening_pb2
from ach_events.consumer import require_fields
from ach_events.envelope import Envelope
from ach_events.outbox import Outbox
from ach_events.topics import REFERRAL_EVENTS
from ach_platform.clock import to_timestamp, utc_now
from ach_platform.codes import code_of, value_of
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_referrals import domain
from ach_referrals.store import (
    DirectoryServiceReplica,
    ReferralHistory,
    ReferralRecord,
    referral_for_need,
    replica_services,
)

log = logging.getLogger(__name__)


def status_to_proto(status: domain.Status) -> referrals_pb2.ReferralStatus.ValueType:
    value: referrals_pb2.ReferralStatus.ValueType = value_of(referrals_pb2.ReferralStatus, status.value)
    return value


def status_from_proto(value: int) -> domain.Status | None:
    code = code_of(referrals_pb2.ReferralStatus, value)
    return domain.Status(code) if code else None


def outcome_to_proto(outcome: str) -> referrals_pb2.ReferralOutcome.ValueType:
    value: referrals_pb2.ReferralOutcome.ValueType = value_of(referrals_pb2.ReferralOutcome, outcome)
    return value


def outcome_from_proto(value: int) -> domain.Outcome | None:
    code = code_of(referrals_pb2.ReferralOutcome, value)
    return domain.Outcome(code) if code else None


class ReferralEvents:
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

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
        session.add(replica)

    async def on_need_identified(
        self, session: AsyncSession, envelope: Envelope, need: screening_pb2.NeedIdentified
    ) -> None:
        """Place a referral for the need with the best-matching service of the local replica.
        With no match the referral stays a draft for the source to route by hand."""
        require_fields(need, "need_id", "resident_id", "need_domain", "source_partner_id")
        if await referral_for_need(session, need.need_id) is not None:
            return
        candidates = [
            domain.CandidateService(
                r.service_id,
                r.organization_id,
                tuple(r.need_domains),
                tuple(r.languages),
                r.active,
                r.capacity_available,
            )
            for r in await replica_services(session)
        ]
        matches = domain.rank_targets(candidates, need.need_domain, need.language)
        now = utc_now()
        referral = ReferralRecord(
            id=str(uuid.uuid4()),
            resident_id=need.resident_id,
            need_domain=need.need_domain,
            need_id=need.need_id,
            screening_id=need.screening_id,
            language=need.language or "en",
            source_partner_id=need.source_partner_id,
            status=(domain.Status.REQUESTED if matches else domain.Status.DRAFT).value,
            created_at=now,
            updated_at=now,
        )
        if matches:
            referral.target_partner_id = matches[0].service.organization_id
            referral.target_service_id = matches[0].service.service_id
        session.add(referral)
        self.publish_created(session, referral)

    def publish_created(self, session: AsyncSession, r: ReferralRecord) -> None:
        self._outbox.add(
            session,
            REFERRAL_EVENTS,
            referrals_pb2.ReferralCreated(
                referral_id=r.id,
                resident_id=r.resident_id,
                need_domain=r.need_domain,
                source_partner_id=r.source_partner_id,
                target_partner_id=r.target_partner_id,
                target_service_id=r.target_service_id,
                status=status_to_proto(domain.Status(r.status)),
                screening_id=r.screening_id,
                need_id=r.need_id,
                created_at=to_timestamp(r.created_at),
            ),
            key=r.id,
        )

    def publish_status_changed(
        self, session: AsyncSession, r: ReferralRecord, change: ReferralHistory
    ) -> None:
        self._outbox.add(
            session,
            REFERRAL_EVENTS,
            referrals_pb2.ReferralStatusChanged(
                referral_id=r.id,
                resident_id=r.resident_id,
                need_domain=r.need_domain,
                target_partner_id=r.target_partner_id,
                from_status=status_to_proto(domain.Status(change.from_status)),
                to_status=status_to_proto(domain.Status(change.to_status)),
                reason=change.reason,
                outcome=outcome_to_proto(change.outcome),
                changed_by=common_pb2.Actor(partner_id=change.actor_partner_id, user_id=change.actor_user_id),
                changed_at=to_timestamp(change.changed_at),
                sequence=change.sequence,
            ),
            key=r.id,
        )
