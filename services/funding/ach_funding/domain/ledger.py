"""The ledger's rules, as TigerBeetle and Formance keep theirs, in integer cents.

A transaction is a set of entries (an account, a side, an amount) whose debits equal its credits in
each currency; it is posted at once or pending (a reservation, resolved once: posted in full or in
part, voided, or expired). Nothing is changed after it is written: a correction is a new, reversing
transaction. Every account keeps four running totals (posted and pending, on each side), from which
its balance and its room follow; an account may not go below zero on its normal side unless it says
so. The journal is a hash chain: each transaction's hash covers the one before, so an edited,
inserted or removed row shows.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from ach_platform.errors import FailedPrecondition, FieldViolation, InvalidArgument

CURRENCIES = frozenset({"USD"})  # the network keeps its books in dollars
MAX_ENTRIES = 64
MAX_CENTS = 10**15  # ten trillion dollars: far above any fund, far below a 64-bit overflow
MAX_ID = 200
MAX_MEMO = 500
MAX_METADATA = 20
GENESIS = "0" * 64


class Side(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"


class AccountKind(StrEnum):
    """The chart of accounts (FASB ASU 2016-14 for the net assets)."""

    CASH = "cash"  # the fund's bank account(s)
    RECEIVABLE = "receivable"  # owed to the fund: pledges, dues, fees, invoices
    PAYABLE = "payable"  # owed by the fund: to a CBO for its outcomes, grants, reimbursements
    FUND_STREAM = "fund-stream"  # net assets with donor restrictions, one account per stream
    NET_ASSETS = "net-assets"  # net assets without donor restrictions
    REVENUE = "revenue"  # unrestricted income: dues, fees, shared savings
    EXPENSE = "expense"  # outcome payments, grants, reimbursements, by purpose
    COST_POOL = "cost-pool"  # shared infrastructure costs, before they are charged to partners


NORMAL_SIDE: Mapping[AccountKind, Side] = {
    AccountKind.CASH: Side.DEBIT,
    AccountKind.RECEIVABLE: Side.DEBIT,
    AccountKind.EXPENSE: Side.DEBIT,
    AccountKind.COST_POOL: Side.DEBIT,
    AccountKind.PAYABLE: Side.CREDIT,
    AccountKind.FUND_STREAM: Side.CREDIT,
    AccountKind.NET_ASSETS: Side.CREDIT,
    AccountKind.REVENUE: Side.CREDIT,
}


class Phase(StrEnum):
    POSTED = "posted"
    PENDING = "pending"


class Resolution(StrEnum):
    """How a pending transaction ended (each is itself a transaction, written once)."""

    POST = "post"
    VOID = "void"
    EXPIRE = "expire"


@dataclass(frozen=True)
class Entry:
    account_id: str
    side: Side
    cents: int
    currency: str = "USD"


@dataclass(frozen=True)
class Totals:
    """An account's running totals, as TigerBeetle keeps them."""

    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    def plus(self, entry: Entry, phase: Phase, sign: int = 1) -> Totals:
        name = f"{entry.side.value}s_{phase.value}"
        return replace(self, **{name: getattr(self, name) + sign * entry.cents})


@dataclass(frozen=True)
class AccountView:
    account_id: str
    kind: AccountKind
    currency: str
    overdraft_allowed: bool
    totals: Totals

    @property
    def balance(self) -> int:
        """Posted balance on the account's normal side."""
        t = self.totals
        if NORMAL_SIDE[self.kind] is Side.DEBIT:
            return t.debits_posted - t.credits_posted
        return t.credits_posted - t.debits_posted

    @property
    def available(self) -> int:
        """What may still leave it: the posted balance less what pending transactions reserve."""
        t = self.totals
        if NORMAL_SIDE[self.kind] is Side.DEBIT:
            return t.debits_posted - t.credits_posted - t.credits_pending
        return t.credits_posted - t.debits_posted - t.debits_pending


@dataclass(frozen=True)
class TransactionDraft:
    """What a writer asks for. ``metadata`` says what the money is (a referral, a stream, a need
    domain): short codes and ids, never a resident's identity."""

    idempotency_key: str
    kind: str
    entries: tuple[Entry, ...]
    phase: Phase = Phase.POSTED
    memo: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    expires_at: datetime | None = None  # pending only: the deadline after which it expires

    def digest(self) -> str:
        """The body's fingerprint: the same key with another body is a conflict."""
        body = {
            "kind": self.kind,
            "phase": self.phase.value,
            "entries": [[e.account_id, e.side.value, e.cents, e.currency] for e in self.entries],
            "memo": self.memo,
            "metadata": dict(sorted(self.metadata.items())),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }
        return hashlib.sha256(canonical(body)).hexdigest()


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def validate(draft: TransactionDraft) -> None:
    """The rules a transaction meets on its own, every problem at once (INVALID_ARGUMENT)."""
    problems: list[FieldViolation] = []

    def need(ok: bool, name: str, text: str) -> None:
        if not ok:
            problems.append(FieldViolation(name, text))

    need(
        0 < len(draft.idempotency_key) <= MAX_ID,
        "idempotency_key",
        f"is required, at most {MAX_ID} characters",
    )
    need(0 < len(draft.kind) <= 50, "kind", "is required, at most 50 characters")
    need(len(draft.memo) <= MAX_MEMO, "memo", f"is longer than {MAX_MEMO} characters")
    need(len(draft.metadata) <= MAX_METADATA, "metadata", f"has more than {MAX_METADATA} keys")
    for k, v in draft.metadata.items():
        need(0 < len(k) <= 50 and len(v) <= MAX_ID, f"metadata[{k[:50]}]", "key or value too long")
    need(2 <= len(draft.entries) <= MAX_ENTRIES, "entries", f"a transaction has 2 to {MAX_ENTRIES} entries")
    need(
        draft.expires_at is None or draft.phase is Phase.PENDING,
        "expires_at",
        "only a pending transaction expires",
    )
    for i, e in enumerate(draft.entries[:MAX_ENTRIES]):
        need(
            0 < len(e.account_id) <= MAX_ID, f"entries[{i}].account_id", "is required, at most 200 characters"
        )
        need(
            isinstance(e.cents, int) and 0 < e.cents <= MAX_CENTS,
            f"entries[{i}].amount",
            "must be a positive whole number of cents",
        )
        need(e.currency in CURRENCIES, f"entries[{i}].amount.currency", "is not a currency of the ledger")
    if not problems:
        for currency, (debits, credits) in sides_by_currency(draft.entries).items():
            need(
                debits == credits,
                "entries",
                f"unbalanced: {debits} cents debited, {credits} credited in {currency}",
            )
    if problems:
        raise InvalidArgument(problems)


