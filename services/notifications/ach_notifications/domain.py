"""Notification rules, pure: who is told about a referral event, and what (ids only)."""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Notice:
    partner_id: str
    subject_type: str
    subject_id: str
    event_type: str


def notices_for_referral_created(referral_id: str, target_partner_id: str) -> list[Notice]:
    """The target learns that a referral awaits it; a draft with no target notifies nobody yet."""
    if not target_partner_id:
        return []
    return [Notice(target_partner_id, "referral", referral_id, "referral.created")]


def notices_for_status_changed(
    referral_id: str,
    source_partner_id: str,
    target_partner_id: str,
    actor_partner_id: str,
    to_status: str,
) -> list[Notice]:
    """The source hears of every change it did not make (closing the loop). The target hears when a
    referral reaches it after being a draft, and when someone else withdraws it (e.g. the network,
    on a revoked consent)."""
    notices: list[Notice] = []
    if source_partner_id and source_partner_id != actor_partner_id:
        notices.append(Notice(source_partner_id, "referral", referral_id, "referral.status-changed"))
    if target_partner_id and target_partner_id != actor_partner_id:
        if to_status == "requested":
            notices.append(Notice(target_partner_id, "referral", referral_id, "referral.created"))
        elif to_status in {"cancelled", "entered-in-error"}:
            notices.append(Notice(target_partner_id, "referral", referral_id, "referral.withdrawn"))
    return notices


def notices_for_reminder(referral_id: str, target_partner_id: str) -> list[Notice]:
    """The target is reminded that the referral waits for it."""
    return (
        [Notice(target_partner_id, "referral", referral_id, "referral.reminder")] if target_partner_id else []
    )


def notices_for_escalation(
    referral_id: str, source_partner_id: str, coordinator_partner_id: str
) -> list[Notice]:
    """Nothing happened for too long: the source and the ACH coordinator hear (once each)."""
    parties = dict.fromkeys(p for p in (source_partner_id, coordinator_partner_id) if p)
    return [Notice(p, "referral", referral_id, "referral.escalated") for p in parties]


# --- Webhook deliveries: signing, retry schedule, circuit breaker (pure; the worker does the I/O) ---

SIGNATURE_HEADER = "ACH-Signature"
DELIVERY_ID_HEADER = "ACH-Delivery-Id"
REPLAY_WINDOW_S = 300  # a receiver refuses signatures older (or newer) than this


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``: the timestamp is signed
    with the body so a captured request cannot be replayed later under a fresh timestamp."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(
    secret: str, header: str, body: bytes, now: float, window_s: int = REPLAY_WINDOW_S
) -> bool:
    """The receiver's check (the documented recipe, in code): the header parses, its timestamp is
    within the replay window, and one of its v1 signatures matches, compared in constant time.
    Several v1 values are allowed so a secret can be rotated without a gap."""
    parts = [p.partition("=") for p in header.split(",")]
    stamps = [v for k, _, v in parts if k.strip() == "t"]
    macs = [v.strip() for k, _, v in parts if k.strip() == "v1"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit() or not macs:
        return False
    timestamp = int(stamps[0])
    if abs(now - timestamp) > window_s:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, mac) for mac in macs)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 24
    base_s: float = 1.0
    cap_s: float = 600.0  # by default 1.3 to 2.6 hours of trying before a delivery is failed


def retry_delay_s(policy: RetryPolicy, attempts: int, draw: float) -> float:
    """Exponential backoff with jitter after the ``attempts``-th failed attempt: half of the
    exponential step for sure, the other half at random (``draw`` in [0, 1)), so a partner back
    from an outage is not hit by every sender at the same instant."""
    step = min(policy.cap_s, policy.base_s * 2.0 ** max(0, attempts - 1))
    return step / 2 + step / 2 * draw


def exhausted(policy: RetryPolicy, attempts: int) -> bool:
    return attempts >= policy.max_attempts


@dataclass(frozen=True)
class BreakerPolicy:
    failures_to_open: int = 5
    cooldown_s: float = 30.0


@dataclass(frozen=True)
class Breaker:
    """A partner's circuit: consecutive failures, and until when it is open (no attempts)."""

    failures: int = 0
    open_until: datetime | None = None

    def allows(self, now: datetime) -> bool:
        """Closed, or open past its cooldown (half-open: one attempt probes the partner)."""
        return self.open_until is None or now >= self.open_until

    def after_success(self) -> Breaker:
        return Breaker()

    def after_failure(self, policy: BreakerPolicy, now: datetime) -> Breaker:
        failures = self.failures + 1
        if failures >= policy.failures_to_open:
            return Breaker(failures, now + timedelta(seconds=policy.cooldown_s))
        return Breaker(failures, None)


