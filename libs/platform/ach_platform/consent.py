"""The consent rule, pure: whether a resident's consent lets the network share with a given CBO for
a given need domain at a given moment. The identity service decides shares with it; the referral
service uses the same rule to decide whether a referral may be placed with a CBO at all."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

ACTIVE = "active"
REVOKED = "revoked"


@dataclass(frozen=True)
class ConsentTerms:
    consent_id: str
    resident_id: str
    need_domains: frozenset[str]  # empty: every need domain
    partner_ids: frozenset[str]  # empty: every CBO of the network
    status: str
    given_at: datetime
    expires_at: datetime | None = None
    recorded_by: str = ""  # the partner that took the consent ("" in replicas kept before it was)

    def in_force(self, at: datetime) -> bool:
        return (
            self.status == ACTIVE
            and self.given_at <= at
            and (self.expires_at is None or at < self.expires_at)
        )

    def covers(self, need_domain: str, partner_id: str, at: datetime) -> bool:
        return (
            self.in_force(at)
            and (not self.need_domains or need_domain in self.need_domains)
            and (not self.partner_ids or partner_id in self.partner_ids)
        )


def consent_for_share(
    consents: Iterable[ConsentTerms], need_domain: str, partner_id: str, at: datetime
) -> ConsentTerms | None:
    """The consent a share rests on: the most recently given one that covers it, or None."""
    covering = [c for c in consents if c.covers(need_domain, partner_id, at)]
    return max(covering, key=lambda c: c.given_at) if covering else None


def relied_on_by(consents: Iterable[ConsentTerms], disclosers: Collection[str]) -> list[ConsentTerms]:
    """The consents a disclosure by one of ``disclosers`` may rest on: those a discloser took itself
    (the discloser names the partner that took the consent, or the ACH admin acting for the
    resident). A consent another partner took authorizes that partner's disclosures only: recording
    a consent in a resident's name never unlocks what someone else supplied."""
    return [c for c in consents if not c.recorded_by or c.recorded_by in disclosers]
