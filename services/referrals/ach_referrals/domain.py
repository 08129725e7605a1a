"""Referral rules, pure: the Gravity SDOH referral Task state machine and target matching."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from ach_platform.consent import ConsentTerms, consent_for_share
from ach_platform.errors import FieldViolation
from ach_platform.geo import distance_km
from ach_platform.opening_hours import Hours, is_open
from ach_platform.vocabulary import NEED_DOMAINS


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
    NETWORK = "network"  # the referral service itself, on the network's rules (re-routing)


def role_of(partner_id: str, source_partner_id: str, target_partner_id: str) -> Role | None:
    """The part a partner plays in a referral: its target, its source, or none (then it may not
    change it). A referral a partner sent to itself is moved on as its target."""
    if partner_id == target_partner_id:
        return Role.TARGET
    if partner_id == source_partner_id:
        return Role.SOURCE
    return None


class Outcome(StrEnum):
    NEED_MET = "need-met"
    NEED_PARTLY_MET = "need-partly-met"
    NEED_NOT_MET = "need-not-met"
    RESIDENT_DECLINED = "resident-declined"
    UNABLE_TO_CONTACT = "unable-to-contact"


S, T, N = Role.SOURCE, Role.TARGET, Role.NETWORK
# (from, to) -> who may make the change. "The source sets requested; the target moves it on";
# the source may also withdraw (cancel) while it is still open. No wrong door: a rejected referral
# goes back to requested with another target (re-routed by the network, or by the source's choice),
# so one referral keeps one history across targets.
TRANSITIONS: dict[tuple[Status, Status], frozenset[Role]] = {
    (Status.DRAFT, Status.REQUESTED): frozenset({S}),
    (Status.REQUESTED, Status.ACCEPTED): frozenset({T}),
    # The network rejects on the target's behalf when it does not accept within the time limit.
    (Status.REQUESTED, Status.REJECTED): frozenset({T, N}),
    (Status.REQUESTED, Status.CANCELLED): frozenset({S}),
    (Status.REJECTED, Status.REQUESTED): frozenset({S, N}),
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
# Rejected is final for the target that rejected; the referral itself may still be re-routed.
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
    # From the directory's summary: where it is, whom it serves.
    places: tuple[tuple[float, float], ...] = ()  # (latitude, longitude) of its physical places
    minimum_age: int = 0  # 0 and 0: no age limits
    maximum_age: int = 0
    area_zips: frozenset[str] = frozenset()  # empty: no ZIP area
    area_radius_km: float = 0.0  # serves residents this close to one of its places (0: not said)
    hours: tuple[Hours, ...] = ()  # opening hours (empty: not published)
    # The network partner that receives its referrals: set only for an active partner with the
    # referral-target role. Empty: a plain directory entry, for the resident's information only.
    partner_id: str = ""
    name: str = ""

    @property
    def takes_referrals(self) -> bool:
        return bool(self.partner_id)


@dataclass(frozen=True)
class Match:
    service: CandidateService
    reasons: tuple[str, ...]
    distance_km: float | None = None


@dataclass(frozen=True)
class ResidentFacts:
    """What matching may know of the resident, when the source gives it: no identity."""

    point: tuple[float, float] | None = None  # e.g. the centroid of the resident's ZIP
    zip_code: str = ""
    age: int | None = None
    available_at: datetime | None = None  # a time the resident can go (aware); None: any time


def rank_targets(
    candidates: Iterable[CandidateService],
    need_domain: str,
    language: str,
    resident: ResidentFacts | None = None,
) -> Sequence[Match]:
    """Active services for the need that the resident is eligible for (age, service area) and, when
    the resident said when they can go, that are not known to be closed then; those speaking the
    resident's language first, then with room, then known to be open then, then nearest."""
    who = resident or ResidentFacts()
    matches: list[tuple[tuple[int, int, int, float, str], Match]] = []
    for c in candidates:
        if not c.active or need_domain not in c.need_domains:
            continue
        reasons = [f"serves {need_domain}"]
        nearest = min((distance_km(who.point, p) for p in c.places), default=None) if who.point else None
        if who.age is not None and (c.minimum_age or c.maximum_age):
            if who.age < c.minimum_age or (c.maximum_age and who.age > c.maximum_age):
                continue
            reasons.append(f"serves ages {c.minimum_age}-{c.maximum_age or 'any'}")
        if who.zip_code and c.area_zips:
            if who.zip_code not in c.area_zips:
                continue
            reasons.append(f"serves ZIP {who.zip_code}")
        elif c.area_radius_km and nearest is not None:
            if nearest > c.area_radius_km:
                continue
            reasons.append(f"serves within {c.area_radius_km:g} km")
        open_then = False
        if who.available_at is not None and c.hours:
            if not is_open(c.hours, who.available_at, ""):
                continue
            open_then = True
            reasons.append(f"open {who.available_at.isoformat(timespec='minutes')}")
        speaks = language in c.languages
        if speaks:
            reasons.append(f"speaks {language}")
        if c.capacity_available > 0:
            reasons.append(f"{c.capacity_available} openings")
        if nearest is not None:
            reasons.append(f"{nearest:.1f} km away")
        rank = (
            0 if speaks else 1,
            0 if c.capacity_available > 0 else 1,
            0 if open_then or who.available_at is None else 1,  # hours not published: after
            nearest if nearest is not None else math.inf,
            c.service_id,
        )
        matches.append((rank, Match(c, tuple(reasons), nearest)))
    return [m for _, m in sorted(matches, key=lambda pair: pair[0])]