def acknowledged(status_code: int) -> bool:
    """Only a 2xx acknowledges a webhook; anything else (and no answer) is retried."""
    return 200 <= status_code < 300


def webhook_body(
    delivery_id: str, notice: Notice, occurred_at: datetime, referral_status: str = ""
) -> dict[str, str]:
    """Minimum necessary: ids, what happened and when; never the resident or the screening. The
    partner reads the referral itself, under its own authorization."""
    body = {
        "delivery_id": delivery_id,
        "partner_id": notice.partner_id,
        "event_type": notice.event_type,
        "subject_type": notice.subject_type,
        "subject_id": notice.subject_id,
        "occurred_at": occurred_at.isoformat().replace("+00:00", "Z"),
    }
    if referral_status:
        body["status"] = referral_status
    return body


# --- Messages to residents: when, in which language, saying what (never the need) ---------------

RESIDENTS = "residents"  # the deliveries' party (and circuit) for messages to residents
RESIDENT_CHANNELS = frozenset({"sms", "email"})
# Where a message itself could put the resident at risk (it may reach the person harming them).
DEFAULT_SILENT_DOMAINS = frozenset({"intimate-partner-violence", "elder-abuse"})


@dataclass(frozen=True)
class ContactPreference:
    """The replica of what the resident chose (no address: identity keeps that)."""

    do_not_contact: bool
    channel: str  # "" (none chosen) | sms | email
    language: str


def resident_template(
    to_status: str,
    need_domain: str,
    preference: ContactPreference | None,
    silent_domains: frozenset[str] = DEFAULT_SILENT_DOMAINS,
) -> str:
    """Which message the resident gets when their referral reaches ``to_status`` ("" for none): one
    when it is sent to an organization (again after a re-route) and one when the organization
    accepts; none under "do not contact", without a channel chosen, or for a need domain where a
    message itself could put the resident at risk."""
    if preference is None or preference.do_not_contact or preference.channel not in RESIDENT_CHANNELS:
        return ""
    if need_domain in silent_domains:
        return ""
    if to_status == "completed":
        return HELP_QUESTION  # the one question (asked where an answer can come back: the caller)
    return {
        "requested": "referral-sent",
        "accepted": "referral-accepted",
        INFORMATIONAL: "service-information",
    }.get(to_status, "")


# --- Community voice: one question after a referral closes, answered by replying -----------------

HELP_QUESTION = "help-question"
HELP_QUESTION_EMAIL = "help-question-email"  # by e-mail: a link to a page with two buttons
HELP_ANSWERS = ("help-yes", "help-no")  # the page's buttons
HELP_THANKS = "help-thanks"  # the reply to an answer
HELP_UNCLEAR = "help-unclear"  # the reply to a text that is no answer
QUESTION_OPEN = timedelta(days=14)
# Yes and no in the languages residents are written to (accents and case aside).
YES = frozenset({"yes", "y", "yeah", "si", "s", "1", "co", "vang", "shi", "是", "是的", "有", "oo", "opo"})
NO = frozenset({"no", "n", "nope", "2", "khong", "bu", "不", "没有", "否", "hindi", "wala"})


def answer_of(text: str) -> bool | None:
    """A reply as the resident's answer (True: they got the help they needed), or None for anything
    else. Only the first word counts; the reply itself is never kept (it may say anything)."""
    words = unicodedata.normalize("NFKD", text[:200]).encode("ascii", "ignore").decode().lower().split()
    first = words[0].strip(".,;:!?¡¿\"'()") if words else ""
    if not first:  # a reply in a script without ASCII letters (Chinese): the first characters
        first = text.strip()[:2].strip("\u3002\uff01!?\uff1f ")
    if first in YES:
        return True
    if first in NO:
        return False
    return None


def address_digest(key: bytes, address: str) -> str:
    """A keyed digest of a phone number, so a reply can be matched to the question sent to that
    number without the number being stored. North American numbers compare on their ten digits
    (+1 209 555 0100 and 209-555-0100 are one number)."""
    digits = "".join(c for c in address if c.isdigit())
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return hmac.new(key, digits.encode(), hashlib.sha256).hexdigest()


