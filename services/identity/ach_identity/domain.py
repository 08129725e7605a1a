"""Partner registry rules, pure."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ach_platform.errors import FieldViolation

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


def match_key(d: Demographics) -> MatchKey:
    return MatchKey(
        f"{normalize_name(d.family_name)}|{normalize_name(d.given_name)}|{d.birth_date.strip()}",
        normalize_phone(d.phone),
    )


def validate_demographics(
    d: Demographics, today: date, prefix: str = "demographics."
) -> list[FieldViolation]:
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
    return problems


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