NO_MATCHING_SERVICE = "no-matching-service"
CONSENT_REQUIRED = "consent-required"
CONSENT_REVOKED = "consent revoked by the resident"
OPEN = frozenset({Status.REQUESTED, Status.ACCEPTED, Status.IN_PROGRESS, Status.ON_HOLD})


@dataclass(frozen=True)
class Routing:
    """Where a need goes: a partner's service the resident consented to share with; or, when no
    partner serves the need, the best other service, for the resident's information; or a draft
    and why."""

    match: Match | None
    draft_reason: str
    information: Match | None = None


def route(
    candidates: Iterable[CandidateService],
    need_domain: str,
    language: str,
    consents: Iterable[ConsentTerms],
    at: datetime,
) -> Routing:
    """The best-ranked partner service whose partner the resident's consent covers for this need.
    Nothing identifying reaches a CBO without consent, so without it the referral stays a draft.
    Only partners receive referrals: when none serves the need, the resident is given the best
    other service's details instead (an informational referral; nothing goes to that organization)."""
    matches = rank_targets(candidates, need_domain, language)
    if not matches:
        return Routing(None, NO_MATCHING_SERVICE)
    partners = [m for m in matches if m.service.takes_referrals]
    if not partners:
        return Routing(None, "", information=matches[0])
    terms = list(consents)
    for m in partners:
        if consent_for_share(terms, need_domain, m.service.partner_id, at) is not None:
            return Routing(m, "")
    return Routing(None, CONSENT_REQUIRED)


def is_internal(source_partner_id: str, target_partner_id: str) -> bool:
    """A referral to the source's own organization: it may help the resident, but the network does
    not pay an organization for what it routed to itself (unless a fund's policy says so)."""
    return bool(target_partner_id) and source_partner_id == target_partner_id


def informational_reason(need_domain: str, service_name: str) -> str:
    return (
        f"no network partner serves {need_domain}: the resident was sent the details of"
        f" {service_name or 'a directory service'} (information only, nothing shared)"
    )


def not_a_partner_reason(target: str) -> str:
    return f"{target} is no network partner that receives referrals: nobody could accept it"


def withdraw_on_revocation(
    status: Status, need_domain: str, target: str, consents: Iterable[ConsentTerms], at: datetime
) -> bool:
    """An open referral whose target no consent covers any more is cancelled: the CBO gets nothing
    further about the resident (the identity service already refuses the share itself)."""
    return status in OPEN and bool(target) and consent_for_share(consents, need_domain, target, at) is None


class ReroutePolicy(StrEnum):
    AUTOMATIC = "automatic"  # the network sends a rejected referral to the next suitable target
    SOURCE = "source"  # it goes back to the source, who chooses among the proposed targets


def reroute_policy(
    need_domain: str, by_domain: dict[str, ReroutePolicy], default: ReroutePolicy
) -> ReroutePolicy:
    return by_domain.get(need_domain, default)


def parse_reroute_policies(text: str) -> tuple[ReroutePolicy, dict[str, ReroutePolicy]]:
    """``automatic`` or ``source``, then per need domain: ``automatic,intimate-partner-violence=source``.
    Raises ValueError naming the bad entry."""
    default = ReroutePolicy.AUTOMATIC
    by_domain: dict[str, ReroutePolicy] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        domain, _, value = entry.rpartition("=")
        try:
            policy = ReroutePolicy(value.strip())
        except ValueError:
            raise ValueError(f"{entry!r}: the policy is 'automatic' or 'source'") from None
        if domain and domain.strip() not in NEED_DOMAINS:
            raise ValueError(f"{entry!r}: {domain.strip()!r} is not a need domain code")
        if domain:
            by_domain[domain.strip()] = policy
        else:
            default = policy
    return default, by_domain


