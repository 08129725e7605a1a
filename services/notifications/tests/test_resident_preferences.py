"""Which residents get a message about their referral, against a real database (SQLite and
PostgreSQL): the replica of their contact preference, and merged resident ids (a referral made under
an id merged into another is messaged by the surviving record's preference, as identity decides)."""

from __future__ import annotations

from ach.referrals.v1 import referrals_pb2
from ach.residents.v1 import residents_pb2
from ach_events.envelope import Envelope
from ach_events.outbox import Outbox
from ach_notifications.domain import RESIDENTS
from ach_notifications.store import DeliveryRecord
from ach_notifications.subscribers import NotificationSubscribers
from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

SURVIVOR, MERGED = "resident-survivor", "resident-merged"


def envelope(message: Message, key: str) -> Envelope:
    return Envelope.wrap(message, source="/ach/test", key=key)


async def handle(
    sessions: async_sessionmaker[AsyncSession],
    handler: str,
    message: Message,
    key: str,
) -> None:
    events = NotificationSubscribers(Outbox(source="/ach/notifications"), message_residents=True)
    async with sessions() as session, session.begin():
        await getattr(events, handler)(session, envelope(message, key), message)


def referral(referral_id: str, resident_id: str) -> referrals_pb2.ReferralCreated:
    return referrals_pb2.ReferralCreated(
        referral_id=referral_id,
        resident_id=resident_id,
        need_domain="food-insecurity",
        source_partner_id="clinic-1",
        target_partner_id="cbo-1",
        status=referrals_pb2.REFERRAL_STATUS_REQUESTED,
    )


async def resident_messages(sessions: async_sessionmaker[AsyncSession]) -> dict[str, tuple[str, str]]:
    """referral id -> (channel, resident id in the payload) of the messages queued for residents."""
    async with sessions() as session:
        found = await session.exec(select(DeliveryRecord).where(DeliveryRecord.partner_id == RESIDENTS))
        rows = found.all()
    return {r.subject_id: (r.channel, r.payload["resident_id"]) for r in rows}


async def test_a_referral_under_a_merged_id_follows_the_survivors_preference(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    preference = residents_pb2.ContactPreferenceChanged(
        preference=residents_pb2.ContactPreference(
            resident_id=SURVIVOR,
            channel=residents_pb2.CONTACT_CHANNEL_SMS,
            language="es",
            version=1,
        )
    )
    await handle(sessions, "on_contact_preference_changed", preference, SURVIVOR)

    await handle(sessions, "on_referral_created", referral("before-merge", MERGED), "before-merge")
    assert await resident_messages(sessions) == {}  # nothing known of this id yet: no message

    merged = residents_pb2.ResidentsMerged(survivor_id=SURVIVOR, merged_id=MERGED)
    await handle(sessions, "on_residents_merged", merged, SURVIVOR)
    await handle(sessions, "on_residents_merged", merged, SURVIVOR)  # a replay changes nothing
    await handle(sessions, "on_referral_created", referral("after-merge", MERGED), "after-merge")
    await handle(sessions, "on_referral_created", referral("survivor's", SURVIVOR), "survivor's")

    # Identity is asked with the referral's own resident id (it knows the merge too).
    assert await resident_messages(sessions) == {
        "after-merge": ("sms", MERGED),
        "survivor's": ("sms", SURVIVOR),
    }

    do_not_contact = residents_pb2.ContactPreferenceChanged(
        preference=residents_pb2.ContactPreference(resident_id=SURVIVOR, do_not_contact=True, version=2)
    )
    await handle(sessions, "on_contact_preference_changed", do_not_contact, SURVIVOR)
    await handle(sessions, "on_referral_created", referral("after-opt-out", MERGED), "after-opt-out")
    assert "after-opt-out" not in await resident_messages(sessions)
