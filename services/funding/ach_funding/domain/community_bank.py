"""The community bank (CCN): the network's shared infrastructure costs — the platform, backbone
staff — charged to the funding partners by agreed shares, in whole cents that add up exactly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Share:
    partner_id: str
    basis_points: int  # of 10,000


def split(cents: int, shares: Sequence[Share]) -> list[tuple[str, int]]:
    """Each partner's part of the cost, by largest remainder (Hamilton): the parts sum to the cost
    exactly, no partner is off its share by a cent or more, and ties go to the larger share, then the
    lower id, so the same cost always splits the same way."""
    total = sum(s.basis_points for s in shares)
    if cents <= 0 or total <= 0:
        return []
    floors = [(s, cents * s.basis_points // total, cents * s.basis_points % total) for s in shares]
    left = cents - sum(f for _, f, _ in floors)
    ranked = sorted(floors, key=lambda x: (-x[2], -x[0].basis_points, x[0].partner_id))
    extra = {s.partner_id for s, _, _ in ranked[:left]}
    return [(s.partner_id, f + (1 if s.partner_id in extra else 0)) for s, f, _ in floors]
