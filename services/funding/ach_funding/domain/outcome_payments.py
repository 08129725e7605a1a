"""What a referral earns its CBO, and when (issue: outcome payments from the referral loop).

The payment is promised (a pending transaction reserving a stream's money) when the target accepts
the referral, posted when the referral closes with the need met, and voided on any other end. Each
referral's changes carry a sequence: a change older than the last one applied is stale (events
arrive late, twice, or out of order), and once paid a referral is never paid again. When no stream
has room, the earned payment waits as owed and is paid when funds arrive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum


class PaymentStatus(StrEnum):
    RESERVED = "reserved"  # accepted: a pending transaction holds the money
    UNRESERVED = "unreserved"  # accepted, but no stream had room to hold it
    OWED = "owed"  # need met, no stream had room: paid when funds arrive
    PAID = "paid"
    VOIDED = "voided"  # ended otherwise: nothing is owed
    NOT_PAYABLE = "not-payable"  # no rate for the need domain, or an internal referral no stream pays


class Step(StrEnum):
    RESERVE = "reserve"
    POST = "post"  # post the reservation
    PAY = "pay"  # pay at once (nothing reserved), or owe when there is no room
    VOID = "void"  # release the reservation (if any); nothing is owed
    NOTHING = "nothing"


class Change(StrEnum):
    ACCEPTED = "accepted"
    NEED_MET = "need-met"
    ENDED = "ended"  # rejected, cancelled, failed, entered in error, or completed without the need met
    OTHER = "other"  # in progress, on hold, requested again after a re-route: no money moves


@dataclass(frozen=True)
class PaymentState:
    status: PaymentStatus
    sequence: int  # the last change applied


def next_step(state: PaymentState | None, change: Change, sequence: int) -> Step:
    if state is not None and (sequence <= state.sequence or state.status is PaymentStatus.PAID):
        return Step.NOTHING
    current = state.status if state else None
    if change is Change.ACCEPTED:
        return (
            Step.RESERVE
            if current in (None, PaymentStatus.VOIDED, PaymentStatus.NOT_PAYABLE)
            else Step.NOTHING
        )
    if change is Change.NEED_MET:
        return Step.POST if current is PaymentStatus.RESERVED else Step.PAY
    if change is Change.ENDED:
        return Step.NOTHING if current in (None, PaymentStatus.VOIDED) else Step.VOID
    return Step.NOTHING


@dataclass(frozen=True)
class Rate:
    need_domain: str
    cents: int
    starts: date
    ends: date | None = None  # open-ended


def rate_for(rates: Sequence[Rate], need_domain: str, on: date) -> int:
    """The rate for the need domain in force on the day (the latest start wins), 0 when none is."""
    in_force = [
        r
        for r in rates
        if r.need_domain == need_domain and r.starts <= on and (r.ends is None or on <= r.ends)
    ]
    return max(in_force, key=lambda r: r.starts).cents if in_force else 0