def proposals(
    candidates: Iterable[CandidateService],
    need_domain: str,
    language: str,
    consents: Iterable[ConsentTerms],
    at: datetime,
    tried_organizations: Iterable[str] = (),
    resident: ResidentFacts | None = None,
) -> list[Match]:
    """Ranked targets a referral may go to: partners' services, of partners that have not had (and
    turned down) this referral, which the resident's consent covers."""
    tried = set(tried_organizations)
    terms = list(consents)
    return [
        m
        for m in rank_targets(candidates, need_domain, language, resident)
        if m.service.takes_referrals
        and m.service.partner_id not in tried
        and consent_for_share(terms, need_domain, m.service.partner_id, at) is not None
    ]


def information_only(
    candidates: Iterable[CandidateService],
    need_domain: str,
    language: str,
    resident: ResidentFacts | None = None,
) -> list[Match]:
    """Ranked services of organizations that are no network partner: the resident may be given
    their details (an informational referral), never handed off to them."""
    return [
        m for m in rank_targets(candidates, need_domain, language, resident) if not m.service.takes_referrals
    ]


def rerouted_reason(rejection_code: str) -> str:
    """The network's words for a re-route: the rejection's code, never the target's free text."""
    return f"re-routed after the target turned it down ({rejection_code or 'other'})"


# Why a party rejects or cancels a referral, as events and measures carry it; the party's free text
# stays in the referral's history.
REASON_CODES = frozenset(
    {
        "no-capacity",
        "not-eligible",
        "out-of-service-area",
        "unable-to-contact",
        "resident-declined",
        "duplicate",
        "service-not-offered",
        "other",
    }
)
MAX_REASON_TEXT = 1000


def check_reason(code: str, text: str, prefix: str = "") -> list[FieldViolation]:
    problems: list[FieldViolation] = []
    if code and code not in REASON_CODES:
        problems.append(
            FieldViolation(
                f"{prefix}reason_code", f"is not a reason code ({', '.join(sorted(REASON_CODES))})"
            )
        )
    if len(text) > MAX_REASON_TEXT:
        problems.append(FieldViolation(f"{prefix}reason", f"is longer than {MAX_REASON_TEXT} characters"))
    return problems


def reason_code_for(code: str, text: str) -> str:
    """The code a change is published with: the one given, else "other" for a text alone."""
    return code or ("other" if text.strip() else "")


# --- Timers: reminders, escalation and the acceptance time limit (durable: the next one is a column
# of the referral, recomputed on every change and after every timer fires) ---


class TimerKind(StrEnum):
    REMINDER = "reminder"  # to the target: the referral waits for it
    ESCALATION = "escalation"  # to the source and the ACH coordinator: nothing happened for too long
    ACCEPT_TIMEOUT = "accept-timeout"  # not accepted in time: rejected by the network, re-routed


@dataclass(frozen=True)
class TimerPolicy:
    reminders: tuple[timedelta, ...] = (timedelta(hours=24), timedelta(hours=48), timedelta(weeks=1))
    accept_within: timedelta = timedelta(hours=72)
    escalate_after: timedelta = timedelta(days=10)


@dataclass(frozen=True)
class Timer:
    kind: TimerKind
    due_at: datetime
    number: int = 0  # which reminder (1, 2, ...)


def next_timer(
    status: Status, last_activity: datetime, reminders_sent: int, escalated: bool, policy: TimerPolicy
) -> Timer | None:
    """What happens next to a referral nobody touches, and when (all counted from its last change).
    A requested referral: reminders to the target before the acceptance limit, then the limit. An
    accepted one (in progress, on hold): reminders, then one escalation. Otherwise none."""
    if status is Status.REQUESTED:
        limit, last = (
            policy.accept_within,
            Timer(TimerKind.ACCEPT_TIMEOUT, last_activity + policy.accept_within),
        )
    elif status in (Status.ACCEPTED, Status.IN_PROGRESS, Status.ON_HOLD):
        if escalated:
            return None
        limit, last = (
            policy.escalate_after,
            Timer(TimerKind.ESCALATION, last_activity + policy.escalate_after),
        )
    else:
        return None
    if reminders_sent < len(policy.reminders) and policy.reminders[reminders_sent] < limit:
        return Timer(TimerKind.REMINDER, last_activity + policy.reminders[reminders_sent], reminders_sent + 1)
    return last


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``24h``, ``7d``, ``1w``; ValueError naming the text otherwise."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    value, unit = text.strip()[:-1], text.strip()[-1:]
    try:
        amount = float(value)
    except ValueError:
        amount = -1
    if unit not in units or amount <= 0:
        raise ValueError(f"{text!r} is not a duration (e.g. 90s, 15m, 24h, 7d, 1w)")
    return timedelta(**{units[unit]: amount})


def not_accepted_reason(limit: timedelta) -> str:
    seconds = limit.total_seconds()
    size, unit = next((s, u) for s, u in ((3600, "h"), (60, "min"), (1, "s")) if seconds % s == 0 or s == 1)
    return f"not accepted within {seconds / size:g} {unit} (the network's time limit)"
