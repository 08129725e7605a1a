"""Which protobuf message an event type names (``ce_type`` is the message's full name)."""

from __future__ import annotations

from ach.audit.v1 import audit_pb2
from ach.directory.v1 import directory_pb2
from ach.funding.v1 import funding_pb2
from ach.identity.v1 import identity_pb2
from ach.notifications.v1 import notifications_pb2
from ach.partners.v1 import partners_pb2
from ach.referrals.v1 import referrals_pb2
from ach.residents.v1 import residents_pb2
from ach.screening.v1 import screening_pb2
from google.protobuf.message import Message


class EventTypeError(Exception):
    pass


EVENT_TYPES: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        screening_pb2.ScreeningCompleted,
        screening_pb2.NeedIdentified,
        screening_pb2.ScreeningDemographicsRecorded,
        referrals_pb2.ReferralCreated,
        referrals_pb2.ReferralStatusChanged,
        referrals_pb2.ReferralRerouted,
        referrals_pb2.ReferralReminderSent,
        referrals_pb2.ReferralEscalated,
        directory_pb2.ServiceChanged,
        notifications_pb2.NotificationDelivered,
        notifications_pb2.ResidentFeedbackRecorded,
        funding_pb2.TransactionPosted,
        identity_pb2.PartnerChanged,
        audit_pb2.AccessRecorded,
        residents_pb2.ConsentChanged,
        residents_pb2.ContactPreferenceChanged,
        residents_pb2.ResidentsMerged,
        residents_pb2.ResidentLinked,
        partners_pb2.ScreeningSubmitted,
        partners_pb2.ReferralStatusReported,
        partners_pb2.ScreeningAccepted,
        partners_pb2.ScreeningRejected,
        partners_pb2.ServiceUpdateReported,
        partners_pb2.ServiceUpdateRejected,
        partners_pb2.ReferralUpdateRejected,
    )
}


def message_class(event_type: str) -> type[Message]:
    try:
        return EVENT_TYPES[event_type]
    except KeyError:
        raise EventTypeError(f"unknown event type {event_type!r}") from None
