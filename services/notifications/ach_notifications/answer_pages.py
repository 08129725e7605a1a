"""Answers by e-mail (community voice): the question's e-mail links to /answers/<token>, a page in
the resident's language with two buttons. Opening the link answers nothing (mail scanners open
links); pressing a button does, once. The token is found by its keyed digest (it is not stored);
the page carries nothing about the resident or the referral but the organization's answer buttons,
and is never cached, framed or sent on as a referrer."""

from __future__ import annotations

import re
from datetime import datetime

from ach_events.outbox import Outbox
from ach_platform.clock import as_utc, utc_now
from markupsafe import escape
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ach_notifications import domain
from ach_notifications.sms_replies import answered, bounded_form, replies
from ach_notifications.store import HelpQuestion

TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
MAX_FORM = 1024
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",  # the link is the resident's key
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
STYLE = (
    "body{font:18px/1.5 system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}"
    "button{font:inherit;display:block;width:100%;margin:.75rem 0;padding:.75rem;border:2px solid #0b4f8a;"
    "background:#fff;color:#0b4f8a;border-radius:.4rem}button:focus-visible{outline:3px solid #b35900}"
)


def page(language: str, title: str, body: str, status: int = 200) -> Response:
    html = (
        f'<!doctype html><html lang="{escape(language)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


class AnswerPages:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], outbox: Outbox, digest_key: bytes) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._key = digest_key
        for outcome in ("answered", "unmatched", "refused"):  # every series from the start, at 0
            replies.add(0, {"outcome": outcome})

    def routes(self) -> list[Route]:
        return [Route("/answers/{token}", self.answer, methods=["GET", "POST"])]

    async def _question(self, session: AsyncSession, token: str, now: datetime) -> HelpQuestion | None:
        if not TOKEN.match(token):
            return None
        found = (
            await session.exec(
                select(HelpQuestion)
                .where(HelpQuestion.reply_key == domain.link_digest(self._key, token))
                .where(HelpQuestion.channel == "email")
                .with_for_update()
            )
        ).first()
        return found if found is not None and (found.answered_at or as_utc(found.open_until) > now) else None

    async def answer(self, request: Request) -> Response:
        now = utc_now()
        form: dict[str, str] = {}
        if request.method == "POST":
            posted = await bounded_form(request, MAX_FORM)
            if posted is None:
                return Response("too large", status_code=413)
            form = posted
        async with self._sessions() as session, session.begin():
            question = await self._question(session, request.path_params["token"], now)
            if question is None:
                replies.add(1, {"outcome": "unmatched"})
                return page("en", "Not found", "<p>This link is not (or no longer) a question.</p>", 404)
            language = question.language
            thanks = domain.resident_message(domain.HELP_THANKS, language, "")
            if question.answered_at is not None:
                return page(thanks.language, thanks.subject, f"<p>{escape(thanks.text)}</p>")
            if request.method == "POST" and form.get("answer") in ("yes", "no"):
                answered(session, self._outbox, question, form["answer"] == "yes", now)
                replies.add(1, {"outcome": "answered"})
                return page(thanks.language, thanks.subject, f"<p>{escape(thanks.text)}</p>")
        asked = domain.resident_message(domain.HELP_QUESTION, language, "")
        yes, no = (domain.resident_message(t, language, "") for t in domain.HELP_ANSWERS)
        buttons = (
            '<form method="post">'
            f'<button type="submit" name="answer" value="yes">{escape(yes.subject)}</button>'
            f'<button type="submit" name="answer" value="no">{escape(no.subject)}</button></form>'
        )
        return page(asked.language, asked.subject, buttons)
