"""How deliveries are sent, and what an answer means: webhooks, e-mail, residents' messages."""

from __future__ import annotations

import asyncio
import json
import secrets
import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage

import aiohttp
from opentelemetry import propagate, trace

from ach_notifications import domain
from ach_notifications.destinations import (
    DestinationRefused,
    GuardedResolver,
    check_literal,
)
from ach_notifications.residents import ContactUnavailable, ResidentAddress, ResidentContacts
from ach_notifications.sealing import SecretBox, SecretUnreadable
from ach_notifications.settings import DeliverySettings

# The purpose of the key that digests what finds a resident's answer: the number a question was
# texted to, the token of an e-mailed link (domain.address_digest, domain.link_digest).
ADDRESS_DIGESTS = "resident-address-digests"
# What the partner reads in its delivery log: the class of the problem, never which address or port
# answered (the operator's log has the host).
REFUSED_DESTINATION = "destination not allowed: webhooks go to public addresses only"


@dataclass(frozen=True)
class Attempt:
    """One delivery in a worker's hands, with where it goes."""

    delivery_id: str
    partner_id: str
    kind: str
    address: str
    secret: str
    payload: dict[str, str]
    traceparent: str
    created_at: datetime


@dataclass(frozen=True)
class Result:
    ok: bool
    error: str = ""
    retry_after_s: float = 0.0
    withheld: bool = False  # not sent on purpose (the resident asked not to be contacted): no retry
    question: Asked | None = None  # a question sent to a resident


@dataclass(frozen=True)
class Asked:
    """A question that went out: the keyed digest its answer is found by, its language and channel."""

    reply_key: str
    language: str
    channel: str


