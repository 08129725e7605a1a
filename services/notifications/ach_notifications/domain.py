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
    referral_id: str,
    source_partner_id: str,
    target_partner_id: str,
    actor_partner_id: str,
    to_status: str,
) -> list[Notice]:
    """The source hears of every change it did not make (closing the loop). The target hears when a
    referral reaches it after being a draft, and when someone else withdraws it (e.g. the network,
    on a revoked consent)."""
    notices: list[Notice] = []
    if source_partner_id and source_partner_id != actor_partner_id:
        notices.append(Notice(source_partner_id, "referral", referral_id, "referral.status-changed"))
    if target_partner_id and target_partner_id != actor_partner_id:
        if to_status == "requested":
            notices.append(Notice(target_partner_id, "referral", referral_id, "referral.created"))
        elif to_status in {"cancelled", "entered-in-error"}:
            notices.append(Notice(target_partner_id, "referral", referral_id, "referral.withdrawn"))
    return notices
