"""Consumes referral events and records one delivery per notice. The channel for now is the
delivery log itself ("log"); webhooks and e-mail with retries come with partner registration."""

from __future__ import annotations

import uuid

from ach.notifications.v1 import notifications_pb2
from ach.referrals.v1 import referrals_pb2
from ach_events.consumer import require_fields
from ach_events.envelope import Envelope
from ach_events.outbox import Outbox
from ach_events.topics import NOTIFICATION_EVENTS
from ach_platform.clock import to_timestamp, utc_now
from ach_platform.codes import code_of
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_notifications import domain
from ach_notifications.store import DeliveryRecord, ReferralParty


class NotificationEvents:
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    async def on_referral_created(
        self, session: AsyncSession, envelope: Envelope, event: referrals_pb2.ReferralCreated
    ) -> None:
        require_fields(event, "referral_id", "source_partner_id")
        session.add(
            ReferralParty(
                referral_id=event.referral_id,
                source_partner_id=event.source_partner_id,
                target_partner_id=event.target_partner_id,
            )
        )
        await self._deliver(
            session, envelope, domain.notices_for_referral_created(event.referral_id, event.target_partner_id)
        )

    async def on_status_changed(
        self, session: AsyncSession, envelope: Envelope, event: referrals_pb2.ReferralStatusChanged
    ) -> None:
        require_fields(event, "referral_id")
        party = await session.get(ReferralParty, event.referral_id)
        source = party.source_partner_id if party else ""
        await self._deliver(
            session,
            envelope,
            domain.notices_for_status_changed(
                event.referral_id,
                source,
                event.target_partner_id,
                event.changed_by.partner_id,
                code_of(referrals_pb2.ReferralStatus, event.to_status),
            ),
        )

    async def _deliver(self, session: AsyncSession, envelope: Envelope, notices: list[domain.Notice]) -> None:
        now = utc_now()
        for notice in notices:
            delivery = DeliveryRecord(
                id=str(uuid.uuid4()),
                partner_id=notice.partner_id,
                channel="log",
                subject_type=notice.subject_type,
                subject_id=notice.subject_id,
                event_type=notice.event_type,
                status=notifications_pb2.DELIVERY_STATUS_DELIVERED,
                attempts=1,
                source_event_id=envelope.id,
                created_at=now,
                delivered_at=now,
            )
            session.add(delivery)
            self._outbox.add(
                session,
                NOTIFICATION_EVENTS,
                notifications_pb2.NotificationDelivered(
                    delivery_id=delivery.id,
                    partner_id=delivery.partner_id,
                    channel=delivery.channel,
                    subject_type=delivery.subject_type,
                    subject_id=delivery.subject_id,
                    status=notifications_pb2.DELIVERY_STATUS_DELIVERED,
                    delivered_at=to_timestamp(now),
                ),
                key=notice.subject_id,
            )
