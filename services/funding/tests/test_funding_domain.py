"""Ledger rules, without I/O."""

from __future__ import annotations

import pytest
from ach_funding.domain import (
    OUTCOME_PAYMENTS_ACCOUNT,
    LedgerError,
    TransferDraft,
    checked,
    payable_account,
    transfer_for_completed_referral,
)


def test_completed_referral_pays_the_target_in_cents() -> None:
    t = transfer_for_completed_referral("evt-1", "ref-1", "cbo-1", "need-met")
    assert t is not None
    assert (t.debit_account_id, t.credit_account_id, t.amount_cents) == (
        OUTCOME_PAYMENTS_ACCOUNT,
        payable_account("cbo-1"),
        5000,
    )
    assert isinstance(t.amount_cents, int)


def test_transfer_id_is_derived_from_the_event() -> None:
    a = transfer_for_completed_referral("evt-1", "ref-1", "cbo-1", "need-met")
    b = transfer_for_completed_referral("evt-1", "ref-1", "cbo-1", "need-met")
    c = transfer_for_completed_referral("evt-2", "ref-1", "cbo-1", "need-met")
    assert a and b and c and a.transfer_id == b.transfer_id != c.transfer_id


def test_no_payment_without_outcome_or_target() -> None:
    assert transfer_for_completed_referral("e", "r", "cbo-1", "") is None
    assert transfer_for_completed_referral("e", "r", "", "need-met") is None


@pytest.mark.parametrize(("amount", "debit", "credit"), [(0, "a", "b"), (-5, "a", "b"), (10, "a", "a")])
def test_invalid_transfers_are_refused(amount: int, debit: str, credit: str) -> None:
    with pytest.raises(LedgerError):
        checked(TransferDraft("t", debit, credit, amount, "x"))