class Transports:
    """How a delivery is sent: a partner's signed webhook (to public addresses only, each
    connection's addresses checked), e-mail through the mail relay, or a resident's message by the
    channel and in the language identity gives when sending (SMS gateway or e-mail)."""

    def __init__(
        self,
        settings: DeliverySettings,
        residents: ResidentContacts | None = None,
        organization_name: Callable[[str], str] = str,
        box: SecretBox | None = None,
    ) -> None:
        self._settings = settings
        self._box = box  # opens webhook secrets sealed at rest
        self._residents = residents  # where a resident's message goes, asked when sending
        self._organization_name = organization_name  # a partner's name, for residents' messages
        self._session: aiohttp.ClientSession | None = None  # made on first use, inside the loop
        self._gateway: aiohttp.ClientSession | None = None  # the operator's SMS gateway (not guarded)

    async def send(self, attempt: Attempt) -> Result:
        if attempt.partner_id == domain.RESIDENTS:
            return await self._to_resident(attempt)
        if attempt.kind == "webhook":
            return await self._webhook(attempt)
        return await self._email(attempt)

    async def close(self) -> None:
        for session in (self._session, self._gateway):
            if session is not None:
                await session.close()
        self._session = self._gateway = None

    def _gateway_http(self) -> aiohttp.ClientSession:
        """For the endpoints the operator configured (the SMS gateway may well be internal)."""
        if self._gateway is None:
            self._gateway = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout_s)
            )
        return self._gateway

    def _http(self) -> aiohttp.ClientSession:
        # aiohttp, not httpx: a webhook costs ~0.08 ms of CPU with it against ~0.9 ms (measured on
        # this machine), and the worker sends one per notice.
        if self._session is None:
            # trust_env stays off: with it aiohttp reads the proxy settings and ~/.netrc again, in a
            # thread, for every request.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout_s),
                # Every connection's addresses checked when they are resolved (no DNS rebinding).
                connector=aiohttp.TCPConnector(resolver=GuardedResolver(self._settings.destinations)),
            )
        return self._session

    async def _webhook(self, attempt: Attempt) -> Result:
        body = json.dumps(attempt.payload, separators=(",", ":"), sort_keys=True).encode()
        try:
            secret = self._box.open(attempt.secret) if self._box else attempt.secret
        except SecretUnreadable as exc:
            return Result(False, str(exc))
        headers = {
            "Content-Type": "application/json",
            domain.DELIVERY_ID_HEADER: attempt.delivery_id,
            domain.SIGNATURE_HEADER: domain.signature(secret, int(time.time()), body),
            "User-Agent": "ach-notifications/1",
        }
        propagate.inject(headers)  # the receiver's own tracing can join the referral's trace
        try:
            check_literal(self._settings.destinations, attempt.address)
            async with self._http().post(
                attempt.address, data=body, headers=headers, allow_redirects=False
            ) as answer:
                await drain(answer)
                return answered(answer.status, answer.headers.get("Retry-After", ""))
        except TimeoutError:
            return Result(False, f"timed out after {self._settings.timeout_s:g} s")
        except DestinationRefused:
            return Result(False, REFUSED_DESTINATION)
        except aiohttp.ClientError as exc:
            if isinstance(getattr(exc, "os_error", None), DestinationRefused):
                return Result(False, REFUSED_DESTINATION)
            return Result(False, f"unreachable: {type(exc).__name__}")

    async def _email(self, attempt: Attempt) -> Result:
        subject = f"ACH network: {attempt.payload['event_type']} ({attempt.payload['subject_id']})"
        return await self._mail(attempt.delivery_id, attempt.address, subject, email_text(attempt.payload))

    async def _mail(self, delivery_id: str, to: str, subject: str, text: str) -> Result:
        s = self._settings
        if not s.smtp_host:
            return Result(False, "no SMTP server configured (SMTP_HOST)")
        message = EmailMessage()
        message["From"] = s.mail_from
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = f"<{delivery_id}@ach.local>"  # receivers can deduplicate
        message.set_content(text)

        def send() -> None:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.timeout_s) as smtp:
                smtp.send_message(message)

        try:
            await asyncio.to_thread(send)
        except (OSError, smtplib.SMTPException) as exc:
            return Result(False, f"SMTP: {type(exc).__name__}")  # never the address
        return Result(True)

    async def _to_resident(self, attempt: Attempt) -> Result:
        """The resident's current wish decides (it may have changed since the message was queued):
        the address and language come from identity now, the text from the maintained templates."""
        if self._residents is None:
            return Result(False, "messages to residents need the identity service (NOTIFY_IDENTITY_ADDRESS)")
        payload = attempt.payload
        try:
            contact = await self._residents(payload["resident_id"], payload["referral_id"])
        except ContactUnavailable as exc:
            return Result(False, str(exc))
        if not contact.channel:
            return Result(False, "the resident asked not to be contacted", withheld=True)
        service = payload.get("service")
        organization = (
            self._organization_name(payload["organization_id"]) if payload["organization_id"] else ""
        )
        if payload["template"] == domain.HELP_QUESTION:
            return await self._question(attempt, contact, organization)
        message = domain.resident_message(
            payload["template"],
            contact.language,
            organization,
            service if isinstance(service, dict) else None,
        )
        trace.get_current_span().set_attribute("ach.message_language", message.language)
        if contact.channel == "sms":
            return await self._sms(attempt.delivery_id, contact.address, message.text)
        return await self._mail(attempt.delivery_id, contact.address, message.subject, message.text)

    async def _question(self, attempt: Attempt, contact: ResidentAddress, organization: str) -> Result:
        """The question after a referral closed, by the resident's channel: a text to reply to, or
        an e-mail with a link to answer with one click (a fresh token per attempt; only the one
        that went out is kept, as a digest)."""
        s = self._settings
        if self._box is None or (contact.channel == "email" and not s.answer_url):
            return Result(False, "no way for the resident's answer to come back", withheld=True)
        key = self._box.derived_key(ADDRESS_DIGESTS)
        if contact.channel == "sms":
            message = domain.resident_message(domain.HELP_QUESTION, contact.language, organization)
            sent = await self._sms(attempt.delivery_id, contact.address, message.text)
            reply_key = domain.address_digest(key, contact.address)
        else:
            token = secrets.token_urlsafe(24)
            link = f"{s.answer_url.rstrip('/')}/answers/{token}"
            message = domain.resident_message(
                domain.HELP_QUESTION_EMAIL, contact.language, organization, link=link
            )
            sent = await self._mail(attempt.delivery_id, contact.address, message.subject, message.text)
            reply_key = domain.link_digest(key, token)
        trace.get_current_span().set_attribute("ach.message_language", message.language)
        return (
            replace(sent, question=Asked(reply_key, message.language, contact.channel)) if sent.ok else sent
        )

    async def _sms(self, delivery_id: str, to: str, text: str) -> Result:
        s = self._settings
        if not s.sms_gateway_url:
            return Result(False, "no SMS gateway configured (SMS_GATEWAY_URL)")
        try:
            async with self._gateway_http().post(
                s.sms_gateway_url,
                data={"To": to, "From": s.sms_from, "Body": text},
                auth=aiohttp.BasicAuth(s.sms_user, s.sms_token) if s.sms_user else None,
                headers={"Idempotency-Key": delivery_id, "User-Agent": "ach-notifications/1"},
                allow_redirects=False,
            ) as answer:
                await drain(answer)
                return answered(answer.status, answer.headers.get("Retry-After", ""), "SMS gateway ")
        except TimeoutError:
            return Result(False, f"SMS gateway timed out after {s.timeout_s:g} s")
        except aiohttp.ClientError as exc:
            return Result(False, f"SMS gateway unreachable: {type(exc).__name__}")


async def drain(answer: aiohttp.ClientResponse) -> None:
    """Read the (unused) answer's body, up to 64 KiB, so the connection is kept for the next request;
    aiohttp closes a connection whose body was left unread, and the next webhook opens a new one."""
    left = 65536
    while left > 0 and (chunk := await answer.content.read(left)):
        left -= len(chunk)


def answered(status: int, retry_after: str, who: str = "") -> Result:
    """An HTTP answer as an outcome: only a 2xx acknowledges; a Retry-After (seconds) is honoured."""
    if domain.acknowledged(status):
        return Result(True)
    return Result(False, f"{who}answered HTTP {status}", float(retry_after) if retry_after.isdigit() else 0.0)


def email_text(payload: dict[str, str]) -> str:
    """Ids only, like the webhook: the partner signs in to read the referral."""
    return (
        f"A {payload['subject_type']} of yours in the ACH network changed: {payload['event_type']}.\n"
        f"{payload['subject_type'].capitalize()} id: {payload['subject_id']}\n"
        f"Delivery id: {payload['delivery_id']}\n\n"
        "Sign in to the network to read it. This message carries no information about the resident.\n"
    )
