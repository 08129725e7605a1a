"""Consumes screening, referral and notification events into the projection's facts (one row per
event, inserted once: a replay changes nothing). An event that cannot be placed in a period, or
lacks the ids that tie it to the rest, is dead-lettered naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from ach.funding.v1 import funding_pb2
from ach.notifications.v1 import notifications_pb2
from ach.referrals.v1 import referrals_pb2
from ach.screening.v1 import screening_pb2
from ach_events.consumer import EventHandler, PoisonEvent
from ach_events.envelope import Envelope
from ach_events.topics import (
    FUNDING_EVENTS,
    NOTIFICATION_EVENTS,
    REFERRAL_EVENTS,
    SCREENING_DEMOGRAPHICS,
    SCREENING_EVENTS,
)
from ach_platform.clock import from_timestamp
from ach_platform.codes import code_of
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_measurement.store import (
    ID,
    DeliveryFact,
    MoneyFact,
    NeedFact,
    ReferralChangeFact,
    ReferralFact,
    ReferralRerouteFact,
    ResidentFeedbackFact,
    ScreeningDemographicsFact,
    ScreeningFact,
    record,
)


def _placed(event_name: str, field: str, ts: Timestamp) -> datetime:
    at = from_timestamp(ts)
    if at is None:
        raise PoisonEvent(f"{event_name} without {field}: it cannot be placed in a period")
    return at


def _ids(event_name: str, limit: int = ID, **ids: str) -> None:
    for field, value in ids.items():
        if not value:
            raise PoisonEvent(f"{event_name} without {field}")
        if len(value) > limit:
            raise PoisonEvent(f"{event_name}: {field} is longer than {limit} characters")


async def on_screening_completed(
    session: AsyncSession, _e: Envelope, event: screening_pb2.ScreeningCompleted
) -> None:
    screened_at = _placed("ScreeningCompleted", "screened_at", event.screened_at)
    _ids("ScreeningCompleted", 36, screening_id=event.screening_id)
    _ids("ScreeningCompleted", resident_id=event.resident_id)
    await record(
        session,
        ScreeningFact,
        screening_id=event.screening_id,
        resident_id=event.resident_id,
        partner_id=event.screened_by.partner_id[:ID],
        site_id=event.site_id[:ID],
        screened_at=screened_at,
        positive_domains=sorted(set(event.positive_domains)),
        negative_domains=sorted(set(event.negative_domains)),
        consented=bool(event.consent_id),
    )


async def on_need_identified(
    session: AsyncSession, _e: Envelope, event: screening_pb2.NeedIdentified
) -> None:
    identified_at = _placed("NeedIdentified", "identified_at", event.identified_at)
    _ids("NeedIdentified", 36, need_id=event.need_id, screening_id=event.screening_id)
    _ids("NeedIdentified", 100, need_domain=event.need_domain)
    _ids("NeedIdentified", resident_id=event.resident_id)
    await record(
        session,
        NeedFact,
        need_id=event.need_id,
        screening_id=event.screening_id,
        resident_id=event.resident_id,
        need_domain=event.need_domain,
        partner_id=event.source_partner_id[:ID],
        identified_at=identified_at,
        consented=bool(event.consent_id),
    )


async def on_referral_created(
    session: AsyncSession, _e: Envelope, event: referrals_pb2.ReferralCreated
) -> None:
    created_at = _placed("ReferralCreated", "created_at", event.created_at)
    _ids("ReferralCreated", 36, referral_id=event.referral_id)
    _ids("ReferralCreated", resident_id=event.resident_id)
    await record(
        session,
        ReferralFact,
        referral_id=event.referral_id,
        resident_id=event.resident_id,
        need_id=event.need_id[:36],
        screening_id=event.screening_id[:36],
        need_domain=event.need_domain[:100],
        source_partner_id=event.source_partner_id[:ID],
        target_partner_id=event.target_partner_id[:ID],
        created_at=created_at,
        informational=event.informational,
    )


async def on_status_changed(
    session: AsyncSession, _e: Envelope, event: referrals_pb2.ReferralStatusChanged
) -> None:
    changed_at = _placed("ReferralStatusChanged", "changed_at", event.changed_at)
    _ids("ReferralStatusChanged", 36, referral_id=event.referral_id)
    if event.sequence <= 0:
        raise PoisonEvent("ReferralStatusChanged without sequence")
    to = code_of(referrals_pb2.ReferralStatus, event.to_status)
    outcome = code_of(referrals_pb2.ReferralOutcome, event.outcome)
    await record(
        session,
        ReferralChangeFact,
        referral_id=event.referral_id,
        sequence=event.sequence,
        to_status=to[:30],
        outcome=outcome[:30],
        reason_code=event.reason_code[:40],
        changed_at=changed_at,
        target_partner_id=event.target_partner_id[:ID],
    )


async def on_rerouted(session: AsyncSession, _e: Envelope, event: referrals_pb2.ReferralRerouted) -> None:
    rerouted_at = _placed("ReferralRerouted", "rerouted_at", event.rerouted_at)
    _ids("ReferralRerouted", 36, referral_id=event.referral_id)
    if event.sequence <= 0:
        raise PoisonEvent("ReferralRerouted without sequence")
    await record(
        session,
        ReferralRerouteFact,
        referral_id=event.referral_id,
        sequence=event.sequence,
        reason_code=(event.reason_code or "other")[:40],
        rerouted_at=rerouted_at,
        from_partner_id=event.from_target_partner_id[:ID],
        to_partner_id=event.to_target_partner_id[:ID],
    )


async def on_notification_delivered(
    session: AsyncSession, _e: Envelope, event: notifications_pb2.NotificationDelivered
) -> None:
    if event.status != notifications_pb2.DELIVERY_STATUS_DELIVERED:
        return  # attempts that failed are the notification service's own business
    delivered_at = _placed("NotificationDelivered", "delivered_at", event.delivered_at)
    _ids("NotificationDelivered", delivery_id=event.delivery_id)
    await record(
        session,
        DeliveryFact,
        delivery_id=event.delivery_id,
        channel=event.channel[:20],
        delivered_at=delivered_at,
    )


async def on_resident_feedback(
    session: AsyncSession, _e: Envelope, event: notifications_pb2.ResidentFeedbackRecorded
) -> None:
    answered_at = _placed("ResidentFeedbackRecorded", "answered_at", event.answered_at)
    _ids("ResidentFeedbackRecorded", 36, referral_id=event.referral_id)
    await record(
        session,
        ResidentFeedbackFact,
        referral_id=event.referral_id,
        got_help=event.got_help,
        answered_at=answered_at,
    )


async def on_demographics_recorded(
    session: AsyncSession, _e: Envelope, event: screening_pb2.ScreeningDemographicsRecorded
) -> None:
    screened_at = _placed("ScreeningDemographicsRecorded", "screened_at", event.screened_at)
    _ids("ScreeningDemographicsRecorded", 36, screening_id=event.screening_id)
    d = event.demographics
    await record(
        session,
        ScreeningDemographicsFact,
        screening_id=event.screening_id,
        resident_id=event.resident_id[:100],
        site_id=event.site_id[:100],
        screened_at=screened_at,
        race_codes=list(d.race_codes)[:6],
        ethnicity_code=d.ethnicity_code[:10],
        preferred_language=d.preferred_language[:35],
        age_band=d.age_band[:10],
        zip=d.zip[:5],
        neighbourhood=d.neighbourhood[:100],
    )


async def on_transaction_posted(
    session: AsyncSession, _e: Envelope, event: funding_pb2.TransactionPosted
) -> None:
    """Posted money only: a reservation moves none yet, and its release none at all."""
    t = event.transaction
    if t.phase != "posted":
        return
    posted_at = _placed("TransactionPosted", "transaction.created_at", t.created_at)
    _ids("TransactionPosted", 36, transaction_id=t.transaction_id)
    money = {"cash_in": 0, "cash_out": 0, "spent": 0}
    purpose = ""
    for entry in t.entries:
        debit = entry.side == funding_pb2.SIDE_DEBIT
        if entry.account_id == "cash":
            money["cash_in" if debit else "cash_out"] += entry.amount.cents
        elif debit and entry.account_id.startswith(("expense:", "cost-pool:")):
            money["spent"] += entry.amount.cents
            purpose = purpose or entry.account_id.split(":", 1)[1]
    source = t.metadata.get("stream_id") or (t.kind if money["cash_in"] else "")
    await record(
        session,
        MoneyFact,
        transaction_id=t.transaction_id,
        posted_at=posted_at,
        kind=t.kind[:50],
        source=source[:ID],
        purpose=purpose[:50],
        need_domain=t.metadata.get("need_domain", "")[:ID],
        referrals=1 if t.metadata.get("referral_id") and money["spent"] else 0,
        **money,
    )


TOPICS = [SCREENING_EVENTS, SCREENING_DEMOGRAPHICS, REFERRAL_EVENTS, NOTIFICATION_EVENTS, FUNDING_EVENTS]
HANDLERS: Mapping[type[Message] | str, EventHandler] = {
    screening_pb2.ScreeningCompleted: on_screening_completed,
    screening_pb2.NeedIdentified: on_need_identified,
    referrals_pb2.ReferralCreated: on_referral_created,
    referrals_pb2.ReferralStatusChanged: on_status_changed,
    referrals_pb2.ReferralRerouted: on_rerouted,
    notifications_pb2.NotificationDelivered: on_notification_delivered,
    notifications_pb2.ResidentFeedbackRecorded: on_resident_feedback,
    screening_pb2.ScreeningDemographicsRecorded: on_demographics_recorded,
    funding_pb2.TransactionPosted: on_transaction_posted,
}
