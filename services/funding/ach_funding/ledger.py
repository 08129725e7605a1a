"""The ledger's workflow: write a transaction, resolve a pending one, expire those past their
deadline, verify the journal. Each write runs in the caller's database transaction with its outbox
event, so the journal and the events it emits commit together."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from ach.funding.v1 import funding_pb2
from ach_events.outbox import Outbox
from ach_events.topics import FUNDING_EVENTS
from ach_platform.errors import FailedPrecondition, NotFound
from opentelemetry import metrics
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_funding import mappers, store
from ach_funding.domain import ledger
from ach_funding.domain.ledger import (
    AccountKind,
    AccountView,
    Entry,
    JournalRow,
    Phase,
    Resolution,
    Side,
    Totals,
    TransactionDraft,
)
from ach_funding.store import (
    EntryRow,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    NewEntry,
    NewTransaction,
    TransactionRow,
    values_of,
    view,
)

T = TypeVar("T")
_meter = metrics.get_meter("ach_funding.ledger")
written = _meter.create_counter(
    "ach_funding_transactions_written",
    unit="{transaction}",
    description="Journal transactions, by kind and phase",
)
refused = _meter.create_counter(
    "ach_funding_transactions_refused", unit="{transaction}", description="Writes refused, by rule"
)
RELEASED = "released"  # the phase of a void or an expiry: it moves no money, it frees a reservation


def stamp(moment: datetime) -> str:
    """A moment as the hash chain covers it: UTC, microseconds, whatever the database gives back."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Written:
    transaction: TransactionRow
    entries: Sequence[EntryRow]
    replayed: bool = False


def journal_row(t: TransactionRow, entries: Sequence[EntryRow]) -> JournalRow:
    return JournalRow(
        sequence=t.sequence,
        transaction_id=t.id,
        idempotency_key=t.idempotency_key,
        kind=t.kind,
        phase=t.phase,
        entries=tuple((e.account_id, e.side, e.cents, e.currency) for e in entries),
        resolves=t.resolves_id or "",
        resolution=t.resolution or "",
        metadata=json.loads(t.metadata_json),
        memo=t.memo,
        created_at=stamp(t.created_at),
        expires_at=stamp(t.expires_at) if t.expires_at else "",
    )


def idempotency_conflict() -> FailedPrecondition:
    refused.add(1, {"rule": "idempotency"})
    return FailedPrecondition(
        "idempotency_key: used before with another body",
        violation_type="IDEMPOTENCY",
        subject="idempotency_key",
    )


def new_transaction(
    *,
    key: str,
    digest: str,
    kind: str,
    phase: str,
    entries: Sequence[tuple[Entry, Phase]],
    metadata: Mapping[str, str],
    memo: str,
    now: datetime,
    sequence: int,
    previous: str,
    expires_at: datetime | None = None,
    resolves: str | None = None,
    resolution: Resolution | None = None,
) -> tuple[NewTransaction, list[NewEntry]]:
    """A journal transaction and its entries, chained after ``previous`` (both write paths)."""
    t = NewTransaction(
        id=transaction_id_for(key),
        sequence=sequence,
        idempotency_key=key,
        body_digest=digest,
        kind=kind,
        phase=phase,
        memo=memo,
        metadata_json=json.dumps(dict(sorted(metadata.items())), separators=(",", ":")),
        expires_at=expires_at,
        created_at=now,
        previous_hash=previous,
        resolves_id=resolves,
        resolution=resolution.value if resolution else None,
    )
    rows = [
        NewEntry(
            transaction_id=t.id,
            account_id=e.account_id,
            side=e.side.value,
            cents=e.cents,
            currency=e.currency,
            phase=p.value,
            created_at=now,
        )
        for e, p in entries
    ]
    t.hash = journal_row(t, rows).chained_hash(previous)
    return t, rows