def link_digest(key: bytes, token: str) -> str:
    """A keyed digest of an e-mailed answer link's token (the token itself is not stored)."""
    return hmac.new(key, b"link:" + token.encode(), hashlib.sha256).hexdigest()


def gateway_signature(token: str, url: str, form: Mapping[str, str]) -> str:
    """The SMS gateway's signature of a request it sends (Twilio's X-Twilio-Signature): base64 of
    HMAC-SHA1 over the URL followed by every form field's name and value, sorted by name."""
    signed = url + "".join(f"{k}{form[k]}" for k in sorted(form))
    return base64.b64encode(hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()).decode()


def signed_by_gateway(token: str, url: str, form: Mapping[str, str], header: str) -> bool:
    return bool(token and header) and hmac.compare_digest(gateway_signature(token, url, form), header)


@dataclass(frozen=True)
class ResidentMessage:
    language: str  # the language it is written in (the resident's, or English when not available)
    subject: str
    text: str


@cache
def resident_templates() -> dict[tuple[str, str], tuple[str, str]]:
    """(template, language) -> (subject, text), from the maintained table beside this module."""
    with (Path(__file__).parent / "resident_messages.csv").open(encoding="utf-8", newline="") as f:
        return {(r["template"], r["language"]): (r["subject"], r["text"]) for r in csv.DictReader(f)}


def resident_message(
    template: str,
    language: str,
    organization: str,
    service: Mapping[str, Any] | None = None,
    link: str = "",
) -> ResidentMessage:
    """The message in the resident's language: the exact tag, else its primary language (es-MX ->
    es), else English. Names the organization (or the service, with its details), never the need
    or the resident."""
    table = resident_templates()
    tag = language.strip()
    for candidate in (tag, tag.split("-")[0].lower(), "en"):
        if (template, candidate) in table:
            subject, text = table[(template, candidate)]
            details = service_details(service, candidate) if service is not None else ""
            name = service_label(service) if service is not None else organization
            return ResidentMessage(
                candidate,
                subject,
                " ".join(text.format(organization=name, details=details, link=link).split()),
            )
    raise KeyError(f"no {template} message in English")


# A pseudo-status: an informational referral, whose message gives the resident a service's details.
INFORMATIONAL = "informational"
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


@cache
def detail_labels() -> dict[str, dict[str, str]]:
    """language -> labels (address, phone, hours, days), from the maintained table beside this module."""
    with (Path(__file__).parent / "service_details.csv").open(encoding="utf-8", newline="") as f:
        return {r["language"]: dict(r) for r in csv.DictReader(f)}


def service_label(service: Mapping[str, Any]) -> str:
    name = str(service.get("name") or "").strip()
    organization = str(service.get("organization_name") or "").strip()
    if name and organization and organization.lower() not in name.lower():
        return f"{name} ({organization})"
    return name or organization


def opening_hours_text(hours: Iterable[Mapping[str, Any]], days: Sequence[str]) -> str:
    """Weekly opening hours as a resident reads them: "Mon, Wed 09:00-17:00; Sat 10:00-12:00"
    (closures and rules without times left out; at most four)."""
    parts: list[str] = []
    for h in hours:
        opens, closes = str(h.get("opens_at") or "")[:5], str(h.get("closes_at") or "")[:5]
        if h.get("closed") or not opens or not closes:
            continue
        rule = dict(p.partition("=")[::2] for p in str(h.get("rrule") or "").upper().split(";") if "=" in p)
        byday = [d[-2:] for d in rule.get("BYDAY", "").split(",") if d[-2:] in WEEKDAYS]
        named = ", ".join(days[WEEKDAYS.index(d)] for d in sorted(set(byday), key=WEEKDAYS.index))
        part = f"{named} {opens}-{closes}".strip()
        if part not in parts:
            parts.append(part)
    return "; ".join(parts[:4])


def service_details(service: Mapping[str, Any], language: str) -> str:
    """The service's address, phone and opening hours, labelled in the message's language."""
    labels = detail_labels().get(language) or detail_labels()["en"]
    days = labels["days"].split("|")
    pieces = [
        (labels["address"], str(service.get("address") or "").strip()),
        (labels["phone"], str(service.get("phone") or "").strip()),
        (labels["hours"], opening_hours_text(service.get("opening_hours") or [], days)),
    ]
    return " ".join(f"{label}: {value}." for label, value in pieces if value)
