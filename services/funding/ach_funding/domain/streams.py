"""Braided fund streams: what each stream's money may pay for, which streams a cost is charged to,
and where each cent of a stream came from.

Braiding (CACHI's Wellness Fund guidance; 2 CFR 200.405): every cost is allocated to a stream whose
restrictions allow it, and a stream's shortfall is never covered by shifting the cost to another
award that does not allow it. The allocation rule is the one funders ask for most: **the stream that
expires first pays first** (then the lower stream id), each stream paying at most its cost share
of any one cost, so restricted money is used before it lapses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum


class CostType(StrEnum):
    OUTCOME_PAYMENT = "outcome-payment"  # a CBO paid for a referral closed with the need met
    GRANT = "grant"
    REIMBURSEMENT = "reimbursement"
    INFRASTRUCTURE = "infrastructure"  # the platform and backbone staff, shared by the partners
    RAPID_RELEASE = "rapid-release"  # emergency money released on one approval


@dataclass(frozen=True)
class FundStream:
    stream_id: str
    name_en: str
    name_es: str
    funder_partner_id: str
    starts: date
    ends: date
    cost_types: frozenset[CostType]
    need_domains: frozenset[str] = frozenset()  # empty: any need domain
    geographies: frozenset[str] = frozenset()  # ZIP codes or county FIPS codes; empty: anywhere
    share_percent: int = 100  # at most this share of any one cost (the rest is the match)
    pays_internal_referrals: bool = False
    reporting: str = ""  # the funder's reporting duty, as agreed

    @property
    def account_id(self) -> str:
        return stream_account(self.stream_id)


def stream_account(stream_id: str) -> str:
    return f"stream:{stream_id}"


@dataclass(frozen=True)
class Cost:
    """What is to be paid, as far as restrictions are concerned."""

    cost_type: CostType
    cents: int
    on: date
    need_domain: str = ""
    geography: str = ""
    internal: bool = False  # a referral the partner sent to its own organization


def refusal(stream: FundStream, cost: Cost) -> str | None:
    """Why the stream may not pay the cost, or None when it may."""
    if cost.cost_type not in stream.cost_types:
        return f"{stream.stream_id} does not pay {cost.cost_type.value} costs"
    if not stream.starts <= cost.on <= stream.ends:
        return f"{stream.stream_id} pays costs from {stream.starts} to {stream.ends}"
    if stream.need_domains and cost.need_domain not in stream.need_domains:
        return f"{stream.stream_id} does not pay for the need domain {cost.need_domain or '(none)'}"
    if stream.geographies and cost.geography not in stream.geographies:
        return f"{stream.stream_id} pays only in its geography"
    if cost.internal and not stream.pays_internal_referrals:
        return f"{stream.stream_id} does not pay for referrals a partner sent to itself"
    return None


def eligible(streams: Iterable[FundStream], cost: Cost) -> list[FundStream]:
    """The streams that may pay the cost, in the order they pay: the one that expires first first."""
    return sorted((s for s in streams if refusal(s, cost) is None), key=lambda s: (s.ends, s.stream_id))


def allocate(
    streams: Iterable[FundStream], room: Mapping[str, int], cost: Cost
) -> list[tuple[str, int]] | None:
    """(stream id, cents) charged for the cost, summing to it exactly, or None when the streams that
    allow it have not enough room between them (the cost waits: it is never charged elsewhere)."""
    left, charged = cost.cents, []
    for stream in eligible(streams, cost):
        cap = cost.cents * stream.share_percent // 100
        take = min(left, cap, max(room.get(stream.stream_id, 0), 0))
        if take > 0:
            charged.append((stream.stream_id, take))
            left -= take
        if left == 0:
            return charged
    return None


@dataclass(frozen=True)
class Inflow:
    """Money into a stream: a contribution (id, cents), in the order it was posted."""

    transaction_id: str
    cents: int


@dataclass(frozen=True)
class Outflow:
    """Money out of a stream (a payment's charge to it), in the order it was posted; a reversal of a
    payment comes back as an inflow."""

    transaction_id: str
    cents: int


@dataclass(frozen=True)
class Lineage:
    contribution_id: str
    payment_id: str
    cents: int


def lineage(inflows: Sequence[Inflow], outflows: Sequence[Outflow]) -> list[Lineage]:
    """Which contribution paid which payment, first in first out (Blnk's fund lineage): each
    outflow's cents are taken from the oldest inflow that still has cents left."""
    out: list[Lineage] = []
    sources = [i.transaction_id for i in inflows if i.cents > 0]
    left = [i.cents for i in inflows if i.cents > 0]
    head = 0
    for o in outflows:
        need = o.cents
        while need > 0 and head < len(left):
            take = min(need, left[head])
            out.append(Lineage(sources[head], o.transaction_id, take))
            left[head] -= take
            need -= take
            if left[head] == 0:
                head += 1
        if need > 0:  # spent beyond what came in: only on a stream that allows an overdraft
            out.append(Lineage("", o.transaction_id, need))
    return out
