"""Partner registry rules, pure."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ach_platform.errors import FieldViolation, too_long
from ach_platform.settings import RESERVED_PRINCIPALS

PARTNER_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$")
TYPES = frozenset({"clinic", "cbo", "county", "funder", "backbone"})
ROLES = frozenset(
    {
        "screener",
        "referral-source",
        "referral-target",
        "directory-editor",
        "fund-manager",
        "measurement-viewer",
        "ach-admin",
    }
)
# Which roles a type of organization may hold: a CBO is not a HIPAA covered entity, so it does not
# screen and refer on its own clinical authority here; only the backbone administers the network.
ROLES_BY_TYPE: dict[str, frozenset[str]] = {
    "clinic": frozenset({"screener", "referral-source", "measurement-viewer"}),
    "cbo": frozenset({"screener", "referral-source", "referral-target", "measurement-viewer"}),
    "county": frozenset({"screener", "referral-source", "measurement-viewer"}),
    "funder": frozenset({"fund-manager", "measurement-viewer"}),
    "backbone": ROLES,
}


@dataclass(frozen=True)
class PartnerDraft:
    partner_id: str
    name: str
    type: str
    roles: tuple[str, ...]


def validate(draft: PartnerDraft) -> list[FieldViolation]:
    problems: list[FieldViolation] = []
    if not PARTNER_ID.match(draft.partner_id):
        problems.append(FieldViolation("partner_id", "3-64 lowercase letters, digits and dashes"))
    elif draft.partner_id in RESERVED_PRINCIPALS:
        problems.append(FieldViolation("partner_id", "is the name of a platform service: choose another"))
    if not draft.name.strip():
        problems.append(FieldViolation("name", "is required"))
    if draft.type not in TYPES:
        problems.append(FieldViolation("type", "is required"))
        return problems
    allowed = ROLES_BY_TYPE[draft.type]
    for i, role in enumerate(draft.roles):
        if role not in ROLES:
            problems.append(FieldViolation(f"roles[{i}]", "is not a role"))
        elif role not in allowed:
            problems.append(FieldViolation(f"roles[{i}]", f"a {draft.type} cannot hold the role {role}"))
    if len(set(draft.roles)) != len(draft.roles):
        problems.append(FieldViolation("roles", "lists a role twice"))
    return problems


CERTIFICATE_SERIAL = re.compile(r"^[0-9a-f]{1,40}$")  # X.509 serials are at most 20 octets


def certificate_serial(text: str) -> str | None:
    """A serial as given (hex, with or without colons, any case): normalised, or None."""
    if len(text) > 80:
        return None
    serial = text.replace(":", "").strip().lower().lstrip("0") or "0"
    return serial if CERTIFICATE_SERIAL.match(serial) else None


# --- Residents: one pseudonymous id per person, found again by normalized demographics ---------

NEED_DOMAIN = re.compile(r"^[a-z][a-z0-9-]{1,63}$")
EARLIEST_BIRTH = date(1900, 1, 1)


@dataclass(frozen=True)
class Demographics:
    given_name: str
    family_name: str
    birth_date: str
    phone: str = ""
    preferred_language: str = ""
    postal_code: str = ""
    email: str = ""


@dataclass(frozen=True)
class MatchKey:
    """What two records of one person share: normalized family and given name and date of birth;
    the phone's digits tell apart two people who share those, when both records have a phone."""

    name_dob: str
    phone: str

    def matches(self, other: MatchKey) -> bool:
        return self.name_dob == other.name_dob and (
            not self.phone or not other.phone or self.phone == other.phone
        )


