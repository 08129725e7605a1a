"""Referral rules, pure: the Gravity SDOH referral Task state machine and target matching."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ach_platform.consent import ConsentTerms, consent_for_share


class Status(StrEnum):
    DRAFT = "draft"
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    IN_PROGRESS = "in-progress"
    ON_HOLD = "on-hold"
    FAILED = "failed"
    COMPLETED = "completed"
    ENTERED_IN_ERROR = "entered-in-error"


class Role(StrEnum):
    SOURCE = "source"
    TARGET = "target"


class Outcome(StrEnum):
    NEED_MET = "need-met"
    NEED_PARTLY_MET = "need-partly-met"
    NEED_NOT_MET = "need-not-met"
    RESIDENT_DECLINED = "resident-declined"
    UNABLE_TO_CONTACT = "unable-to-contact"


S, T = Role.SOURCE, Role.TARGET
# (from, to) -> who may make the change. "The source sets requested; the target moves it on";
# the source may also withdraw (cancel) while it is still open.
TRANSITIONS: dict[tuple[Status, Status], frozenset[Role]] = {
    (Status.DRAFT, Status.REQUESTED): frozenset({S}),
    (Status.REQUESTED, Status.ACCEPTED): frozenset({T}),
    (Status.REQUESTED, Status.REJECTED): frozenset({T}),
    (Status.REQUESTED, Status.CANCELLED): frozenset({S}),
    **{
        (Status.ACCEPTED, to): frozenset({T})
        for to in (Status.IN_PROGRESS, Status.ON_HOLD, Status.COMPLETED, Status.FAILED)
    },
    (Status.ACCEPTED, Status.CANCELLED): frozenset({S, T}),
    **{(Status.IN_PROGRESS, to): frozenset({T}) for to in (Status.ON_HOLD, Status.COMPLETED, Status.FAILED)},
    (Status.IN_PROGRESS, Status.CANCELLED): frozenset({S, T}),
    **{(Status.ON_HOLD, to): frozenset({T}) for to in (Status.IN_PROGRESS, Status.COMPLETED, Status.FAILED)},
    (Status.ON_HOLD, Status.CANCELLED): frozenset({S, T}),
    **{
        (frm, Status.ENTERED_IN_ERROR): frozenset({S, T})
        for frm in Status
        if frm is not Status.ENTERED_IN_ERROR
    },
}
REASON_REQUIRED = frozenset({Status.REJECTED, Status.CANCELLED, Status.ON_HOLD, Status.FAILED})
TERMINAL = frozenset(
    {Status.REJECTED, Status.CANCELLED, Status.FAILED, Status.COMPLETED, Status.ENTERED_IN_ERROR}
)


@dataclass(frozen=True)
class TransitionError:
    field: str
    description: str
    precondition: bool  # True: conflicts with state (FAILED_PRECONDITION); False: bad input


def check_transition(
    current: Status, to: Status, role: Role | None, reason: str, outcome: Outcome | None
) -> list[TransitionError]:
    """Everything wrong with moving a referral from ``current`` to ``to`` by ``role``."""
    errors: list[TransitionError] = []
    allowed = TRANSITIONS.get((current, to))
    if allowed is None:
        errors.append(TransitionError("status", f"cannot move a referral from {current} to {to}", True))
    elif role is None or role not in allowed:
        who = " or ".join(sorted(allowed))
        errors.append(
            TransitionError("actor", f"only the referral's {who} may move it from {current} to {to}", True)
        )
    if to in REASON_REQUIRED and not reason.strip():
        errors.append(TransitionError("reason", f"a reason is required to move a referral to {to}", False))
    if to is Status.COMPLETED and outcome is None:
        errors.append(TransitionError("outcome", "an outcome is required on completion", False))
    if to is not Status.COMPLETED and outcome is not None:
        errors.append(TransitionError("outcome", "an outcome is given only on completion", False))
    return errors


@dataclass(frozen=True)
class CandidateService:
    service_id: str
    organization_id: str
    need_domains: tuple[str, ...]
    languages: tuple[str, ...]
    active: bool
    capacity_available: int


@dataclass(frozen=True)
class Match:
    service: CandidateService
    reasons: tuple[str, ...]


def rank_targets(candidates: Iterable[CandidateService], need_domain: str, language: str) -> Sequence[Match]:
    """Active services for the need, those speaking the resident's language and with room first."""
    matches: list[tuple[tuple[int, int, str], Match]] = []
    for c in candidates:
        if not c.active or need_domain not in c.need_domains:
            continue
        reasons = [f"serves {need_domain}"]
        speaks = language in c.languages
        if speaks:
            reasons.append(f"speaks {language}")
        if c.capacity_available > 0:
            reasons.append(f"{c.capacity_available} openings")
        rank = (0 if speaks else 1, 0 if c.capacity_available > 0 else 1, c.service_id)
        matches.append((rank, Match(c, tuple(reasons))))
    return [m for _, m in sorted(matches, key=lambda pair: pair[0])]


NO_MATCHING_SERVICE = "no-matching-service"
CONSENT_REQUIRED = "consent-required"
CONSENT_REVOKED = "consent revoked by the resident"
OPEN = frozenset({Status.REQUESTED, Status.ACCEPTED, Status.IN_PROGRESS, Status.ON_HOLD})


@dataclass(frozen=True)
class Routing:
    """Where a need goes: a matched service the resident consented to share with, or a draft and why."""

    match: Match | None
    draft_reason: str


def route(
    candidates: Iterable[CandidateService],
    need_domain: str,
    language: str,
    consents: Iterable[ConsentTerms],
    at: datetime,
) -> Routing:
    """The best-ranked service whose organization the resident's consent covers for this need.
    Nothing identifying reaches a CBO without consent, so without it the referral stays a draft."""
    matches = rank_targets(candidates, need_domain, language)
    if not matches:
        return Routing(None, NO_MATCHING_SERVICE)
    terms = list(consents)
    for m in matches:
        if consent_for_share(terms, need_domain, m.service.organization_id, at) is not None:
            return Routing(m, "")
    return Routing(None, CONSENT_REQUIRED)


def withdraw_on_revocation(
    status: Status, need_domain: str, target: str, consents: Iterable[ConsentTerms], at: datetime
) -> bool:
    """An open referral whose target no consent covers any more is cancelled: the CBO gets nothing
    further about the resident (the identity service already refuses the share itself)."""
    return status in OPEN and bool(target) and consent_for_share(consents, need_domain, target, at) is None