def transaction_id_for(key: str) -> str:
    """Derived from the key: a retried write names the same transaction."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ach:ledger:{key}"))


async def retrying_conflicts(
    sessions: async_sessionmaker[AsyncSession], work: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    """Run the work in a transaction; when a concurrent writer took the same idempotency key first
    (a unique index refuses ours), run it again: it then finds the first result."""
    for attempt in range(3):
        try:
            async with sessions() as session, session.begin():
                return await work(session)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


# The rules a write can be refused by (the refused counter's series exist from the start, at 0).
REFUSAL_RULES = (
    "idempotency",
    "invalid",
    "resolved",
    "expired",
    "overdraft",
    "currency",
    "account",
    "restriction",
    "reversal",
    "managed",
)


class Ledger:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        for rule in REFUSAL_RULES:
            refused.add(0, {"rule": rule})

    async def open_account(
        self,
        session: AsyncSession,
        account_id: str,
        kind: AccountKind,
        now: datetime,
        *,
        name: str = "",
        partner_id: str | None = None,
        overdraft_allowed: bool = False,
    ) -> LedgerAccount:
        """The account, opened if it is new (opening is idempotent; an open account's kind stays)."""
        account = await session.get(LedgerAccount, account_id)
        if account is None:
            account = LedgerAccount(
                id=account_id,
                kind=kind.value,
                currency="USD",
                name=name,
                partner_id=partner_id,
                overdraft_allowed=overdraft_allowed,
                created_at=now,
            )
            session.add(account)
            await session.flush()
        return account

    async def write(self, session: AsyncSession, draft: TransactionDraft, now: datetime) -> Written:
        try:
            ledger.validate(draft)
        except Exception:
            refused.add(1, {"rule": "invalid"})
            raise
        digest = draft.digest()
        if (existing := await store.by_key(session, draft.idempotency_key)) is not None:
            return await self._replay(session, existing, digest)
        locked = await store.accounts_for_update(session, [e.account_id for e in draft.entries])
        after = self._checked(
            lambda: ledger.apply({i: view(a) for i, a in locked.items()}, draft.entries, draft.phase)
        )
        return await self._append(
            session,
            key=draft.idempotency_key,
            digest=digest,
            kind=draft.kind,
            phase=draft.phase.value,
            entries=[(e, draft.phase) for e in draft.entries],
            locked=locked,
            after=after,
            metadata=draft.metadata,
            memo=draft.memo,
            now=now,
            expires_at=draft.expires_at,
        )

    async def resolve(
        self,
        session: AsyncSession,
        key: str,
        pending_id: str,
        resolution: Resolution,
        now: datetime,
        asked: Sequence[Entry] = (),
    ) -> Written:
        body = [
            pending_id,
            resolution.value,
            [[e.account_id, e.side.value, e.cents, e.currency] for e in asked],
        ]
        digest = hashlib.sha256(ledger.canonical(body)).hexdigest()
        if (existing := await store.by_key(session, key)) is not None:
            return await self._replay(session, existing, digest)
        pending = await session.get(LedgerTransaction, pending_id)
        if pending is None:
            raise NotFound(f"no transaction {pending_id}")
        if pending.phase != Phase.PENDING.value:
            raise FailedPrecondition(
                f"transaction {pending_id} is not pending", subject="pending_transaction_id"
            )
        # Locking the accounts first makes two resolutions of one pending transaction queue here.
        held = [ledger_entry(e) for e in await store.entries_of(session, [pending_id])]
        locked = await store.accounts_for_update(session, [e.account_id for e in held])
        if (done := await store.resolution_of(session, pending_id)) is not None:
            refused.add(1, {"rule": "resolved"})
            raise FailedPrecondition(
                f"transaction {pending_id} was already resolved ({done.resolution})",
                violation_type="RESOLVED",
                subject="pending_transaction_id",
            )
        if (
            resolution is Resolution.POST
            and pending.expires_at is not None
            and stamp(now) > stamp(pending.expires_at)
        ):
            raise FailedPrecondition(
                f"transaction {pending_id} expired at {stamp(pending.expires_at)}",
                violation_type="EXPIRED",
                subject="pending_transaction_id",
            )
        posted = ledger.resolution_entries(held, asked) if resolution is Resolution.POST else ()

        def released() -> dict[str, AccountView]:
            views = ledger.apply({i: view(a) for i, a in locked.items()}, held, Phase.PENDING, sign=-1)
            return ledger.apply(views, posted, Phase.POSTED)

        after = self._checked(released)
        return await self._append(
            session,
            key=key,
            digest=digest,
            kind=pending.kind,
            phase=Phase.POSTED.value if resolution is Resolution.POST else RELEASED,
            entries=[(e, Phase.POSTED) for e in posted],
            locked=locked,
            after=after,
            metadata=json.loads(pending.metadata_json),
            memo="",
            now=now,
            resolves=pending_id,
            resolution=resolution,
        )

    async def expire_due(
        self, sessions: async_sessionmaker[AsyncSession], now: datetime, limit: int = 100
    ) -> int:
        """Release pending transactions past their deadline; the number released."""
        async with sessions() as session:
            due = [t.id for t in await store.pending_due(session, now, limit)]
        count = 0
        for pending_id in due:

            async def expire(session: AsyncSession, pending_id: str = pending_id) -> None:
                await self.resolve(session, f"expire:{pending_id}", pending_id, Resolution.EXPIRE, now)

            try:
                await retrying_conflicts(sessions, expire)
                count += 1
            except FailedPrecondition:  # resolved meanwhile by a post or a void
                continue
        return count

    def _checked(self, rule: Callable[[], dict[str, AccountView]]) -> dict[str, AccountView]:
        try:
            return rule()
        except FailedPrecondition as exc:
            refused.add(1, {"rule": exc.violation_type.lower()})
            raise

    async def _replay(self, session: AsyncSession, existing: LedgerTransaction, digest: str) -> Written:
        if existing.body_digest != digest:
            raise idempotency_conflict()
        return Written(existing, await store.entries_of(session, [existing.id]), replayed=True)

    async def _append(
        self,
        session: AsyncSession,
        *,
        key: str,
        digest: str,
        kind: str,
        phase: str,
        entries: Sequence[tuple[Entry, Phase]],
        locked: Mapping[str, LedgerAccount],
        after: Mapping[str, AccountView],
        metadata: Mapping[str, str],
        memo: str,
        now: datetime,
        expires_at: datetime | None = None,
        resolves: str | None = None,
        resolution: Resolution | None = None,
    ) -> Written:
        for account_id, account in locked.items():
            totals = after[account_id].totals
            account.debits_posted, account.credits_posted = totals.debits_posted, totals.credits_posted
            account.debits_pending, account.credits_pending = totals.debits_pending, totals.credits_pending
            session.add(account)
        # The chain's head last and briefly: writers over other accounts ran in parallel until here.
        head = await store.chain_head_for_update(session)
        transaction, rows = new_transaction(
            key=key,
            digest=digest,
            kind=kind,
            phase=phase,
            entries=entries,
            metadata=metadata,
            memo=memo,
            now=now,
            sequence=head.sequence + 1,
            previous=head.hash,
            expires_at=expires_at,
            resolves=resolves,
            resolution=resolution,
        )
        head.sequence, head.hash = transaction.sequence, transaction.hash
        session.add(LedgerTransaction(**values_of(transaction)))
        await session.flush()
        session.add_all([LedgerEntry(**values_of(r)) for r in rows])
        session.add(head)
        await session.flush()
        self.outbox.add(
            session,
            FUNDING_EVENTS,
            funding_pb2.TransactionPosted(transaction=mappers.transaction(transaction, rows, for_event=True)),
            key=transaction.id,
        )
        written.add(1, {"kind": kind, "phase": phase})
        return Written(transaction, rows)


def ledger_entry(row: EntryRow) -> Entry:
    return Entry(row.account_id, Side(row.side), row.cents, row.currency)


@dataclass(frozen=True)
class Verification:
    intact: bool
    transactions: int
    problem: str = ""
    sequence: int = 0


async def verify(session: AsyncSession, batch: int = 2000) -> Verification:
    """Re-compute the hash chain from the first transaction, then each account's totals from its
    entries: the first break found."""
    previous, expected, count = ledger.GENESIS, 1, 0
    totals: dict[str, Totals] = {}
    after = 0
    while rows := await store.journal(session, after, batch):
        entries_by: dict[str, list[LedgerEntry]] = {}
        for e in await store.entries_of(session, [t.id for t in rows]):
            entries_by.setdefault(e.transaction_id, []).append(e)
        for t in rows:
            mine = entries_by.get(t.id, [])
            brk = ledger.verify_chain_step(journal_row(t, mine), t.previous_hash, t.hash, previous, expected)
            if brk:
                return Verification(False, count, f"transaction {t.id}: {brk}", t.sequence)
            previous, expected, count = t.hash, expected + 1, count + 1
            for e in mine:
                totals[e.account_id] = totals.get(e.account_id, Totals()).plus(
                    ledger_entry(e), Phase(e.phase)
                )
            if t.resolves_id:  # the reservation it resolved is released
                for e in entries_by.get(t.resolves_id) or await store.entries_of(session, [t.resolves_id]):
                    totals[e.account_id] = totals[e.account_id].plus(ledger_entry(e), Phase.PENDING, sign=-1)
        after = rows[-1].sequence
    head = (await session.exec(select(store.ChainHead).where(store.ChainHead.id == 1))).one()
    if head.sequence != count or head.hash != previous:
        return Verification(
            False, count, "the journal ends before its recorded head (rows removed)", head.sequence
        )
    for account in (await session.exec(select(LedgerAccount).order_by(col(LedgerAccount.id)))).all():
        if view(account).totals != totals.get(account.id, Totals()):
            return Verification(False, count, f"account {account.id}: its totals differ from its entries")
    return Verification(True, count)


async def verify_in(sessions: async_sessionmaker[AsyncSession]) -> Verification:
    async with sessions() as session:
        return await verify(session)
