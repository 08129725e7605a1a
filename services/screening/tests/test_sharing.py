"""What of another partner's screening a partner may see: only what the submitter's consent shares."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ach_platform.consent import ConsentTerms
from ach_screening.domain.sharing import WHOLE, shared_domains

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ASSESSED = ["food-insecurity", "intimate-partner-violence", "housing-instability"]


def consent(recorded_by: str, domains: tuple[str, ...] = (), partners: tuple[str, ...] = ()) -> ConsentTerms:
    return ConsentTerms(
        consent_id=f"c-{recorded_by}",
        resident_id="r-1",
        need_domains=frozenset(domains),
        partner_ids=frozenset(partners),
        status="active",
        given_at=NOW - timedelta(days=1),
        recorded_by=recorded_by,
    )


def test_the_submitter_and_the_ach_see_the_whole_screening() -> None:
    assert shared_domains("clinic-1", "clinic-1", False, ASSESSED, [], set(), NOW) is WHOLE
    assert shared_domains("clinic-1", "ach-backbone", True, ASSESSED, [], {"ach-backbone"}, NOW) is WHOLE


def test_another_partner_sees_only_the_domains_the_submitters_consent_shares_with_it() -> None:
    consents = [consent("clinic-1", ("food-insecurity",), ("cbo-pantry",))]
    assert shared_domains("clinic-1", "cbo-pantry", False, ASSESSED, consents, set(), NOW) == frozenset(
        {"food-insecurity"}
    )
    assert shared_domains("clinic-1", "cbo-other", False, ASSESSED, consents, set(), NOW) == frozenset()


def test_a_consent_the_caller_took_itself_unlocks_nothing_another_partner_supplied() -> None:
    consents = [consent("cbo-outreach")]  # every need, every CBO: but taken by the caller
    assert shared_domains("clinic-1", "cbo-outreach", False, ASSESSED, consents, set(), NOW) == frozenset()
    # One the ACH took for the resident counts for everyone's records.
    by_ach = [consent("ach-backbone", ("housing-instability",))]
    assert shared_domains(
        "clinic-1", "cbo-outreach", False, ASSESSED, by_ach, {"ach-backbone"}, NOW
    ) == frozenset({"housing-instability"})
