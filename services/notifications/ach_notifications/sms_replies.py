"""Residents' replies by text message (community voice): the SMS gateway posts each reply here
(Twilio's inbound-message webhook: a form with From, Body and MessageSid, signed with the gateway's
token in X-Twilio-Signature). A signed reply to an open question is the resident's answer: kept
once, published (ResidentFeedbackRecorded) in the same transaction, and thanked in the question's
language. The reply's text and the number are never stored, logged or traced: only a yes or a no,
and the number's keyed digest to find the question."""

from __future__ import annotations

import logging
from datetime import datetime
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from ach_events.outbox import Outbox
from ach_platform.clock import as_utc, utc_now
from opentelemetry import metrics
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ach_notifications import domain
from ach_notifications.publishers import publish_feedback
from ach_notifications.store import HelpQuestion

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024  # a gateway's form: a few fields, a message of at most 1,600 characters
PATH = "/sms/replies"

meter = metrics.get_meter("ach_notifications")
replies = meter.create_counter(
    "ach_resident_replies",
    description="Residents' text replies, by outcome (answered, unclear, unmatched, repeated, refused)",
)


async def bounded_form(request: Request, limit: int) -> dict[str, str] | None:
    """A posted form's fields (the first value of each), read no further than ``limit`` bytes;
    None when the body is larger."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=100, keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


def twiml(text: str = "") -> Response:
    """The gateway's answer: a message back to the resident, or none."""
    inner = f"<Message>{escape(text)}</Message>" if text else ""
    return Response(
        f'<?xml version="1.0" encoding="UTF-8"?><Response>{inner}</Response>', media_type="text/xml"
    )


class SmsReplies:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        token: str,
        public_url: str,
        digest_key: bytes,
    ) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._token = token  # the gateway's auth token: it signs what it posts
        self._url = public_url  # the URL the gateway posts to, as configured there (it is signed)
        self._key = digest_key
        for outcome in ("answered", "unmatched", "refused"):  # every series from the start, at 0
            replies.add(0, {"outcome": outcome})

    def routes(self) -> list[Route]:
        return [Route(PATH, self.receive, methods=["POST"])]

    async def receive(self, request: Request) -> Response:
        form = await bounded_form(request, MAX_BODY)
        if form is None:
            replies.add(1, {"outcome": "refused"})
            return Response("too large", status_code=413)
        if not domain.signed_by_gateway(
            self._token, self._url, form, request.headers.get("x-twilio-signature", "")
        ):
            replies.add(1, {"outcome": "refused"})
            return Response("not signed by the gateway", status_code=403)
        outcome, text = await self.answer(
            form.get("From", "")[:40], form.get("Body", "")[:1600], form.get("MessageSid", "")[:64]
        )
        replies.add(1, {"outcome": outcome})
        if outcome != "answered":
            log.info("resident reply not taken as an answer", extra={"outcome": outcome})
        return twiml(text)

    async def answer(
        self, sender: str, text: str, message_id: str, now: datetime | None = None
    ) -> tuple[str, str]:
        """(outcome, the text to reply with) for one reply."""
        now = now or utc_now()
        digest = domain.address_digest(self._key, sender)
        async with self._sessions() as session, session.begin():
            if message_id:
                seen = (
                    await session.exec(
                        select(HelpQuestion).where(HelpQuestion.answer_message_id == message_id)
                    )
                ).first()
                if seen is not None:  # the gateway posted the same reply again
                    return "repeated", domain.resident_message(domain.HELP_THANKS, seen.language, "").text
            open_questions = await session.exec(
                select(HelpQuestion)
                .where(
                    HelpQuestion.reply_key == digest,
                    HelpQuestion.channel == "sms",
                    col(HelpQuestion.answered_at).is_(None),
                )
                .order_by(col(HelpQuestion.asked_at).desc())
                .limit(5)
                .with_for_update()  # two replies at once: one answer
            )
            # The newest question still open: the last one the resident received.
            question = next((q for q in open_questions.all() if as_utc(q.open_until) > now), None)
            if question is None:
                return "unmatched", ""
            got_help = domain.answer_of(text)
            if got_help is None:
                return "unclear", domain.resident_message(domain.HELP_UNCLEAR, question.language, "").text
            answered(session, self._outbox, question, got_help, now, message_id)
            return "answered", domain.resident_message(domain.HELP_THANKS, question.language, "").text


def answered(
    session: AsyncSession,
    outbox: Outbox,
    question: HelpQuestion,
    got_help: bool,
    now: datetime,
    message_id: str = "",
) -> None:
    """The resident's answer, kept and published in the caller's transaction."""
    question.answered_at, question.got_help, question.answer_message_id = now, got_help, message_id
    session.add(question)
    publish_feedback(session, outbox, question)
