"""The Gravity referral Task state machine, every (status, transition, actor), without I/O."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from ach_platform.consent import ConsentTerms
from ach_platform.geo import distance_km
from ach_platform.opening_hours import Hours
from ach_referrals.domain import (
    CONSENT_REQUIRED,
    NO_MATCHING_SERVICE,
    REASON_REQUIRED,
    TERMINAL,
    TRANSITIONS,
    CandidateService,
    Outcome,
    ReroutePolicy,
    ResidentFacts,
    Role,
    Status,
    Timer,
    TimerKind,
    TimerPolicy,
    check_transition,
    information_only,
    next_timer,
    not_accepted_reason,
    parse_duration,
    parse_reroute_policies,
    proposals,
    rank_targets,
    reroute_policy,
    rerouted_reason,
    route,
    withdraw_on_revocation,
)

# The allowed transitions from the Gravity IG, written out independently of the implementation.
ALLOWED = {
    ("draft", "requested"): {"source"},
    ("requested", "accepted"): {"target"},
    ("requested", "rejected"): {"target", "network"},  # the network: not accepted in time
    ("requested", "cancelled"): {"source"},
    # No wrong door: re-routed to another target, by the network's policy or the source's choice.
    ("rejected", "requested"): {"source", "network"},
    ("accepted", "in-progress"): {"target"},
    ("accepted", "on-hold"): {"target"},
    ("accepted", "completed"): {"target"},
    ("accepted", "failed"): {"target"},
    ("accepted", "cancelled"): {"source", "target"},
    ("in-progress", "on-hold"): {"target"},
    ("in-progress", "completed"): {"target"},
    ("in-progress", "failed"): {"target"},
    ("in-progress", "cancelled"): {"source", "target"},
    ("on-hold", "in-progress"): {"target"},
    ("on-hold", "completed"): {"target"},
    ("on-hold", "failed"): {"target"},
    ("on-hold", "cancelled"): {"source", "target"},
    **{
        (s.value, "entered-in-error"): {"source", "target"}
        for s in Status
        if s is not Status.ENTERED_IN_ERROR
    },
}


@pytest.mark.parametrize(
    ("current", "to", "role"),
    list(itertools.product(Status, Status, [Role.SOURCE, Role.TARGET, Role.NETWORK, None])),
)
def test_every_status_transition_actor(current: Status, to: Status, role: Role | None) -> None:
    reason = "resident moved away" if to in REASON_REQUIRED else ""
    outcome = Outcome.NEED_MET if to is Status.COMPLETED else None
    errors = check_transition(current, to, role, reason, outcome)
    allowed = role is not None and role.value in ALLOWED.get((current.value, to.value), set())
    assert (errors == []) == allowed, (current, to, role, errors)


def test_table_matches_the_written_rules() -> None:
    assert {(a.value, b.value): {r.value for r in roles} for (a, b), roles in TRANSITIONS.items()} == ALLOWED


@pytest.mark.parametrize("to", sorted(REASON_REQUIRED))
def test_reason_required(to: Status) -> None:
    current = Status.REQUESTED if to in (Status.REJECTED, Status.CANCELLED) else Status.ACCEPTED
    role = Role.SOURCE if to is Status.CANCELLED else Role.TARGET
    errors = check_transition(current, to, role, "  ", None)
    assert [(e.field, e.precondition) for e in errors] == [("reason", False)]


def test_outcome_only_and_always_on_completion() -> None:
    assert [e.field for e in check_transition(Status.ACCEPTED, Status.COMPLETED, Role.TARGET, "", None)] == [
        "outcome"
    ]
    errors = check_transition(Status.REQUESTED, Status.ACCEPTED, Role.TARGET, "", Outcome.NEED_MET)
    assert [e.field for e in errors] == ["outcome"]


def test_ranking_prefers_language_then_capacity_and_skips_inactive() -> None:
    c = [
        CandidateService("a", "org-a", ("food-insecurity",), ("en",), True, 5),
        CandidateService("b", "org-b", ("food-insecurity",), ("en", "es"), True, 0),
        CandidateService("c", "org-c", ("food-insecurity",), ("es",), True, 3),
        CandidateService("d", "org-d", ("food-insecurity",), ("es",), False, 9),
        CandidateService("e", "org-e", ("housing-instability",), ("es",), True, 9),
    ]
    ranked = rank_targets(c, "food-insecurity", "es")
    assert [m.service.service_id for m in ranked] == ["c", "b", "a"]
    assert ranked[0].reasons == ("serves food-insecurity", "speaks es", "3 openings")


NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def consent(partners: tuple[str, ...] = (), status: str = "active") -> ConsentTerms:
    return ConsentTerms("c1", "r1", frozenset(), frozenset(partners), status, NOW - timedelta(days=1))


PANTRY = CandidateService(
    "svc-pantry", "cbo-pantry", ("food-insecurity",), ("en", "es"), True, 5, partner_id="cbo-pantry"
)
MEALS = CandidateService(
    "svc-meals", "cbo-meals", ("food-insecurity",), ("en",), True, 5, partner_id="cbo-meals"
)
# A 2-1-1 entry: its HSDS organization is no network partner.
PLAIN_211 = CandidateService("svc-211", "3f1c0a9e-hsds-org", ("food-insecurity",), ("en", "es"), True, 9)
# A partner's service imported from HSDS: the organization id is the directory's, the partner the registry's.
LINKED = CandidateService(
    "svc-linked", "8d2e-hsds-org", ("housing-instability",), ("en",), True, 1, partner_id="cbo-housing"
)


def test_a_need_goes_to_the_best_service_the_resident_consented_to() -> None:
    routing = route([PANTRY, MEALS], "food-insecurity", "es", [consent()], NOW)
    assert routing.match is not None and routing.match.service is PANTRY and routing.draft_reason == ""
    # The resident named the meals program only: the better-ranked pantry is passed over.
    routing = route([PANTRY, MEALS], "food-insecurity", "es", [consent(("cbo-meals",))], NOW)
    assert routing.match is not None and routing.match.service is MEALS


def test_without_consent_or_without_a_service_the_referral_stays_a_draft_and_says_why() -> None:
    assert route([PANTRY], "food-insecurity", "en", [], NOW).draft_reason == CONSENT_REQUIRED
    assert route([PANTRY], "food-insecurity", "en", [consent(status="revoked")], NOW).match is None
    assert route([PANTRY], "housing-instability", "en", [consent()], NOW).draft_reason == NO_MATCHING_SERVICE


def test_only_partners_receive_referrals_and_consent_names_the_partner_not_the_hsds_organization() -> None:
    # The 2-1-1 entry ranks first (capacity, language) but receives nothing: the partner's service does.
    routing = route([PLAIN_211, PANTRY], "food-insecurity", "es", [consent()], NOW)
    assert routing.match is not None and routing.match.service is PANTRY and routing.information is None
    # Consent names partners: the linked partner is covered, its HSDS organization id covers nothing.
    covered = route([LINKED], "housing-instability", "en", [consent(("cbo-housing",))], NOW)
    assert covered.match is not None and covered.match.service is LINKED
    by_org = route([LINKED], "housing-instability", "en", [consent(("8d2e-hsds-org",))], NOW)
    assert (by_org.match, by_org.draft_reason) == (None, CONSENT_REQUIRED)


def test_a_need_no_partner_serves_gets_the_best_other_service_for_information() -> None:
    plain_es = CandidateService("svc-211-es", "org-es", ("food-insecurity",), ("es",), True, 0)
    routing = route([plain_es, PLAIN_211], "food-insecurity", "es", [], NOW)
    assert routing.match is None and routing.draft_reason == ""
    assert routing.information is not None and routing.information.service is PLAIN_211
    # Never a hand-off to it, whatever the consent says.
    assert proposals([PLAIN_211], "food-insecurity", "es", [consent()], NOW) == []
    assert [m.service for m in information_only([PLAIN_211, PANTRY], "food-insecurity", "es")] == [PLAIN_211]


def test_open_referrals_the_consents_no_longer_cover_are_withdrawn() -> None:
    revoked = [consent(status="revoked")]
    for status in (Status.REQUESTED, Status.ACCEPTED, Status.IN_PROGRESS, Status.ON_HOLD):
        assert withdraw_on_revocation(status, "food-insecurity", "cbo-pantry", revoked, NOW)
        assert not withdraw_on_revocation(status, "food-insecurity", "cbo-pantry", [consent()], NOW)
    for status in (Status.DRAFT, Status.COMPLETED, Status.CANCELLED, Status.REJECTED):
        assert not withdraw_on_revocation(status, "food-insecurity", "cbo-pantry", revoked, NOW)


KITCHEN = CandidateService(
    "svc-kitchen", "cbo-kitchen", ("food-insecurity",), ("es",), True, 0, partner_id="cbo-kitchen"
)


def test_proposals_leave_out_who_turned_it_down_and_whom_consent_does_not_cover() -> None:
    everyone = [PANTRY, MEALS, KITCHEN]
    assert [m.service for m in proposals(everyone, "food-insecurity", "es", [consent()], NOW)] == [
        PANTRY,
        KITCHEN,
        MEALS,
    ]
    after_pantry = proposals(everyone, "food-insecurity", "es", [consent()], NOW, {"cbo-pantry"})
    assert [m.service for m in after_pantry] == [KITCHEN, MEALS]
    assert after_pantry[0].reasons == ("serves food-insecurity", "speaks es")
    covered = proposals(everyone, "food-insecurity", "es", [consent(("cbo-meals",))], NOW, {"cbo-pantry"})
    assert [m.service for m in covered] == [MEALS]
    assert (
        proposals(
            everyone, "food-insecurity", "es", [consent()], NOW, {"cbo-pantry", "cbo-kitchen", "cbo-meals"}
        )
        == []
    )


def test_reroute_policies_parse_per_need_domain_and_name_a_bad_entry() -> None:
    default, by_domain = parse_reroute_policies("automatic, intimate-partner-violence=source")
    assert default is ReroutePolicy.AUTOMATIC
    assert reroute_policy("intimate-partner-violence", by_domain, default) is ReroutePolicy.SOURCE
    assert reroute_policy("food-insecurity", by_domain, default) is ReroutePolicy.AUTOMATIC
    assert parse_reroute_policies("source") == (ReroutePolicy.SOURCE, {})
    with pytest.raises(ValueError, match="'housing-instability=later'"):
        parse_reroute_policies("automatic,housing-instability=later")
    with pytest.raises(ValueError, match="'interpersonal-safety' is not a need domain code"):
        parse_reroute_policies("automatic,interpersonal-safety=source")


def test_a_rerouted_referral_says_why() -> None:
    assert rerouted_reason("no-capacity") == "re-routed after the target turned it down (no-capacity)"
    assert rerouted_reason("") == "re-routed after the target turned it down (other)"


H = timedelta(hours=1)
POLICY = TimerPolicy(reminders=(24 * H, 48 * H, 168 * H), accept_within=72 * H, escalate_after=240 * H)


@pytest.mark.parametrize(
    ("status", "sent", "escalated", "expected"),
    [
        # Requested: reminders before the acceptance limit (the 1-week one falls after it), then the limit.
        (Status.REQUESTED, 0, False, Timer(TimerKind.REMINDER, NOW + 24 * H, 1)),
        (Status.REQUESTED, 1, False, Timer(TimerKind.REMINDER, NOW + 48 * H, 2)),
        (Status.REQUESTED, 2, False, Timer(TimerKind.ACCEPT_TIMEOUT, NOW + 72 * H)),
        # Accepted and working: all reminders, then one escalation, then nothing.
        (Status.ACCEPTED, 0, False, Timer(TimerKind.REMINDER, NOW + 24 * H, 1)),
        (Status.IN_PROGRESS, 2, False, Timer(TimerKind.REMINDER, NOW + 168 * H, 3)),
        (Status.ON_HOLD, 3, False, Timer(TimerKind.ESCALATION, NOW + 240 * H)),
        (Status.IN_PROGRESS, 3, True, None),
        # Drafts and closed referrals wait for nobody.
        *[(s, 0, False, None) for s in (Status.DRAFT, *sorted(TERMINAL))],
    ],
)
def test_the_next_timer_follows_from_the_state(
    status: Status, sent: int, escalated: bool, expected: Timer | None
) -> None:
    assert next_timer(status, NOW, sent, escalated, POLICY) == expected


@pytest.mark.parametrize(
    ("text", "value"), [("90s", 90), ("15m", 900), ("24h", 86400), ("7d", 604800), ("1w", 604800)]
)
def test_durations_parse(text: str, value: float) -> None:
    assert parse_duration(text).total_seconds() == value


@pytest.mark.parametrize("bad", ["", "24", "h", "-1h", "0s", "1y", "abc"])
def test_a_bad_duration_is_named(bad: str) -> None:
    with pytest.raises(ValueError, match=repr(bad)):
        parse_duration(bad)


def test_the_acceptance_limit_says_itself_in_the_reason() -> None:
    assert not_accepted_reason(72 * H) == "not accepted within 72 h (the network's time limit)"
    assert (
        not_accepted_reason(timedelta(minutes=90)) == "not accepted within 90 min (the network's time limit)"
    )
    assert not_accepted_reason(timedelta(seconds=6)) == "not accepted within 6 s (the network's time limit)"


STOCKTON = (37.9577, -121.2908)
LODI = (38.1302, -121.2724)  # about 19 km north


def service(service_id: str, **more: object) -> CandidateService:
    base: dict[str, object] = {
        "service_id": service_id,
        "organization_id": f"org-{service_id}",
        "need_domains": ("food-insecurity",),
        "languages": ("en", "es"),
        "active": True,
        "capacity_available": 2,
    }
    return CandidateService(**{**base, **more})  # type: ignore[arg-type]


def test_matching_checks_eligibility_and_area_and_ranks_the_nearest_first() -> None:
    near = service("near", places=(STOCKTON,))
    far = service("far", places=(LODI,))
    seniors = service("seniors", places=(STOCKTON,), minimum_age=60)
    zips = service("zips", places=(LODI,), area_zips=frozenset({"95240"}))
    radius = service("radius", places=(LODI,), area_radius_km=5.0)
    anywhere = service("anywhere")  # no places known: after those with a distance
    resident = ResidentFacts(point=STOCKTON, zip_code="95202", age=34)
    found = rank_targets([anywhere, far, zips, radius, seniors, near], "food-insecurity", "es", resident)
    assert [m.service.service_id for m in found] == ["near", "far", "anywhere"]
    assert found[0].distance_km == pytest.approx(0.0, abs=0.01)
    assert found[1].distance_km == pytest.approx(19.2, abs=0.5)
    assert "19.2 km away" in found[1].reasons or "19.1 km away" in found[1].reasons
    assert found[2].distance_km is None
    # The same services for a 70-year-old in Lodi's ZIP: the seniors' service and the ZIP area admit.
    older = ResidentFacts(point=LODI, zip_code="95240", age=70)
    ids = [
        m.service.service_id
        for m in rank_targets([seniors, zips, radius, near], "food-insecurity", "es", older)
    ]
    assert ids == ["radius", "zips", "near", "seniors"]
    assert "serves ages 60-any" in rank_targets([seniors], "food-insecurity", "es", older)[0].reasons
    # Without facts, no one is left out for eligibility.
    assert len(rank_targets([seniors, zips, radius], "food-insecurity", "es")) == 3


WEEKDAYS_9_TO_5 = Hours(
    "", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", "09:00", "17:00", time_zone="America/Los_Angeles"
)
SATURDAY_MORNINGS = Hours("", "FREQ=WEEKLY;BYDAY=SA", "08:00", "12:00", time_zone="America/Los_Angeles")
THANKSGIVING = Hours("", "", valid_from="2026-11-26", valid_to="2026-11-26", closed=True)


@pytest.mark.parametrize(
    ("available_at", "expected"),
    [
        # Wednesday 10:00 in Stockton: the weekday service is open; Saturdays' is not; unpublished after.
        (datetime(2026, 11, 25, 18, 0, tzinfo=UTC), ["weekdays", "unpublished"]),
        # Saturday 09:00 local.
        (datetime(2026, 11, 28, 17, 0, tzinfo=UTC), ["saturdays", "unpublished"]),
        # Thanksgiving 10:00 local: the weekday service is closed for the holiday.
        (datetime(2026, 11, 26, 18, 0, tzinfo=UTC), ["unpublished"]),
        # No time given: nobody left out for hours.
        (None, ["saturdays", "unpublished", "weekdays"]),
    ],
)
def test_matching_leaves_out_services_closed_when_the_resident_can_go(
    available_at: datetime | None, expected: list[str]
) -> None:
    weekdays = service("weekdays", hours=(WEEKDAYS_9_TO_5, THANKSGIVING))
    saturdays = service("saturdays", hours=(SATURDAY_MORNINGS,))
    unpublished = service("unpublished")  # no hours published: kept, after those known open
    resident = ResidentFacts(available_at=available_at)
    found = rank_targets([weekdays, saturdays, unpublished], "food-insecurity", "es", resident)
    assert [m.service.service_id for m in found] == expected
    if available_at is not None and found[0].service.hours:
        assert any(r.startswith("open ") for r in found[0].reasons)


def test_distance_is_the_great_circle() -> None:
    assert distance_km((0.0, 0.0), (0.0, 1.0)) == pytest.approx(111.2, abs=0.1)
    assert distance_km(STOCKTON, STOCKTON) == 0.0
