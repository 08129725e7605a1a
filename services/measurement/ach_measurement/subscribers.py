"""Consumes screening, referral and notification events into the funnel projection. Idempotency
comes from the inbox (each event counted once), ordering does not matter for counters."""

from __future__ import annotations

from ach.notifications.v1 import notifications_pb2
from ach.referrals.v1 import referrals_pb2
from ach.screening.v1 import screening_pb2
from ach_events.consumer import PoisonEvent
from ach_events.envelope import Envelope
from ach_platform.clock import from_timestamp
from ach_platform.codes import code_of
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_measurement import domain
from ach_measurement.store import ScreeningDemographicsFact, increment


async def on_screening_completed(
    session: AsyncSession, _e: Envelope, _event: screening_pb2.ScreeningCompleted
) -> None:
    await increment(session, domain.SCREENINGS_COMPLETED, domain.ALL_DOMAINS)


async def on_need_identified(
    session: AsyncSession, _e: Envelope, event: screening_pb2.NeedIdentified
) -> None:
    for metric, need_domain in domain.per_domain(domain.NEEDS_IDENTIFIED, event.need_domain):
        await increment(session, metric, need_domain)


async def on_referral_created(
    session: AsyncSession, _e: Envelope, event: referrals_pb2.ReferralCreated
) -> None:
    for metric, need_domain in domain.referral_created_counters(event.informational, event.need_domain):
        await increment(session, metric, need_domain)


async def on_status_changed(
    session: AsyncSession, _e: Envelope, event: referrals_pb2.ReferralStatusChanged
) -> None:
    to = code_of(referrals_pb2.ReferralStatus, event.to_status)
    outcome = code_of(referrals_pb2.ReferralOutcome, event.outcome)
    for metric, need_domain in domain.status_change_counters(to, outcome, event.need_domain):
        await increment(session, metric, need_domain)


async def on_notification_delivered(
    session: AsyncSession, _e: Envelope, event: notifications_pb2.NotificationDelivered
) -> None:
    if event.status == notifications_pb2.DELIVERY_STATUS_DELIVERED:
        await increment(session, domain.NOTIFICATIONS_DELIVERED, domain.ALL_DOMAINS)


async def on_demographics_recorded(
    session: AsyncSession, _e: Envelope, event: screening_pb2.ScreeningDemographicsRecorded
) -> None:
    screened_at = from_timestamp(event.screened_at)
    if screened_at is None or not event.screening_id:
        raise PoisonEvent("ScreeningDemographicsRecorded without screening_id or screened_at")
    if await session.get(ScreeningDemographicsFact, event.screening_id) is not None:
        return
    d = event.demographics
    session.add(
        ScreeningDemographicsFact(
            screening_id=event.screening_id,
            resident_id=event.resident_id,
            site_id=event.site_id,
            screened_at=screened_at,
            race_codes=list(d.race_codes),
            ethnicity_code=d.ethnicity_code,
            preferred_language=d.preferred_language,
            age_band=d.age_band,
            zip=d.zip,
            neighbourhood=d.neighbourhood,
        )
    )