def sides_by_currency(entries: Iterable[Entry]) -> dict[str, tuple[int, int]]:
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e in entries:
        sums[e.currency][0 if e.side is Side.DEBIT else 1] += e.cents
    return {c: (d, k) for c, (d, k) in sums.items()}


def apply(
    accounts: Mapping[str, AccountView], entries: Sequence[Entry], phase: Phase, sign: int = 1
) -> dict[str, AccountView]:
    """The accounts after the entries, refusing what breaks a rule of an account (FAILED_PRECONDITION):
    an unknown account, a currency other than the account's, or an overdraft."""
    after = dict(accounts)
    for i, e in enumerate(entries):
        account = after.get(e.account_id)
        if account is None:
            raise FailedPrecondition(
                f"entries[{i}].account_id: no account {e.account_id}",
                violation_type="ACCOUNT",
                subject=f"entries[{i}]",
            )
        if e.currency != account.currency:
            raise FailedPrecondition(
                f"entries[{i}].amount.currency: {e.currency} on an account kept in {account.currency}",
                violation_type="CURRENCY",
                subject=f"entries[{i}]",
            )
        after[e.account_id] = replace(account, totals=account.totals.plus(e, phase, sign))
    for account_id in dict.fromkeys(e.account_id for e in entries):
        account = after[account_id]
        if not account.overdraft_allowed and account.available < 0:
            raise FailedPrecondition(
                f"overdraft: account {account_id} would be {-account.available} cents below zero",
                violation_type="OVERDRAFT",
                subject=account_id,
            )
    return after


def resolution_entries(pending: Sequence[Entry], asked: Sequence[Entry]) -> tuple[Entry, ...]:
    """The entries a post of a pending transaction writes: all of them (``asked`` empty), or a part
    (each asked entry at most the pending one on the same account and side, and balanced)."""
    if not asked:
        return tuple(pending)
    held: dict[tuple[str, Side, str], int] = defaultdict(int)
    for e in pending:
        held[(e.account_id, e.side, e.currency)] += e.cents
    for i, e in enumerate(asked):
        key = (e.account_id, e.side, e.currency)
        if key not in held:
            raise InvalidArgument.of(
                f"entries[{i}]", "posts an account and side the pending transaction does not hold"
            )
        if not 0 < e.cents <= held[key]:
            raise InvalidArgument.of(
                f"entries[{i}].amount", "must be positive and at most the pending amount"
            )
        held[key] -= e.cents
    for currency, (debits, credits) in sides_by_currency(asked).items():
        if debits != credits:
            raise InvalidArgument.of(
                "entries", f"unbalanced: {debits} cents debited, {credits} credited in {currency}"
            )
    return tuple(asked)


@dataclass(frozen=True)
class JournalRow:
    """What the hash chain covers of one transaction."""

    sequence: int
    transaction_id: str
    idempotency_key: str
    kind: str
    phase: str
    entries: tuple[tuple[str, str, int, str], ...]
    resolves: str  # the pending transaction a post, void or expiry resolves ("" otherwise)
    resolution: str
    metadata: Mapping[str, str]
    memo: str
    created_at: str  # ISO 8601, UTC
    expires_at: str

    def chained_hash(self, previous: str) -> str:
        body = canonical(
            [
                previous,
                self.sequence,
                self.transaction_id,
                self.idempotency_key,
                self.kind,
                self.phase,
                [list(e) for e in self.entries],
                self.resolves,
                self.resolution,
                dict(sorted(self.metadata.items())),
                self.memo,
                self.created_at,
                self.expires_at,
            ]
        )
        return hashlib.sha256(body).hexdigest()


def verify_chain_step(
    row: JournalRow, stored_previous: str, stored: str, previous: str, expected: int
) -> str:
    """What is wrong with a row of the journal read in sequence order after ``previous`` (the hash
    of the row before, GENESIS for the first), or "" when it follows."""
    if row.sequence != expected:
        return f"sequence {expected} is missing"
    if stored_previous != previous:
        return "does not follow the transaction before it"
    if row.chained_hash(previous) != stored:
        return "its content does not match its hash"
    return ""
