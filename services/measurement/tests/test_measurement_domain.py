"""Which funnel counters an event moves, without I/O."""

from __future__ import annotations

from ach_measurement.domain.funnel import (
    ALL_DOMAINS,
    REFERRALS_ACCEPTED,
    REFERRALS_COMPLETED,
    REFERRALS_NEED_MET,
    status_change_counters,
)


def test_completion_with_need_met_counts_twice_per_level() -> None:
    assert status_change_counters("completed", "need-met", "food-insecurity") == [
        (REFERRALS_COMPLETED, ALL_DOMAINS),
        (REFERRALS_COMPLETED, "food-insecurity"),
        (REFERRALS_NEED_MET, ALL_DOMAINS),
        (REFERRALS_NEED_MET, "food-insecurity"),
    ]


def test_acceptance_and_other_changes() -> None:
    assert status_change_counters("accepted", "", "") == [(REFERRALS_ACCEPTED, ALL_DOMAINS)]
    assert status_change_counters("on-hold", "", "food-insecurity") == []
