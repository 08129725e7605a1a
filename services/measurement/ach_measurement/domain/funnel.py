"""The referral funnel's stages, exact counts for the backbone that runs the network: each stage
counts facts (screenings; needs; referrals, hand-offs and informational ones apart; status changes to
accepted, to completed, completed with the need met; deliveries), in total or for one need domain."""

from __future__ import annotations

ALL_DOMAINS = ""  # all need domains together

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

# The status changes the funnel counts, as the referral events name them.
ACCEPTED = "accepted"
COMPLETED = "completed"
NEED_MET = "need-met"
