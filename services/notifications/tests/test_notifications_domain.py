"""Who is told about a referral event, without I/O."""

from __future__ import annotations

from ach_notifications.domain import Notice, notices_for_referral_created, notices_for_status_changed


def test_target_is_told_of_a_new_referral_ids_only() -> None:
    assert notices_for_referral_created("ref-1", "cbo-1") == [
        Notice("cbo-1", "referral", "ref-1", "referral.created")
    ]
    assert notices_for_referral_created("ref-1", "") == []


def test_source_hears_of_changes_it_did_not_make() -> None:
    assert notices_for_status_changed("ref-1", "clinic-1", "cbo-1", "cbo-1", "accepted") == [
        Notice("clinic-1", "referral", "ref-1", "referral.status-changed")
    ]
    assert notices_for_status_changed("ref-1", "clinic-1", "cbo-1", "clinic-1", "accepted") == []


def test_target_hears_when_a_draft_reaches_it_and_when_it_is_withdrawn() -> None:
    assert notices_for_status_changed("ref-1", "clinic-1", "cbo-1", "clinic-1", "requested") == [
        Notice("cbo-1", "referral", "ref-1", "referral.created")
    ]
    # The network withdraws it (consent revoked): both parties hear.
    assert notices_for_status_changed("ref-1", "clinic-1", "cbo-1", "", "cancelled") == [
        Notice("clinic-1", "referral", "ref-1", "referral.status-changed"),
        Notice("cbo-1", "referral", "ref-1", "referral.withdrawn"),
    ]
    # A target's own cancellation is news to the source only.
    assert notices_for_status_changed("ref-1", "clinic-1", "cbo-1", "cbo-1", "cancelled") == [
        Notice("clinic-1", "referral", "ref-1", "referral.status-changed")
    ]
