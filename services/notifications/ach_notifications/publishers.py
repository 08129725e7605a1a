"""What the notifications service publishes: NotificationDelivered, when a delivery reached its end."""

from __future__ import annotations

from datetime import datetime

from ach.notifications.v1 import notifications_pb2
from ach_events.outbox import Outbox
from ach_events.topics import NOTIFICATION_EVENTS
from ach_platform.clock import to_timestamp
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_notifications.store import DeliveryRecord


def publish_delivered(session: AsyncSession, outbox: Outbox, row: DeliveryRecord, at: datetime) -> None:
    """NotificationDelivered: a delivery reached its end (delivered, failed for good, withheld)."""
    outbox.add(
        session,
        NOTIFICATION_EVENTS,
        notifications_pb2.NotificationDelivered(
            delivery_id=row.id,
            partner_id=row.partner_id,
            channel=row.channel,
            subject_type=row.subject_type,
            subject_id=row.subject_id,
            status=row.status,  # type: ignore[arg-type]
            delivered_at=to_timestamp(at),
            attempts=row.attempts,
            reason=row.last_error,
        ),
        key=row.subject_id,
    )
