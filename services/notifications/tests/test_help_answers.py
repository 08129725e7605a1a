"""Residents' answers to the question after a referral closed, against a real database (SQLite and
PostgreSQL): a reply answers the newest open question sent to that number, once, even when replies
arrive at the same time or the gateway posts one again; an expired question takes no answer; the
answer is published with it (outbox) and nothing of the reply or the number is kept."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from ach_events.outbox import Outbox
from ach_notifications import domain
from ach_notifications.answer_pages import AnswerPages
from ach_notifications.sms_replies import SmsReplies
from ach_notifications.store import HelpQuestion
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select, text
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request

KEY = b"k" * 32
NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
PHONE = "209-555-0100"


def question(referral_id: str, asked_days_ago: float, phone: str = PHONE) -> HelpQuestion:
    asked = NOW - timedelta(days=asked_days_ago)
    return HelpQuestion(
        id=f"delivery-{referral_id}",
        referral_id=referral_id,
        resident_id="resident-1",
        language="es",
        channel="sms",
        reply_key=domain.address_digest(KEY, phone),
        asked_at=asked,
        open_until=asked + domain.QUESTION_OPEN,
    )


async def test_a_reply_answers_one_open_question_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        session.add(question("referral-old", 3))
        session.add(question("referral-new", 1))
        session.add(question("referral-expired", 20))
        session.add(question("referral-other-phone", 1, phone="209-555-0111"))
    replies = SmsReplies(sessions, Outbox(source="/ach/notifications"), "token", "http://x/sms/replies", KEY)

    # Five replies at once from the resident's phone: two questions are open, so two answers.
    outcomes = await asyncio.gather(
        *(replies.answer("+12095550100", "Sí", f"SM{i}", now=NOW) for i in range(5))
    )
    assert sorted(o for o, _ in outcomes) == ["answered", "answered", "unmatched", "unmatched", "unmatched"]
    assert all("Gracias" in t for o, t in outcomes if o == "answered")
    assert await replies.answer("+12095550100", "Sí", "SM0", now=NOW) == (
        "repeated",
        domain.resident_message(domain.HELP_THANKS, "es", "").text,
    )
    assert (await replies.answer("+12095550111", "tal vez", "SM9", now=NOW))[0] == "unclear"

    async with sessions() as session:
        answered = {
            q.referral_id: q.got_help
            for q in (await session.exec(select(HelpQuestion))).all()
            if q.answered_at
        }
        events = (
            await session.exec(text("SELECT event_type, payload FROM outbox_event"))  # type: ignore[call-overload]
        ).all()
    assert answered == {"referral-new": True, "referral-old": True}  # never the expired one
    assert [t for t, _ in events] == ["ach.notifications.v1.ResidentFeedbackRecorded"] * 2
    # The phone's digits, not "209" alone: an event id holds that by chance.
    assert not any(part in bytes(p) for _, p in events for part in (b"5550100", b"555-0100", "Sí".encode()))


def _request(method: str, token: str, body: bytes = b"") -> Request:
    scope = {
        "type": "http",
        "method": method,
        "path": f"/answers/{token}",
        "path_params": {"token": token},
        "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
        "query_string": b"",
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


async def test_an_emailed_link_answers_once_when_pressed_twice_at_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    token = "t" * 32
    async with sessions() as session, session.begin():
        asked = question("referral-mail", 1)
        asked.channel, asked.reply_key = "email", domain.link_digest(KEY, token)
        session.add(asked)
    pages = AnswerPages(sessions, Outbox(source="/ach/notifications"), KEY)
    opened = await pages.answer(_request("GET", token))
    assert opened.status_code == 200 and b'value="no"' in bytes(opened.body)
    pressed = await asyncio.gather(
        *(pages.answer(_request("POST", token, f"answer={a}".encode())) for a in ("no", "yes") * 4)
    )
    assert all(p.status_code == 200 and b"Gracias" in bytes(p.body) for p in pressed)
    async with sessions() as session:
        events = (
            await session.exec(text("SELECT payload FROM outbox_event"))  # type: ignore[call-overload]
        ).all()
    assert len(events) == 1  # one answer, whichever came first
    assert (await pages.answer(_request("GET", "u" * 32))).status_code == 404
