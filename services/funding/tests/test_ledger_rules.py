"""The ledger's rules, without I/O: balance, bounds, overdrafts, two-phase, the hash chain, how
costs are allocated to braided streams and traced back, and the outcome payment's steps."""

from __future__ import annotations

from datetime import date

import pytest
from ach_funding.domain import ledger
from ach_funding.domain.community_bank import Share, split
from ach_funding.domain.ledger import (
    AccountKind,
    AccountView,
    Entry,
    JournalRow,
    Phase,
    Side,
    Totals,
    TransactionDraft,
)
from ach_funding.domain.outcome_payments import (
    Change,
    PaymentState,
    PaymentStatus,
    Rate,
    Step,
    next_step,
    rate_for,
)
from ach_funding.domain.streams import Cost, CostType, FundStream, Inflow, Outflow, allocate, lineage, refusal
from ach_platform.errors import FailedPrecondition, InvalidArgument
from hypothesis import given
from hypothesis import strategies as st

D, C = Side.DEBIT, Side.CREDIT


def draft(*entries: Entry, phase: Phase = Phase.POSTED) -> TransactionDraft:
    return TransactionDraft("k-1", "test", entries, phase)


def fields(exc: InvalidArgument) -> set[str]:
    return {v.field for v in exc.violations}


@pytest.mark.parametrize(
    ("entries", "field"),
    [
        ((Entry("a", D, 100), Entry("b", C, 99)), "entries"),  # unbalanced
        ((Entry("a", D, -100), Entry("b", C, -100)), "entries[0].amount"),  # negative
        ((Entry("a", D, 0), Entry("b", C, 0)), "entries[0].amount"),
        ((Entry("a", D, 100, "EUR"), Entry("b", C, 100, "EUR")), "entries[0].amount.currency"),
        ((Entry("a", D, 100),), "entries"),  # one entry
        ((Entry("", D, 100), Entry("b", C, 100)), "entries[0].account_id"),
        ((Entry("a", D, 10**16), Entry("b", C, 10**16)), "entries[0].amount"),  # beyond any fund
    ],
)
def test_a_malformed_transaction_is_refused_naming_the_field(entries: tuple[Entry, ...], field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        ledger.validate(draft(*entries))
    assert field in fields(caught.value)


def test_a_fractional_cent_is_not_a_whole_number_of_cents() -> None:
    with pytest.raises(InvalidArgument) as caught:
        ledger.validate(draft(Entry("a", D, 10.5), Entry("b", C, 10.5)))  # type: ignore[arg-type]
    assert "entries[0].amount" in fields(caught.value)


def test_balance_is_per_currency_and_many_entries_may_balance_together() -> None:
    ledger.validate(draft(Entry("a", D, 70), Entry("b", D, 30), Entry("c", C, 100)))
    with pytest.raises(InvalidArgument):
        ledger.validate(draft(*[Entry(f"a{i}", D if i % 2 else C, 1) for i in range(66)]))


def account(kind: AccountKind, credits: int = 0, debits: int = 0, overdraft: bool = False) -> AccountView:
    return AccountView("x", kind, "USD", overdraft, Totals(debits_posted=debits, credits_posted=credits))


def test_an_overdraft_is_refused_unless_the_account_allows_it() -> None:
    accounts = {
        "stream": account(AccountKind.FUND_STREAM, credits=100),
        "na": account(AccountKind.NET_ASSETS),
    }
    after = ledger.apply(accounts, [Entry("stream", D, 100), Entry("na", C, 100)], Phase.POSTED)
    assert after["stream"].balance == 0 and after["na"].balance == 100
    with pytest.raises(FailedPrecondition) as caught:
        ledger.apply(accounts, [Entry("stream", D, 101), Entry("na", C, 101)], Phase.POSTED)
    assert caught.value.violation_type == "OVERDRAFT" and caught.value.subject == "stream"
    lenient = {**accounts, "stream": account(AccountKind.FUND_STREAM, credits=100, overdraft=True)}
    assert (
        ledger.apply(lenient, [Entry("stream", D, 101), Entry("na", C, 101)], Phase.POSTED)["stream"].balance
        == -1
    )


def test_a_pending_transaction_reserves_what_it_may_spend() -> None:
    accounts = {
        "stream": account(AccountKind.FUND_STREAM, credits=100),
        "na": account(AccountKind.NET_ASSETS),
    }
    held = ledger.apply(accounts, [Entry("stream", D, 80), Entry("na", C, 80)], Phase.PENDING)
    assert (held["stream"].balance, held["stream"].available) == (100, 20)
    with pytest.raises(FailedPrecondition):
        ledger.apply(held, [Entry("stream", D, 21), Entry("na", C, 21)], Phase.POSTED)


def test_a_currency_other_than_the_accounts_is_refused() -> None:
    accounts = {"a": account(AccountKind.CASH, debits=100), "b": account(AccountKind.REVENUE)}
    with pytest.raises(FailedPrecondition) as caught:
        ledger.apply(accounts, [Entry("a", C, 1, "EUR"), Entry("b", D, 1, "EUR")], Phase.POSTED)
    assert caught.value.violation_type == "CURRENCY"


def test_a_partial_post_is_at_most_what_was_pending_and_balanced() -> None:
    pending = [Entry("s", D, 100), Entry("na", C, 100)]
    assert ledger.resolution_entries(pending, []) == tuple(pending)
    part = [Entry("s", D, 60), Entry("na", C, 60)]
    assert ledger.resolution_entries(pending, part) == tuple(part)
    for asked in (
        [Entry("s", D, 101), Entry("na", C, 101)],
        [Entry("s", D, 60), Entry("na", C, 50)],
        [Entry("other", D, 1), Entry("na", C, 1)],
    ):
        with pytest.raises(InvalidArgument):
            ledger.resolution_entries(pending, asked)


def row(sequence: int, memo: str = "") -> JournalRow:
    return JournalRow(
        sequence,
        f"t{sequence}",
        f"k{sequence}",
        "test",
        "posted",
        (("a", "debit", 5, "USD"), ("b", "credit", 5, "USD")),
        "",
        "",
        {},
        memo,
        "2026-01-01T00:00:00.000000Z",
        "",
    )


def test_the_hash_chain_shows_an_edit_an_insertion_and_a_removal() -> None:
    rows, previous = [], ledger.GENESIS
    for n in range(1, 5):
        h = row(n).chained_hash(previous)
        rows.append((row(n), previous, h))
        previous = h

    def first_break(chain: list[tuple[JournalRow, str, str]]) -> str:
        previous, expected = ledger.GENESIS, 1
        for r, p, h in chain:
            if problem := ledger.verify_chain_step(r, p, h, previous, expected):
                return problem
            previous, expected = h, expected + 1
        return ""

    assert first_break(rows) == ""
    edited = [*rows[:2], (row(3, memo="changed"), rows[2][1], rows[2][2]), rows[3]]
    assert "content" in first_break(edited)
    assert "missing" in first_break([rows[0], rows[2], rows[3]])
    reordered = [rows[0], (rows[2][0], rows[1][1], rows[2][2])]
    assert first_break(reordered)


FOOD = FundStream(
    "food",
    "Food",
    "Comida",
    "f",
    date(2026, 1, 1),
    date(2026, 6, 30),
    frozenset({CostType.OUTCOME_PAYMENT}),
    frozenset({"food-insecurity"}),
    share_percent=80,
)
GENERAL = FundStream(
    "general",
    "General",
    "General",
    "f",
    date(2026, 1, 1),
    date(2027, 12, 31),
    frozenset({CostType.OUTCOME_PAYMENT, CostType.GRANT}),
)
LATER = FundStream(
    "later",
    "Later",
    "Más tarde",
    "f",
    date(2026, 1, 1),
    date(2028, 12, 31),
    frozenset({CostType.OUTCOME_PAYMENT}),
    geographies=frozenset({"95206"}),
)


def test_the_stream_that_expires_first_pays_first_up_to_its_share() -> None:
    cost = Cost(CostType.OUTCOME_PAYMENT, 5000, date(2026, 3, 1), "food-insecurity")
    assert allocate([GENERAL, FOOD], {"food": 10_000, "general": 10_000}, cost) == [
        ("food", 4000),
        ("general", 1000),
    ]
    assert allocate([GENERAL, FOOD], {"food": 10_000, "general": 0}, cost) is None  # the match is missing
    assert allocate([GENERAL, FOOD], {"food": 0, "general": 6000}, cost) == [("general", 5000)]


def test_a_stream_pays_only_what_its_restrictions_allow() -> None:
    on = date(2026, 3, 1)
    assert refusal(FOOD, Cost(CostType.OUTCOME_PAYMENT, 1, on, "housing-instability"))
    assert refusal(FOOD, Cost(CostType.GRANT, 1, on, "food-insecurity"))
    assert refusal(FOOD, Cost(CostType.OUTCOME_PAYMENT, 1, date(2026, 7, 1), "food-insecurity"))
    assert refusal(GENERAL, Cost(CostType.OUTCOME_PAYMENT, 1, on, "stress", internal=True))
    assert refusal(LATER, Cost(CostType.OUTCOME_PAYMENT, 1, on, "stress", geography="95210"))
    assert refusal(LATER, Cost(CostType.OUTCOME_PAYMENT, 1, on, "stress", geography="95206")) is None
    housing = Cost(CostType.OUTCOME_PAYMENT, 100, on, "housing-instability")
    assert allocate([FOOD], {"food": 10_000}, housing) is None  # never shifted to a stream that may not


@given(
    st.lists(st.integers(1, 10_000), max_size=8),
    st.lists(st.integers(1, 10_000), max_size=8),
)
def test_lineage_accounts_for_every_cent_in_order(ins: list[int], outs: list[int]) -> None:
    links = lineage(
        [Inflow(f"c{i}", c) for i, c in enumerate(ins)], [Outflow(f"p{i}", c) for i, c in enumerate(outs)]
    )
    for i, cents in enumerate(outs):
        assert sum(link.cents for link in links if link.payment_id == f"p{i}") == cents
    for i, cents in enumerate(ins):
        assert sum(link.cents for link in links if link.contribution_id == f"c{i}") <= cents
    uncovered = sum(link.cents for link in links if not link.contribution_id)
    assert uncovered == max(0, sum(outs) - sum(ins))
    order = [int(link.contribution_id[1:]) for link in links if link.contribution_id]
    assert order == sorted(order)  # first in, first out


@pytest.mark.parametrize(
    ("state", "change", "sequence", "step"),
    [
        (None, Change.ACCEPTED, 2, Step.RESERVE),
        (None, Change.NEED_MET, 5, Step.PAY),  # the acceptance has not arrived (yet)
        (None, Change.ENDED, 4, Step.NOTHING),
        (PaymentState(PaymentStatus.RESERVED, 2), Change.NEED_MET, 5, Step.POST),
        (PaymentState(PaymentStatus.RESERVED, 2), Change.ENDED, 3, Step.VOID),
        (PaymentState(PaymentStatus.UNRESERVED, 2), Change.NEED_MET, 5, Step.PAY),
        (PaymentState(PaymentStatus.PAID, 5), Change.ACCEPTED, 9, Step.NOTHING),  # paid once, ever
        (PaymentState(PaymentStatus.PAID, 5), Change.ACCEPTED, 2, Step.NOTHING),  # late acceptance
        (PaymentState(PaymentStatus.RESERVED, 5), Change.NEED_MET, 5, Step.NOTHING),  # duplicate
        (PaymentState(PaymentStatus.VOIDED, 3), Change.ACCEPTED, 6, Step.RESERVE),  # re-routed, accepted
        (PaymentState(PaymentStatus.OWED, 5), Change.ENDED, 6, Step.VOID),  # entered in error
        (PaymentState(PaymentStatus.RESERVED, 2), Change.OTHER, 3, Step.NOTHING),
    ],
)
def test_the_outcome_payments_steps(
    state: PaymentState | None, change: Change, sequence: int, step: Step
) -> None:
    assert next_step(state, change, sequence) is step


def test_the_rate_in_force_on_the_day() -> None:
    rates = [
        Rate("food-insecurity", 5000, date(2026, 1, 1)),
        Rate("food-insecurity", 5500, date(2026, 7, 1)),
        Rate("stress", 100, date(2026, 1, 1), date(2026, 3, 31)),
    ]
    assert rate_for(rates, "food-insecurity", date(2026, 6, 30)) == 5000
    assert rate_for(rates, "food-insecurity", date(2026, 7, 1)) == 5500
    assert rate_for(rates, "stress", date(2026, 4, 1)) == 0
    assert rate_for(rates, "housing-instability", date(2026, 4, 1)) == 0


@given(
    st.integers(1, 10**9),
    st.lists(st.integers(1, 10_000), min_size=1, max_size=12),
)
def test_shared_costs_split_to_the_cent_by_share(cents: int, points: list[int]) -> None:
    shares = [Share(f"p{i}", b) for i, b in enumerate(points)]
    parts = split(cents, shares)
    assert sum(c for _, c in parts) == cents
    total = sum(points)
    for (_, c), b in zip(parts, points, strict=True):
        assert abs(c - cents * b / total) < 1
    assert split(cents, shares) == parts  # the same every time
