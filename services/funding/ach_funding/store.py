"""The ledger's tables: accounts with their running totals, transactions (the hash-chained
journal) and their entries, the chain's head, and each referral's outcome payment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import BigInteger, Column, Index, Text, func
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_funding.domain.ledger import AccountKind, AccountView, Totals


class TransactionRow(Protocol):
    """A journal transaction as read or about to be written (a table row, or a plain record the
    batched writer builds without the ORM's cost)."""

    id: str
    sequence: int
    idempotency_key: str
    body_digest: str
    kind: str
    phase: str
    resolves_id: str | None
    resolution: str | None
    memo: str
    metadata_json: str
    expires_at: datetime | None
    created_at: datetime
    previous_hash: str
    hash: str


class EntryRow(Protocol):
    transaction_id: str
    account_id: str
    side: str
    cents: int
    currency: str
    phase: str
    created_at: datetime


@dataclass(slots=True)
class NewTransaction:
    id: str
    sequence: int
    idempotency_key: str
    body_digest: str
    kind: str
    phase: str
    memo: str
    metadata_json: str
    expires_at: datetime | None
    created_at: datetime
    previous_hash: str
    hash: str = ""
    resolves_id: str | None = None
    resolution: str | None = None


@dataclass(slots=True)
class NewEntry:
    transaction_id: str
    account_id: str
    side: str
    cents: int
    currency: str
    phase: str
    created_at: datetime


class LedgerAccount(SQLModel, table=True):
    __tablename__ = "ledger_account"

    id: str = Field(primary_key=True, max_length=200)
    kind: str = Field(max_length=30)
    currency: str = Field(max_length=3)
    name: str = Field(default="", max_length=200)
    partner_id: str | None = Field(default=None, max_length=100, index=True)
    overdraft_allowed: bool = False
    debits_posted: int = Field(default=0, sa_type=BigInteger)
    credits_posted: int = Field(default=0, sa_type=BigInteger)
    debits_pending: int = Field(default=0, sa_type=BigInteger)
    credits_pending: int = Field(default=0, sa_type=BigInteger)
    created_at: datetime


class LedgerTransaction(SQLModel, table=True):
    __tablename__ = "ledger_transaction"
    __table_args__ = (Index("ix_ledger_transaction_pending_expiry", "phase", "expires_at"),)

    id: str = Field(primary_key=True, max_length=36)
    sequence: int = Field(sa_type=BigInteger, unique=True)
    idempotency_key: str = Field(max_length=200, unique=True)
    body_digest: str = Field(max_length=64)
    kind: str = Field(max_length=50, index=True)
    phase: str = Field(max_length=10)
    # A post, void or expiry names the pending transaction it resolves; unique: it resolves once.
    resolves_id: str | None = Field(default=None, max_length=36, unique=True)
    resolution: str | None = Field(default=None, max_length=10)
    memo: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    metadata_json: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    expires_at: datetime | None = None
    created_at: datetime = Field(index=True)
    previous_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class LedgerEntry(SQLModel, table=True):
    __tablename__ = "ledger_entry"
    __table_args__ = (Index("ix_ledger_entry_account_time", "account_id", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    transaction_id: str = Field(foreign_key="ledger_transaction.id", index=True, max_length=36)
    account_id: str = Field(foreign_key="ledger_account.id", max_length=200)
    side: str = Field(max_length=6)
    cents: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    phase: str = Field(max_length=10)
    created_at: datetime


class ChainHead(SQLModel, table=True):
    """One row: the journal's last sequence and hash. Writers lock it last, briefly."""

    __tablename__ = "ledger_chain_head"

    id: int = Field(default=1, primary_key=True)
    sequence: int = Field(default=0, sa_type=BigInteger)
    hash: str = Field(max_length=64)


class OutcomePayment(SQLModel, table=True):
    """A referral's payment to its target CBO: what it earns, and where it is."""

    __tablename__ = "outcome_payment"

    referral_id: str = Field(primary_key=True, max_length=100)
    status: str = Field(max_length=20, index=True)
    sequence: int = Field(sa_type=BigInteger)
    target_partner_id: str = Field(max_length=100, index=True)
    need_domain: str = Field(max_length=100)
    cents: int = Field(default=0, sa_type=BigInteger)
    internal: bool = False
    pending_transaction_id: str | None = Field(default=None, max_length=36)
    paid_transaction_id: str | None = Field(default=None, max_length=36)
    reason: str = Field(default="", max_length=300)
    earned_at: datetime | None = None
    updated_at: datetime


class DisbursementRequest(SQLModel, table=True):
    """A grant, reimbursement or rapid release asked for: reserved, then approved or rejected."""

    __tablename__ = "disbursement_request"

    id: str = Field(primary_key=True, max_length=36)
    idempotency_key: str = Field(max_length=200, unique=True)
    body_digest: str = Field(max_length=64)
    requested_by: str = Field(max_length=100)
    payee_partner_id: str = Field(max_length=100, index=True)
    cost_type: str = Field(max_length=20, index=True)
    need_domain: str = Field(default="", max_length=100)
    geography: str = Field(default="", max_length=20)
    cents: int = Field(sa_type=BigInteger)
    purpose: str = Field(default="", max_length=500)
    status: str = Field(max_length=20, index=True)
    approvals_needed: int
    pending_transaction_id: str = Field(max_length=36)
    posted_transaction_id: str | None = Field(default=None, max_length=36)
    created_at: datetime
    decided_at: datetime | None = None


class DisbursementApproval(SQLModel, table=True):
    """One fund manager's approval of a request: once each (the key)."""

    __tablename__ = "disbursement_approval"

    request_id: str = Field(primary_key=True, foreign_key="disbursement_request.id", max_length=36)
    approver_partner_id: str = Field(primary_key=True, max_length=100)
    approved_at: datetime


class AccountRow(Protocol):
    """An account's row: an ORM object, or a row read with a Core statement."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def overdraft_allowed(self) -> bool: ...
    @property
    def debits_posted(self) -> int: ...
    @property
    def credits_posted(self) -> int: ...
    @property
    def debits_pending(self) -> int: ...
    @property
    def credits_pending(self) -> int: ...


def values_of(record: NewTransaction | NewEntry) -> dict[str, Any]:
    """A new journal row's columns."""
    return {name: getattr(record, name) for name in record.__slots__}


def view(account: AccountRow) -> AccountView:
    """The account as the ledger's rules see it."""
    return AccountView(
        account.id,
        AccountKind(account.kind),
        account.currency,
        account.overdraft_allowed,
        Totals(
            account.debits_posted, account.credits_posted, account.debits_pending, account.credits_pending
        ),
    )


async def accounts_for_update(session: AsyncSession, ids: Sequence[str]) -> dict[str, LedgerAccount]:
    """The accounts, locked in id order (two writers over the same accounts queue, never deadlock)."""
    query = (
        select(LedgerAccount)
        .where(col(LedgerAccount.id).in_(sorted(set(ids))))
        .order_by(col(LedgerAccount.id))
    )
    rows = (await session.exec(query.with_for_update())).all()
    return {a.id: a for a in rows}


async def chain_head_for_update(session: AsyncSession) -> ChainHead:
    head = (await session.exec(select(ChainHead).where(ChainHead.id == 1).with_for_update())).one()
    return head


async def by_key(session: AsyncSession, key: str) -> LedgerTransaction | None:
    return (
        await session.exec(select(LedgerTransaction).where(LedgerTransaction.idempotency_key == key))
    ).first()


async def resolution_of(session: AsyncSession, pending_id: str) -> LedgerTransaction | None:
    return (
        await session.exec(select(LedgerTransaction).where(LedgerTransaction.resolves_id == pending_id))
    ).first()


async def entries_of(session: AsyncSession, transaction_ids: Sequence[str]) -> list[LedgerEntry]:
    if not transaction_ids:
        return []
    query = (
        select(LedgerEntry)
        .where(col(LedgerEntry.transaction_id).in_(transaction_ids))
        .order_by(col(LedgerEntry.id))
    )
    return list((await session.exec(query)).all())


async def posted_totals_as_of(
    session: AsyncSession, account_id: str, as_of: datetime, inclusive: bool = True
) -> tuple[int, int]:
    """(debits, credits) posted to the account up to the moment (or before it), in cents."""
    before = col(LedgerEntry.created_at) <= as_of if inclusive else col(LedgerEntry.created_at) < as_of
    query = (
        select(LedgerEntry.side, func.coalesce(func.sum(LedgerEntry.cents), 0))
        .where(LedgerEntry.account_id == account_id, LedgerEntry.phase == "posted", before)
        .group_by(col(LedgerEntry.side))
    )
    sums = {side: int(total) for side, total in (await session.exec(query)).all()}
    return sums.get("debit", 0), sums.get("credit", 0)


async def entries_between(
    session: AsyncSession, account_id: str, start: datetime, end: datetime, limit: int
) -> list[tuple[LedgerEntry, str]]:
    """The account's posted entries in [start, end), with their transaction's kind, in journal order."""
    query = (
        select(LedgerEntry, LedgerTransaction.kind)
        .join(LedgerTransaction, col(LedgerTransaction.id) == col(LedgerEntry.transaction_id))
        .where(
            LedgerEntry.account_id == account_id,
            LedgerEntry.phase == "posted",
            col(LedgerEntry.created_at) >= start,
            col(LedgerEntry.created_at) < end,
        )
        .order_by(col(LedgerTransaction.sequence), col(LedgerEntry.id))
        .limit(limit)
    )
    return [(e, k) for e, k in (await session.exec(query)).all()]


async def journal(session: AsyncSession, after_sequence: int, limit: int) -> list[LedgerTransaction]:
    query = (
        select(LedgerTransaction)
        .where(LedgerTransaction.sequence > after_sequence)
        .order_by(col(LedgerTransaction.sequence))
        .limit(limit)
    )
    return list((await session.exec(query)).all())


async def transactions_of(session: AsyncSession, account_id: str, limit: int) -> list[LedgerTransaction]:
    query = select(LedgerTransaction).order_by(col(LedgerTransaction.sequence).desc()).limit(limit)
    if account_id:
        ids = select(LedgerEntry.transaction_id).where(LedgerEntry.account_id == account_id)
        query = query.where(col(LedgerTransaction.id).in_(ids))
    return list((await session.exec(query)).all())


async def pending_due(session: AsyncSession, now: datetime, limit: int) -> list[LedgerTransaction]:
    """Pending transactions past their deadline and not yet resolved."""
    resolved = select(LedgerTransaction.resolves_id).where(col(LedgerTransaction.resolves_id).is_not(None))
    query = (
        select(LedgerTransaction)
        .where(
            LedgerTransaction.phase == "pending",
            col(LedgerTransaction.expires_at).is_not(None),
            col(LedgerTransaction.expires_at) <= now,
            col(LedgerTransaction.id).not_in(resolved),
        )
        .order_by(col(LedgerTransaction.expires_at))
        .limit(limit)
    )
    return list((await session.exec(query)).all())


async def payments_waiting(session: AsyncSession, limit: int) -> list[OutcomePayment]:
    query = (
        select(OutcomePayment)
        .where(OutcomePayment.status == "owed")
        .order_by(col(OutcomePayment.earned_at), col(OutcomePayment.referral_id))
        .limit(limit)
    )
    return list((await session.exec(query)).all())


async def payments_of(
    session: AsyncSession, partner_id: str, status: str, limit: int
) -> list[OutcomePayment]:
    query = select(OutcomePayment).order_by(col(OutcomePayment.updated_at).desc()).limit(limit)
    if partner_id:
        query = query.where(OutcomePayment.target_partner_id == partner_id)
    if status:
        query = query.where(OutcomePayment.status == status)
    return list((await session.exec(query)).all())


async def stream_flows(session: AsyncSession, account_id: str) -> list[tuple[str, str, int, str]]:
    """(transaction id, side, cents, metadata) of the posted entries on an account, in journal order."""
    query = (
        select(
            LedgerEntry.transaction_id, LedgerEntry.side, LedgerEntry.cents, LedgerTransaction.metadata_json
        )
        .join(LedgerTransaction, col(LedgerTransaction.id) == col(LedgerEntry.transaction_id))
        .where(LedgerEntry.account_id == account_id, LedgerEntry.phase == "posted")
        .order_by(col(LedgerTransaction.sequence), col(LedgerEntry.id))
    )
    return [(t, s, int(c), m) for t, s, c, m in (await session.exec(query)).all()]


async def debits_by_account_prefix(
    session: AsyncSession, prefix: str, start: datetime, end: datetime
) -> dict[str, int]:
    """Posted debits in [start, end) on each account whose id starts with the prefix."""
    query = (
        select(LedgerEntry.account_id, func.sum(LedgerEntry.cents))
        .where(
            col(LedgerEntry.account_id).startswith(prefix),
            LedgerEntry.side == "debit",
            LedgerEntry.phase == "posted",
            col(LedgerEntry.created_at) >= start,
            col(LedgerEntry.created_at) < end,
        )
        .group_by(col(LedgerEntry.account_id))
    )
    return {a: int(c) for a, c in (await session.exec(query)).all()}


async def accounts_of_kind(session: AsyncSession, kind: str) -> list[LedgerAccount]:
    return list((await session.exec(select(LedgerAccount).where(LedgerAccount.kind == kind))).all())


async def balance_of_kind(session: AsyncSession, kind: str) -> int:
    """The posted balance of every account of a debit-normal kind (cash, receivables), together."""
    query = select(
        func.coalesce(func.sum(LedgerAccount.debits_posted), 0),
        func.coalesce(func.sum(LedgerAccount.credits_posted), 0),
    ).where(LedgerAccount.kind == kind)
    debits, credits = (await session.exec(query)).one()
    return int(debits) - int(credits)


async def paid_outcomes(session: AsyncSession) -> list[tuple[str, str, int]]:
    """(partner, need domain, cents) of every paid outcome payment."""
    query = select(OutcomePayment.target_partner_id, OutcomePayment.need_domain, OutcomePayment.cents).where(
        OutcomePayment.status == "paid"
    )
    return [(p, d, int(c)) for p, d, c in (await session.exec(query)).all()]
