"""What the notifications service publishes: NotificationDelivered, when a delivery reached its end;
ResidentFeedbackRecorded, when a resident answered the question after their referral closed."""

from __future__ import annotations

from datetime import datetime

from ach.notifications.v1 import notifications_pb2
from ach_events.outbox import Outbox
from ach_events.topics import NOTIFICATION_EVENTS
from ach_platform.clock import to_timestamp
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_notifications.store import DeliveryRecord, HelpQuestion


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


def publish_feedback(session: AsyncSession, outbox: Outbox, question: HelpQuestion) -> None:
    """ResidentFeedbackRecorded: the resident's own word on whether they got help (never the reply)."""
    assert question.answered_at is not None and question.got_help is not None
    outbox.add(
        session,
        NOTIFICATION_EVENTS,
        notifications_pb2.ResidentFeedbackRecorded(
            referral_id=question.referral_id,
            resident_id=question.resident_id,
            got_help=question.got_help,
            asked_at=to_timestamp(question.asked_at),
            answered_at=to_timestamp(question.answered_at),
            channel=question.channel,
        ),
        key=question.referral_id,
    )
