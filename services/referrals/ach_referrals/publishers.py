"""What the referral service publishes through the outbox, keyed by referral: created, status
changed (a party's words stay in the history; events carry reason codes), re-routed, and the
timers' reminders and escalations."""

from __future__ import annotations

from datetime import datetime

from ach.common.v1 import common_pb2
from ach.referrals.v1 import referrals_pb2
from ach_events.outbox import Outbox
from ach_events.topics import REFERRAL_EVENTS
from ach_platform.clock import as_utc, to_timestamp
from google.protobuf.message import Message
from opentelemetry import metrics
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_referrals import domain
from ach_referrals.mappers import outcome_to_proto, status_to_proto
from ach_referrals.store import (
    ReferralHistory,
    ReferralRecord,
)

# The referral funnel for the ops dashboard, counted when the change commits (a rolled-back change
# never happened). Stages, never ids: created, then each status it reaches, "need-met" for closings
# with the need met.
funnel = metrics.get_meter("ach_referrals.publishers").create_counter(
    "ach_referrals_funnel", unit="{referral}", description="Referrals reaching each stage, by stage"
)
STAGES = ("created", *(s.value for s in domain.Status), "need-met")
_COUNTED = "ach_referrals_funnel"


def count_stage(session: AsyncSession, stage: str) -> None:
    session.sync_session.info.setdefault(_COUNTED, []).append(stage)


@sa_event.listens_for(Session, "after_commit")
def _count_committed(session: Session) -> None:
    for stage in session.info.pop(_COUNTED, ()):
        funnel.add(1, {"stage": stage})


@sa_event.listens_for(Session, "after_rollback")
def _forget_uncommitted(session: Session) -> None:
    session.info.pop(_COUNTED, None)


def zero_funnel() -> None:
    """Every stage's series from the start, at 0."""
    for stage in STAGES:
        funnel.add(0, {"stage": stage})


class ReferralPublisher:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        zero_funnel()

    def publish(self, session: AsyncSession, referral_id: str, message: Message) -> None:
        """Any referral event, keyed by its referral (its events stay in order)."""
        self.outbox.add(session, REFERRAL_EVENTS, message, key=referral_id)

    def created(
        self,
        session: AsyncSession,
        r: ReferralRecord,
        information: referrals_pb2.ServiceInformation | None = None,
    ) -> None:
        count_stage(session, "created")
        self.outbox.add(
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
                draft_reason=r.draft_reason,
                informational=r.informational,
                service_information=information,
            ),
            key=r.id,
        )

    def reminder_sent(self, session: AsyncSession, r: ReferralRecord, number: int, now: datetime) -> None:
        self.publish(
            session,
            r.id,
            referrals_pb2.ReferralReminderSent(
                referral_id=r.id,
                need_domain=r.need_domain,
                target_partner_id=r.target_partner_id,
                status=status_to_proto(domain.Status(r.status)),
                number=number,
                last_activity_at=to_timestamp(as_utc(r.updated_at)),
                sent_at=to_timestamp(now),
            ),
        )

    def escalated(self, session: AsyncSession, r: ReferralRecord, now: datetime) -> None:
        self.publish(
            session,
            r.id,
            referrals_pb2.ReferralEscalated(
                referral_id=r.id,
                need_domain=r.need_domain,
                source_partner_id=r.source_partner_id,
                target_partner_id=r.target_partner_id,
                status=status_to_proto(domain.Status(r.status)),
                last_activity_at=to_timestamp(as_utc(r.updated_at)),
                escalated_at=to_timestamp(now),
            ),
        )

    def status_changed(self, session: AsyncSession, r: ReferralRecord, change: ReferralHistory) -> None:
        count_stage(session, change.to_status)
        if change.outcome == domain.Outcome.NEED_MET.value:
            count_stage(session, "need-met")
        self.outbox.add(
            session,
            REFERRAL_EVENTS,
            referrals_pb2.ReferralStatusChanged(
                referral_id=r.id,
                resident_id=r.resident_id,
                need_domain=r.need_domain,
                target_partner_id=r.target_partner_id,
                from_status=status_to_proto(domain.Status(change.from_status)),
                to_status=status_to_proto(domain.Status(change.to_status)),
                # A party's words stay in the history; events carry its code (minimum necessary).
                reason="" if change.actor_partner_id else change.reason,
                reason_code=change.reason_code,
                outcome=outcome_to_proto(change.outcome),
                changed_by=common_pb2.Actor(partner_id=change.actor_partner_id, user_id=change.actor_user_id),
                changed_at=to_timestamp(change.changed_at),
                sequence=change.sequence,
                source_partner_id=r.source_partner_id,
                internal=domain.is_internal(r.source_partner_id, r.target_partner_id),
            ),
            key=r.id,
        )

    def rerouted(
        self,
        session: AsyncSession,
        referral: ReferralRecord,
        previous_target: str,
        now: datetime,
        reason: str,
        *,
        actor_partner_id: str,
        actor_user_id: str,
        reason_code: str,
    ) -> None:
        self.outbox.add(
            session,
            REFERRAL_EVENTS,
            referrals_pb2.ReferralRerouted(
                referral_id=referral.id,
                need_domain=referral.need_domain,
                from_target_partner_id=previous_target,
                to_target_partner_id=referral.target_partner_id,
                to_target_service_id=referral.target_service_id,
                reason="" if actor_partner_id else reason,
                reason_code=reason_code,
                rerouted_by=common_pb2.Actor(partner_id=actor_partner_id, user_id=actor_user_id),
                rerouted_at=to_timestamp(now),
                sequence=referral.sequence,
            ),
            key=referral.id,
        )
