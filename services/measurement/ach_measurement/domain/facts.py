"""The facts measures count, named so that a definition file can use them.

A measure counts *units* of one kind (a screening, a need found by a screening, a referral, a
rejection, a re-route) that meet *conditions* (``referred_within: 7d``), optionally broken down by a
*dimension* (race and ethnicity, language, age band, place, site, partner, need domain...). Units
are built from the facts the projection keeps (one row per event) by ``assemble``; nothing here
does I/O, and a unit's facts may have arrived in any order.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from ach_platform.vocabulary import NEED_DOMAINS


class UnitKind(StrEnum):
    SCREENING = "screening"
    NEED = "need"
    REFERRAL = "referral"
    REJECTION = "rejection"
    REROUTE = "reroute"


UNKNOWN = "unknown"  # a group for units whose dimension was not given or was declined

# OMB race categories (CDC Race & Ethnicity codes) and the group codes measures publish.
RACE_GROUPS = {
    "1002-5": "american-indian-or-alaska-native",
    "2028-9": "asian",
    "2054-5": "black-or-african-american",
    "2076-8": "native-hawaiian-or-other-pacific-islander",
    "2106-3": "white",
}
TWO_OR_MORE = "two-or-more-races"
HISPANIC = "2135-2"
NOT_HISPANIC = "2186-5"
AGE_GROUPS = {"0-17": "0-17", "65-74": "65+", "75+": "65+"}  # every other known band is 18-64
ADULT_BANDS = frozenset({"18-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75+"})


@dataclass(frozen=True)
class Demographics:
    race_codes: tuple[str, ...] = ()
    ethnicity_code: str = ""
    language: str = ""
    age_band: str = ""
    zip: str = ""
    neighbourhood: str = ""


NO_DEMOGRAPHICS = Demographics()


def race_group(d: Demographics) -> str:
    """Race alone, or two or more races as one group (the Census "alone" tabulation), so groups
    partition the residents and add up to the total, as small-cell protection needs."""
    known = [c for c in d.race_codes if c in RACE_GROUPS]
    if not known:
        return UNKNOWN
    return RACE_GROUPS[known[0]] if len(known) == 1 else TWO_OR_MORE


def ethnicity_group(d: Demographics) -> str:
    return {HISPANIC: "hispanic-or-latino", NOT_HISPANIC: "not-hispanic-or-latino"}.get(
        d.ethnicity_code, UNKNOWN
    )


def race_ethnicity_group(d: Demographics) -> str:
    """Hispanic or Latino of any race; otherwise, for residents known not to be, race alone or two
    or more races; unknown where ethnicity is not known."""
    if d.ethnicity_code == HISPANIC:
        return "hispanic-or-latino"
    if d.ethnicity_code != NOT_HISPANIC:
        return UNKNOWN
    return race_group(d)


def language_group(d: Demographics) -> str:
    return d.language.split("-")[0].lower() if d.language else UNKNOWN


def age_group(d: Demographics) -> str:
    if not d.age_band:
        return UNKNOWN
    return AGE_GROUPS.get(d.age_band, "18-64")


@dataclass(frozen=True)
class Change:
    sequence: int
    to_status: str
    outcome: str
    reason_code: str
    at: datetime


@dataclass(frozen=True)
class Reroute:
    sequence: int
    reason_code: str
    at: datetime
    to_partner_id: str


@dataclass(frozen=True)
class ReferralUnit:
    id: str
    resident_id: str
    at: datetime  # created
    need_id: str
    screening_id: str
    need_domain: str
    source_partner_id: str
    target_partner_id: str
    informational: bool
    demographics: Demographics
    site_id: str = ""
    changes: tuple[Change, ...] = ()  # in sequence order
    reroutes: tuple[Reroute, ...] = ()
    # The resident's own answer after it closed, "did you get the help you needed?" (None: none given)
    resident_got_help: bool | None = None

    @property
    def internal(self) -> bool:
        return self.source_partner_id == self.target_partner_id

    @property
    def accepted_at(self) -> datetime | None:
        for c in self.changes:
            if c.to_status in ("accepted", "in-progress", "completed"):
                return c.at
        return None

    @property
    def final(self) -> Change | None:
        return self.changes[-1] if self.changes else None

    @property
    def closed(self) -> bool:
        final = self.final
        return final is not None and final.to_status in ("completed", "cancelled", "failed", "rejected")

    @property
    def need_met_at(self) -> datetime | None:
        final = self.final
        if final is not None and final.to_status == "completed" and final.outcome == "need-met":
            return final.at
        return None

    @property
    def unresolved_reason(self) -> str:
        """Why a closed referral did not meet the need: its outcome or its reason code."""
        final = self.final
        if final is None or not self.closed or self.need_met_at is not None:
            return ""
        return final.outcome or final.reason_code or final.to_status


@dataclass(frozen=True)
class NeedUnit:
    id: str
    resident_id: str
    at: datetime  # identified
    screening_id: str
    need_domain: str
    partner_id: str  # the partner that screened
    site_id: str
    consented: bool
    demographics: Demographics
    referrals: tuple[ReferralUnit, ...] = ()
    # What later screenings of the same resident found for this domain: None when none assessed it.
    resolved_on_rescreen: bool | None = None


@dataclass(frozen=True)
class ScreeningUnit:
    id: str
    resident_id: str
    at: datetime
    partner_id: str
    site_id: str
    positive: frozenset[str]
    assessed: frozenset[str]  # positive or negative: every question of the domain answered
    consented: bool
    demographics: Demographics
    needs: tuple[NeedUnit, ...] = ()


@dataclass(frozen=True)
class EventUnit:
    """A rejection or a re-route of a referral: counted as events, with their reason codes."""

    id: str
    resident_id: str
    at: datetime
    need_domain: str
    partner_id: str  # the target that rejected, or the one it was re-routed from
    reason_code: str
    demographics: Demographics
    site_id: str = ""


Unit = ScreeningUnit | NeedUnit | ReferralUnit | EventUnit


# ---- conditions: name -> (argument parser or None, predicate) --------------------------------

_DURATION = re.compile(r"^(\d{1,4})([hdw])$")


def parse_duration(text: Any) -> timedelta:
    match = _DURATION.match(str(text))
    if match is None:
        raise ValueError(f"{str(text)[:20]!r} is not a duration such as 72h, 7d or 2w")
    amount, unit = int(match.group(1)), match.group(2)
    return {"h": timedelta(hours=amount), "d": timedelta(days=amount), "w": timedelta(weeks=amount)}[unit]


def parse_domains(value: Any) -> frozenset[str]:
    items = value if isinstance(value, list) else [value]
    domains = frozenset(str(v) for v in items)
    unknown = sorted(d for d in domains if d not in NEED_DOMAINS)
    if unknown or not domains:
        raise ValueError(f"{', '.join(repr(u[:40]) for u in unknown) or 'nothing'} is not a need domain")
    return domains


def _hand_offs(referrals: Iterable[ReferralUnit]) -> list[ReferralUnit]:
    return [r for r in referrals if not r.informational]


def _within(start: datetime, at: datetime | None, limit: timedelta) -> bool:
    return at is not None and at - start <= limit


def _first(times: Iterable[datetime | None]) -> datetime | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


@dataclass(frozen=True)
class Condition:
    parse: Callable[[Any], Any] | None
    holds: Callable[[Any, Any], bool]
    doc: str


def _c(doc: str, holds: Callable[[Any, Any], bool], parse: Callable[[Any], Any] | None = None) -> Condition:
    return Condition(parse, holds, doc)


def _screening_referrals(s: ScreeningUnit) -> list[ReferralUnit]:
    return _hand_offs(r for n in s.needs for r in n.referrals)


CONDITIONS: Mapping[UnitKind, Mapping[str, Condition]] = {
    UnitKind.SCREENING: {
        "adult": _c("the resident is 18 or older", lambda s, _: s.demographics.age_band in ADULT_BANDS),
        "positive": _c("positive for at least one domain", lambda s, _: bool(s.positive)),
        "consented": _c("the resident consented to share the screening", lambda s, _: s.consented),
        "screened_for": _c(
            "assessed for one of the domains listed",
            lambda s, domains: bool(s.assessed & domains),
            parse_domains,
        ),
        "positive_for": _c(
            "positive for one of the domains listed",
            lambda s, domains: bool(s.positive & domains),
            parse_domains,
        ),
        "referred": _c(
            "a referral was placed for one of its needs", lambda s, _: bool(_screening_referrals(s))
        ),
        "referral_accepted": _c(
            "a referral for one of its needs was accepted",
            lambda s, _: any(r.accepted_at for r in _screening_referrals(s)),
        ),
        "need_met": _c(
            "a referral for one of its needs closed with the need met",
            lambda s, _: any(r.need_met_at for r in _screening_referrals(s)),
        ),
    },
    UnitKind.NEED: {
        "consented": _c("the resident consented to share the screening", lambda n, _: n.consented),
        "referred": _c("a referral to a CBO was placed", lambda n, _: bool(_hand_offs(n.referrals))),
        "referred_within": _c(
            "a referral to a CBO was placed within the time given",
            lambda n, limit: _within(n.at, _first(r.at for r in _hand_offs(n.referrals)), limit),
            parse_duration,
        ),
        "intervention_within": _c(
            "a referral or the details of a service were given within the time given",
            lambda n, limit: _within(n.at, _first(r.at for r in n.referrals), limit),
            parse_duration,
        ),
        "accepted": _c(
            "a referral for it was accepted", lambda n, _: any(r.accepted_at for r in _hand_offs(n.referrals))
        ),
        "need_met": _c(
            "a referral for it closed with the need met",
            lambda n, _: any(r.need_met_at for r in _hand_offs(n.referrals)),
        ),
        "rescreened": _c(
            "a later screening of the resident assessed the domain",
            lambda n, _: n.resolved_on_rescreen is not None,
        ),
        "resolved_on_rescreen": _c(
            "a later screening of the resident found the domain negative",
            lambda n, _: n.resolved_on_rescreen is True,
        ),
    },
    UnitKind.REFERRAL: {
        "hand_off": _c("a referral to a CBO, not only a service's details", lambda r, _: not r.informational),
        "informational": _c("only a service's details were given", lambda r, _: r.informational),
        "internal": _c("source and target are the same organization", lambda r, _: r.internal),
        "accepted": _c("accepted by a CBO", lambda r, _: r.accepted_at is not None),
        "accepted_within": _c(
            "accepted within the time given",
            lambda r, limit: _within(r.at, r.accepted_at, limit),
            parse_duration,
        ),
        "rejected": _c(
            "rejected at least once", lambda r, _: any(c.to_status == "rejected" for c in r.changes)
        ),
        "rerouted": _c("re-routed at least once", lambda r, _: bool(r.reroutes)),
        "closed": _c("closed (completed, cancelled, failed or rejected)", lambda r, _: r.closed),
        "need_met": _c("closed with the need met", lambda r, _: r.need_met_at is not None),
        "need_met_within": _c(
            "closed with the need met within the time given",
            lambda r, limit: _within(r.at, r.need_met_at, limit),
            parse_duration,
        ),
        "unresolved": _c("closed without the need met", lambda r, _: bool(r.unresolved_reason)),
        "resident_answered": _c(
            "the resident answered whether they got the help they needed",
            lambda r, _: r.resident_got_help is not None,
        ),
        "resident_got_help": _c(
            "the resident said they got the help they needed", lambda r, _: r.resident_got_help is True
        ),
    },
    UnitKind.REJECTION: {},
    UnitKind.REROUTE: {},
}

# Values a median is taken of: name -> function of a unit (None: the unit has no such value).
VALUES: Mapping[UnitKind, Mapping[str, Callable[[Any], float | None]]] = {
    UnitKind.REFERRAL: {
        "days_to_acceptance": lambda r: (
            (r.accepted_at - r.at).total_seconds() / 86400 if r.accepted_at is not None else None
        ),
        "days_to_need_met": lambda r: (
            (r.need_met_at - r.at).total_seconds() / 86400 if r.need_met_at is not None else None
        ),
    },
    UnitKind.NEED: {
        "days_to_referral": lambda n: (
            (first - n.at).total_seconds() / 86400
            if (first := _first(r.at for r in _hand_offs(n.referrals))) is not None
            else None
        ),
    },
}


# ---- dimensions: name -> function of a unit ----------------------------------------------------

_DEMOGRAPHIC: Mapping[str, Callable[[Demographics], str]] = {
    "race_ethnicity": race_ethnicity_group,
    "race": race_group,
    "ethnicity": ethnicity_group,
    "language": language_group,
    "age_band": lambda d: d.age_band or UNKNOWN,
    "age_group": age_group,
    "zip": lambda d: d.zip or UNKNOWN,
    "neighbourhood": lambda d: d.neighbourhood or UNKNOWN,
}


def _demographic(name: str) -> Callable[[Any], str]:
    group = _DEMOGRAPHIC[name]
    return lambda u: group(u.demographics)


_COMMON = {name: _demographic(name) for name in _DEMOGRAPHIC} | {"site": lambda u: u.site_id or UNKNOWN}
DIMENSIONS: Mapping[UnitKind, Mapping[str, Callable[[Any], str]]] = {
    UnitKind.SCREENING: _COMMON | {"partner": lambda s: s.partner_id},
    UnitKind.NEED: _COMMON | {"partner": lambda n: n.partner_id, "need_domain": lambda n: n.need_domain},
    UnitKind.REFERRAL: _COMMON
    | {
        "partner": lambda r: r.target_partner_id,
        "source_partner": lambda r: r.source_partner_id,
        "need_domain": lambda r: r.need_domain or UNKNOWN,
        "unresolved_reason": lambda r: r.unresolved_reason or UNKNOWN,
    },
    UnitKind.REJECTION: _COMMON
    | {
        "partner": lambda e: e.partner_id,
        "need_domain": lambda e: e.need_domain,
        "reason_code": lambda e: e.reason_code,
    },
    UnitKind.REROUTE: _COMMON
    | {
        "partner": lambda e: e.partner_id,
        "need_domain": lambda e: e.need_domain,
        "reason_code": lambda e: e.reason_code,
    },
}
# Dimensions whose groups are partners: a partner knows its own cells, so suppression must hold
# even when one hidden cell is known to the reader.
PARTY_DIMENSIONS = frozenset({"site", "partner", "source_partner"})


# ---- assembling units from the projection's facts ---------------------------------------------


@dataclass(frozen=True)
class ScreeningFacts:
    screening_id: str
    resident_id: str
    partner_id: str
    site_id: str
    screened_at: datetime
    positive: tuple[str, ...]
    negative: tuple[str, ...]
    consented: bool


@dataclass(frozen=True)
class NeedFacts:
    need_id: str
    screening_id: str
    resident_id: str
    need_domain: str
    partner_id: str
    identified_at: datetime
    consented: bool


@dataclass(frozen=True)
class ReferralFacts:
    referral_id: str
    resident_id: str
    need_id: str
    screening_id: str
    need_domain: str
    source_partner_id: str
    target_partner_id: str
    created_at: datetime
    informational: bool


@dataclass(frozen=True)
class ChangeFacts:
    referral_id: str
    change: Change
    target_partner_id: str


@dataclass(frozen=True)
class RerouteFacts:
    referral_id: str
    reroute: Reroute
    from_partner_id: str


@dataclass(frozen=True)
class FeedbackFacts:
    referral_id: str
    got_help: bool
    answered_at: datetime


@dataclass
class Facts:
    """Everything the projection holds, as plain values."""

    screenings: list[ScreeningFacts] = field(default_factory=list)
    demographics: dict[str, Demographics] = field(default_factory=dict)  # by screening id
    needs: list[NeedFacts] = field(default_factory=list)
    referrals: list[ReferralFacts] = field(default_factory=list)
    changes: list[ChangeFacts] = field(default_factory=list)
    reroutes: list[RerouteFacts] = field(default_factory=list)
    feedback: list[FeedbackFacts] = field(default_factory=list)


@dataclass(frozen=True)
class Units:
    screenings: tuple[ScreeningUnit, ...]
    needs: tuple[NeedUnit, ...]
    referrals: tuple[ReferralUnit, ...]
    rejections: tuple[EventUnit, ...]
    reroutes: tuple[EventUnit, ...]

    def of(self, kind: UnitKind) -> tuple[Unit, ...]:
        by_kind: dict[UnitKind, tuple[Unit, ...]] = {
            UnitKind.SCREENING: self.screenings,
            UnitKind.NEED: self.needs,
            UnitKind.REFERRAL: self.referrals,
            UnitKind.REJECTION: self.rejections,
            UnitKind.REROUTE: self.reroutes,
        }
        return by_kind[kind]


def assemble(facts: Facts) -> Units:
    """Units from facts in any order. A need or referral whose screening has not been heard of yet
    still counts (without the screening's demographics or site); a status change or re-route whose
    referral has not been heard of waits (it is kept, and counts once the referral arrives)."""
    screenings = {s.screening_id: s for s in facts.screenings}

    def demographics_of(screening_id: str) -> Demographics:
        return facts.demographics.get(screening_id, NO_DEMOGRAPHICS)

    def site_of(screening_id: str) -> str:
        s = screenings.get(screening_id)
        return s.site_id if s is not None else ""

    changes: dict[str, list[Change]] = defaultdict(list)
    for c in facts.changes:
        changes[c.referral_id].append(c.change)
    reroutes: dict[str, list[Reroute]] = defaultdict(list)
    for x in facts.reroutes:
        reroutes[x.referral_id].append(x.reroute)

    answers: dict[str, bool] = {}
    for f in sorted(facts.feedback, key=lambda f: f.answered_at):
        answers.setdefault(f.referral_id, f.got_help)  # the first answer counts

    referral_units = tuple(
        ReferralUnit(
            id=r.referral_id,
            resident_id=r.resident_id,
            at=r.created_at,
            need_id=r.need_id,
            screening_id=r.screening_id,
            need_domain=r.need_domain,
            source_partner_id=r.source_partner_id,
            target_partner_id=r.target_partner_id,
            informational=r.informational,
            demographics=demographics_of(r.screening_id),
            site_id=site_of(r.screening_id),
            changes=tuple(sorted(changes.get(r.referral_id, ()), key=lambda c: c.sequence)),
            reroutes=tuple(sorted(reroutes.get(r.referral_id, ()), key=lambda x: x.sequence)),
            resident_got_help=answers.get(r.referral_id),
        )
        for r in sorted(facts.referrals, key=lambda r: r.referral_id)
    )
    by_referral = {r.id: r for r in referral_units}
    referrals_of_need: dict[str, list[ReferralUnit]] = defaultdict(list)
    for r in referral_units:
        if r.need_id:
            referrals_of_need[r.need_id].append(r)

    # A need is resolved on re-screening by the resident's next screening that assessed its domain.
    history: dict[str, list[ScreeningFacts]] = defaultdict(list)
    for s in facts.screenings:
        history[s.resident_id].append(s)
    for screenings_of in history.values():
        screenings_of.sort(key=lambda s: (s.screened_at, s.screening_id))

    def rescreen(n: NeedFacts) -> bool | None:
        for s in history.get(n.resident_id, ()):
            if s.screened_at <= n.identified_at or s.screening_id == n.screening_id:
                continue
            if n.need_domain in s.negative:
                return True
            if n.need_domain in s.positive:
                return False
        return None

    need_units = tuple(
        NeedUnit(
            id=n.need_id,
            resident_id=n.resident_id,
            at=n.identified_at,
            screening_id=n.screening_id,
            need_domain=n.need_domain,
            partner_id=n.partner_id,
            site_id=site_of(n.screening_id),
            # A referral is placed only under the resident's consent, recorded with it or later.
            consented=n.consented or bool(referrals_of_need.get(n.need_id)),
            demographics=demographics_of(n.screening_id),
            referrals=tuple(referrals_of_need.get(n.need_id, ())),
            resolved_on_rescreen=rescreen(n),
        )
        for n in sorted(facts.needs, key=lambda n: n.need_id)
    )
    needs_of_screening: dict[str, list[NeedUnit]] = defaultdict(list)
    for n in need_units:
        needs_of_screening[n.screening_id].append(n)
    screening_units = tuple(
        ScreeningUnit(
            id=s.screening_id,
            resident_id=s.resident_id,
            at=s.screened_at,
            partner_id=s.partner_id,
            site_id=s.site_id,
            positive=frozenset(s.positive),
            assessed=frozenset(s.positive) | frozenset(s.negative),
            consented=s.consented or any(n.consented for n in needs_of_screening.get(s.screening_id, ())),
            demographics=demographics_of(s.screening_id),
            needs=tuple(needs_of_screening.get(s.screening_id, ())),
        )
        for s in sorted(facts.screenings, key=lambda s: s.screening_id)
    )

    def event_unit(
        referral_id: str, sequence: int, at: datetime, partner: str, reason: str
    ) -> EventUnit | None:
        r = by_referral.get(referral_id)
        if r is None:
            return None
        return EventUnit(
            id=f"{referral_id}#{sequence}",
            resident_id=r.resident_id,
            at=at,
            need_domain=r.need_domain,
            partner_id=partner,
            reason_code=reason or "other",
            demographics=r.demographics,
            site_id=r.site_id,
        )

    rejections = tuple(
        u
        for c in sorted(facts.changes, key=lambda c: (c.referral_id, c.change.sequence))
        if c.change.to_status == "rejected"
        and (
            u := event_unit(
                c.referral_id, c.change.sequence, c.change.at, c.target_partner_id, c.change.reason_code
            )
        )
    )
    rerouted = tuple(
        u
        for x in sorted(facts.reroutes, key=lambda x: (x.referral_id, x.reroute.sequence))
        if (
            u := event_unit(
                x.referral_id, x.reroute.sequence, x.reroute.at, x.from_partner_id, x.reroute.reason_code
            )
        )
    )
    return Units(screening_units, need_units, referral_units, rejections, rerouted)
