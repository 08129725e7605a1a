"""Notification rules, pure: who is told about a referral event, and what (ids only)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Notice:
    partner_id: str
    subject_type: str
    subject_id: str
    event_type: str


def notices_for_referral_created(referral_id: str, target_partner_id: str) -> list[Notice]:
    """The target learns that a referral awaits it; a draft with no target notifies nobody yet."""
    if not target_partner_id:
        return []
    return [Notice(target_partner_id, "referral", referral_id, "referral.created")]


def notices_for_status_changed(
    referral_id: str, source_partner_id: str, actor_partner_id: str
) -> list[Notice]:
    """The source hears of every change the target makes (closing the loop); not of its own."""
    if not source_partner_id or source_partner_id == actor_partner_id:
        return []
    return [Notice(source_partner_id, "referral", referral_id, "referral.status-changed")]
