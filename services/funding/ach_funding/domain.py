"""Ledger rules, pure: double entry in integer cents, and what a closed referral earns.

Invariants (TigerBeetle / Formance): a transfer debits one account and credits another on the same
ledger; amounts are positive integer cents; transfers are immutable and idempotent on their id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

LEDGER_CURRENCY = "USD"
OUTCOME_PAYMENTS_ACCOUNT = "wellness-fund:outcome-payments"

# Cents a CBO earns when it completes a referral, by outcome. The network sets these; a referral
# that ended with the resident unreachable still took outreach work, so it earns a smaller amount.
OUTCOME_RATES_CENTS: dict[str, int] = {
    "need-met": 5000,
    "need-partly-met": 3500,
    "need-not-met": 1500,
    "resident-declined": 1000,
    "unable-to-contact": 1000,
}


class LedgerError(ValueError):
    pass


@dataclass(frozen=True)
class TransferDraft:
    transfer_id: str
    debit_account_id: str
    credit_account_id: str
    amount_cents: int
    reason: str


def payable_account(partner_id: str) -> str:
    return f"partner:{partner_id}:payable"


def transfer_for_completed_referral(
    source_event_id: str,
    referral_id: str,
    target_partner_id: str,
    outcome: str,
    internal: bool = False,
    pay_internal: bool = False,
) -> TransferDraft | None:
    """The payment a completed referral earns its CBO, or None when it earns nothing. A referral a
    partner sent to its own organization earns nothing unless the fund's policy pays for them: else
    a CBO holding both roles could refer to itself and pay itself from the Wellness Fund."""
    amount = OUTCOME_RATES_CENTS.get(outcome, 0)
    if amount == 0 or not target_partner_id or (internal and not pay_internal):
        return None
    return checked(
        TransferDraft(
            # Derived from the event: a redelivered event names the same transfer.
            transfer_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"ach:transfer:{source_event_id}")),
            debit_account_id=OUTCOME_PAYMENTS_ACCOUNT,
            credit_account_id=payable_account(target_partner_id),
            amount_cents=amount,
            reason=f"referral {referral_id} completed: {outcome}",
        )
    )


def checked(draft: TransferDraft) -> TransferDraft:
    if draft.amount_cents <= 0:
        raise LedgerError("a transfer moves a positive number of cents")
    if draft.debit_account_id == draft.credit_account_id:
        raise LedgerError("a transfer debits one account and credits another")
    return draft
