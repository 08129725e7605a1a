"""Measurement rules, pure: which funnel counters an event moves."""

from __future__ import annotations

ALL_DOMAINS = ""  # the counter row for all need domains together

SCREENINGS_COMPLETED = "screenings_completed"
NEEDS_IDENTIFIED = "needs_identified"
REFERRALS_CREATED = "referrals_created"
REFERRALS_ACCEPTED = "referrals_accepted"
REFERRALS_COMPLETED = "referrals_completed"
REFERRALS_NEED_MET = "referrals_need_met"
NOTIFICATIONS_DELIVERED = "notifications_delivered"
# The resident was given a service's details, nothing handed off: never a referral created.
INFORMATIONAL_REFERRALS = "informational_referrals"
FUNNEL = (
    SCREENINGS_COMPLETED,
    NEEDS_IDENTIFIED,
    REFERRALS_CREATED,
    REFERRALS_ACCEPTED,
    REFERRALS_COMPLETED,
    REFERRALS_NEED_MET,
    NOTIFICATIONS_DELIVERED,
    INFORMATIONAL_REFERRALS,
)


def per_domain(metric: str, need_domain: str) -> list[tuple[str, str]]:
    """A count goes to its need domain's row and to the all-domains row."""
    return [(metric, ALL_DOMAINS), (metric, need_domain)] if need_domain else [(metric, ALL_DOMAINS)]


def referral_created_counters(informational: bool, need_domain: str) -> list[tuple[str, str]]:
    """Hand-offs to a CBO and informational referrals are counted apart."""
    return per_domain(INFORMATIONAL_REFERRALS if informational else REFERRALS_CREATED, need_domain)


def status_change_counters(to_status: str, outcome: str, need_domain: str) -> list[tuple[str, str]]:
    counters: list[tuple[str, str]] = []
    if to_status == "accepted":
        counters += per_domain(REFERRALS_ACCEPTED, need_domain)
    if to_status == "completed":
        counters += per_domain(REFERRALS_COMPLETED, need_domain)
        if outcome == "need-met":
            counters += per_domain(REFERRALS_NEED_MET, need_domain)
    return counters