def normalize_name(name: str) -> str:
    """Case, accents, punctuation and spacing do not make a different person: "José  O'Neil" and
    "jose oneil" are one name."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join("".join(c for c in word if c.isalnum()) for word in letters.split()).strip()


def normalize_phone(phone: str) -> str:
    digits = "".join(c for c in phone if c.isdigit())
    return digits[1:] if len(digits) == 11 and digits.startswith("1") else digits  # +1 (NANP)


def supplied(d: Demographics) -> dict[str, str]:
    """What a partner supplied, as kept (on its link, and on the index's record when it is the first)."""
    return {
        "given_name": d.given_name.strip(),
        "family_name": d.family_name.strip(),
        "birth_date": d.birth_date.strip(),
        "phone": d.phone.strip(),
        "preferred_language": d.preferred_language,
        "postal_code": d.postal_code,
        "email": d.email.strip(),
    }


def match_key(d: Demographics) -> MatchKey:
    return MatchKey(
        f"{normalize_name(d.family_name)}|{normalize_name(d.given_name)}|{d.birth_date.strip()}",
        normalize_phone(d.phone),
    )


# As stored: a longer value is refused before anything reads it further (or the database refuses it).
DEMOGRAPHICS_LIMITS = {
    "given_name": 200,
    "family_name": 200,
    "birth_date": 10,
    "phone": 40,
    "preferred_language": 35,
    "postal_code": 20,
    "email": 320,
}


def validate_demographics(
    d: Demographics, today: date, prefix: str = "demographics."
) -> list[FieldViolation]:
    long = too_long((f"{prefix}{k}", str(getattr(d, k)), n) for k, n in DEMOGRAPHICS_LIMITS.items())
    if long:
        return long  # nothing else looks at a value that long
    problems: list[FieldViolation] = []
    if not normalize_name(d.given_name):
        problems.append(FieldViolation(f"{prefix}given_name", "is required"))
    if not normalize_name(d.family_name):
        problems.append(FieldViolation(f"{prefix}family_name", "is required"))
    try:
        born = date.fromisoformat(d.birth_date.strip())
        if not EARLIEST_BIRTH <= born <= today:
            problems.append(FieldViolation(f"{prefix}birth_date", "must be a past date after 1900"))
    except ValueError:
        problems.append(FieldViolation(f"{prefix}birth_date", "must be an ISO date, e.g. 1984-03-07"))
    if d.phone and not 7 <= len(normalize_phone(d.phone)) <= 15:
        problems.append(FieldViolation(f"{prefix}phone", "must have 7 to 15 digits"))
    if d.email and not looks_like_email(d.email):
        problems.append(FieldViolation(f"{prefix}email", "must be an e-mail address, e.g. name@example.org"))
    if d.preferred_language and not looks_like_language(d.preferred_language):
        problems.append(
            FieldViolation(f"{prefix}preferred_language", "must be a BCP 47 tag, e.g. es or zh-Hant")
        )
    return problems


EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*")
LANGUAGE_HINT = "must be a BCP 47 tag, e.g. es or zh-Hant"


def looks_like_email(value: str) -> bool:
    return len(value) <= 320 and EMAIL.fullmatch(value.strip()) is not None


def looks_like_language(value: str) -> bool:
    return LANGUAGE.fullmatch(value.strip()) is not None


# --- Contact preference: how the network may message the resident -------------------------------

CONTACT_CHANNELS = frozenset({"sms", "email"})


@dataclass(frozen=True)
class ContactPreference:
    do_not_contact: bool
    channel: str  # "" (none chosen) | sms | email
    language: str  # as chosen; "" falls back to the preferred language


def check_contact_preference(
    wanted: ContactPreference, phone_on_file: str, email_on_file: str
) -> list[FieldViolation]:
    """A channel needs its address on file (the network cannot text a resident without a phone)."""
    problems: list[FieldViolation] = []
    if wanted.channel and wanted.channel not in CONTACT_CHANNELS:
        problems.append(FieldViolation("channel", "is not a contact channel"))
    elif wanted.channel == "sms" and not phone_on_file:
        problems.append(FieldViolation("channel", "SMS needs a phone number on file: register it first"))
    elif wanted.channel == "email" and not email_on_file:
        problems.append(
            FieldViolation("channel", "e-mail needs an e-mail address on file: register it first")
        )
    if wanted.language and not looks_like_language(wanted.language):
        problems.append(FieldViolation("language", LANGUAGE_HINT))
    return problems


def may_change_preference(
    current: ContactPreference, wanted: ContactPreference, owner: str, caller: str, admin: bool
) -> bool:
    """The partner that set a resident's contact preference (or the ACH admin) changes it; any other
    partner with the resident on its books may only turn "do not contact" on, since that wish is the
    resident's and the safer one. Nobody redirects the network's messages to an address it supplied."""
    if admin or not owner or owner == caller:
        return True
    return wanted in (current, ContactPreference(True, current.channel, current.language))


def message_language(chosen: str, preferred: str) -> str:
    """The language messages are written in: the one chosen for messages, else the resident's
    preferred language, else English."""
    return (chosen or preferred or "en").strip()


@dataclass(frozen=True)
class Contact:
    channel: str  # "" when the network must not (or cannot) message the resident
    address: str


def contact_for_message(preference: ContactPreference, phone_on_file: str, email_on_file: str) -> Contact:
    """Where a message may go: nowhere under "do not contact" or without a channel chosen; only the
    chosen channel's address (minimum necessary: never both)."""
    if preference.do_not_contact or not preference.channel:
        return Contact("", "")
    address = phone_on_file if preference.channel == "sms" else email_on_file
    return Contact(preference.channel, address) if address else Contact("", "")


def check_merge(
    survivor_id: str, merged_id: str, survivor_merged_into: str | None, merged_merged_into: str | None
) -> list[FieldViolation]:
    """A merge joins two live records; merging a record into itself or into one already merged
    away would make a chain or a loop."""
    problems: list[FieldViolation] = []
    if survivor_id == merged_id:
        problems.append(FieldViolation("merged_id", "must differ from survivor_id"))
    if survivor_merged_into:
        problems.append(FieldViolation("survivor_id", "was itself merged into another resident"))
    if merged_merged_into:
        problems.append(FieldViolation("merged_id", "is already merged"))
    return problems


# --- Consent -------------------------------------------------------------------------------------

CONSENT_METHODS = frozenset({"written", "verbal", "electronic"})
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class ConsentDraft:
    resident_id: str
    need_domains: tuple[str, ...]
    partner_ids: tuple[str, ...]
    given_at: datetime
    expires_at: datetime | None
    method: str


def validate_consent(draft: ConsentDraft, now: datetime, known_partners: set[str]) -> list[FieldViolation]:
    problems: list[FieldViolation] = []
    if not draft.resident_id:
        problems.append(FieldViolation("resident_id", "is required"))
    for i, domain in enumerate(draft.need_domains):
        if not NEED_DOMAIN.match(domain):
            problems.append(FieldViolation(f"scope.need_domains[{i}]", "is not a need domain code"))
    for i, partner in enumerate(draft.partner_ids):
        if partner not in known_partners:
            problems.append(FieldViolation(f"scope.partner_ids[{i}]", "is not a CBO of the network"))
    if draft.given_at > now + CLOCK_SKEW:
        problems.append(FieldViolation("given_at", "is in the future"))
    if draft.expires_at is not None and draft.expires_at <= draft.given_at:
        problems.append(FieldViolation("expires_at", "must be after given_at"))
    if draft.expires_at is not None and draft.expires_at <= now:
        problems.append(FieldViolation("expires_at", "is already past"))
    if draft.method not in CONSENT_METHODS:
        problems.append(FieldViolation("method", "is required (written, verbal or electronic)"))
    return problems
