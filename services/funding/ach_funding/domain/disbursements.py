"""Disbursements beyond the automatic outcome payments — grants to CBOs, reimbursements, and rapid
releases from the emergency stream — as Open Collective pays expenses: requested, approved by fund
managers (a configurable number, never the requester), then paid. A rapid release has a
pre-approved ceiling and needs one approval; it is reported on its own."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from ach_platform.errors import FailedPrecondition, InvalidArgument

from ach_funding.domain.streams import CostType

DISBURSED = frozenset({CostType.GRANT, CostType.REIMBURSEMENT, CostType.RAPID_RELEASE})


class RequestStatus(StrEnum):
    REQUESTED = "requested"  # the money is reserved; approvals are being gathered
    APPROVED = "approved"  # posted: owed to the payee
    REJECTED = "rejected"  # the reservation is released


@dataclass(frozen=True)
class ApprovalPolicy:
    approvals_required: int = 2
    rapid_release_ceiling_cents: int = 250_000  # $2,500 a release

    def approvals_needed(self, cost_type: CostType) -> int:
        return 1 if cost_type is CostType.RAPID_RELEASE else self.approvals_required


def check_request(policy: ApprovalPolicy, cost_type: str, cents: int) -> CostType:
    if cost_type not in {c.value for c in DISBURSED}:
        raise InvalidArgument.of("cost_type", "must be grant, reimbursement or rapid-release")
    kind = CostType(cost_type)
    if kind is CostType.RAPID_RELEASE and cents > policy.rapid_release_ceiling_cents:
        raise FailedPrecondition(
            f"amount: a rapid release is at most {policy.rapid_release_ceiling_cents} cents; "
            "ask for a grant, with its approvals",
            violation_type="CEILING",
            subject="amount",
        )
    return kind


def check_decision(
    status: RequestStatus, requester: str, decider: str, approved_by: Collection[str], approve: bool
) -> None:
    """A decision may be taken on a request still open, an approval never by its requester, and
    each fund manager approves once."""
    if status is not RequestStatus.REQUESTED:
        raise FailedPrecondition(
            f"the request is already {status.value}", violation_type="DECIDED", subject="request_id"
        )
    if approve and decider == requester:
        raise FailedPrecondition(
            "a request is approved by another fund manager than its requester",
            violation_type="SELF_APPROVAL",
            subject="request_id",
        )
    if approve and decider in approved_by:
        raise FailedPrecondition(
            "this fund manager has approved it already", violation_type="APPROVED", subject="request_id"
        )
