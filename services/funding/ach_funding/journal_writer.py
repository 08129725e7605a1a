"""Group commit for the ledger's standalone writes (as TigerBeetle batches its transfers): writes
that arrive together are applied one after the other against the accounts' locked totals and
committed in one database transaction — one lock of the chain's head, one statement per table —
each with its own outcome: posted, the first result of its key, or refused with its reason. A
refused write never fails the others; a batch the database refuses is written again one by one."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ach.funding.v1 import funding_pb2
from ach_events.topics import FUNDING_EVENTS
from ach_platform.clock import utc_now
from ach_platform.errors import DomainError, FailedPrecondition
from opentelemetry import metrics
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_funding import mappers
from ach_funding.domain import ledger as rules
from ach_funding.domain.ledger import AccountView, TransactionDraft
from ach_funding.ledger import (
    Ledger,
    Written,
    idempotency_conflict,
    new_transaction,
    refused,
    retrying_conflicts,
    written,
)
from ach_funding.store import (
    ChainHead,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    NewEntry,
    NewTransaction,
    values_of,
    view,
)

log = logging.getLogger(__name__)
batch_sizes = metrics.get_meter("ach_funding.journal_writer").create_histogram(
    "ach_funding_write_batch_size", unit="{transaction}", description="Writes committed together"
)


TRANSACTIONS: Table = LedgerTransaction.__table__  # type: ignore[attr-defined]
ENTRIES: Table = LedgerEntry.__table__  # type: ignore[attr-defined]
ACCOUNTS: Table = LedgerAccount.__table__  # type: ignore[attr-defined]
HEADS: Table = ChainHead.__table__  # type: ignore[attr-defined]
TRANSACTION_FIELDS = NewTransaction.__slots__
ENTRY_FIELDS = NewEntry.__slots__


async def _transactions_by_key(connection: AsyncConnection, keys: Sequence[str]) -> list[NewTransaction]:
    rows = (
        await connection.execute(select(TRANSACTIONS).where(TRANSACTIONS.c.idempotency_key.in_(keys)))
    ).all()
    return [NewTransaction(**{f: r._mapping[f] for f in TRANSACTION_FIELDS}) for r in rows]


async def _entries_of(connection: AsyncConnection, ids: Sequence[str]) -> dict[str, list[NewEntry]]:
    found: dict[str, list[NewEntry]] = {}
    if ids:
        query = select(ENTRIES).where(ENTRIES.c.transaction_id.in_(ids)).order_by(ENTRIES.c.id)
        for r in (await connection.execute(query)).all():
            found.setdefault(r.transaction_id, []).append(
                NewEntry(**{f: r._mapping[f] for f in ENTRY_FIELDS})
            )
    return found


async def _accounts_for_update(connection: AsyncConnection, ids: Sequence[str]) -> dict[str, AccountView]:
    """Locked in id order, as every writer locks them (two writers queue, never deadlock)."""
    if not ids:
        return {}
    query = (
        select(ACCOUNTS).where(ACCOUNTS.c.id.in_(sorted(set(ids)))).order_by(ACCOUNTS.c.id).with_for_update()
    )
    return {r.id: view(r) for r in (await connection.execute(query)).all()}


def _settle(done: asyncio.Future[Written], outcome: Written | BaseException) -> None:
    if done.done():  # its caller gave up waiting (cancelled): the write stands, nobody to tell
        return
    if isinstance(outcome, BaseException):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)


@dataclass
class _Pending:
    draft: TransactionDraft
    now: datetime
    context: contextvars.Context
    done: asyncio.Future[Written]


class JournalWriter:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], books: Ledger, max_batch: int = 256
    ) -> None:
        self._sessions = sessions
        self._books = books
        self._max = max_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def write(self, draft: TransactionDraft, now: datetime | None = None) -> Written:
        rules.validate(draft)  # a malformed write is refused at once, never queued
        done: asyncio.Future[Written] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(draft, now or utc_now(), contextvars.copy_context(), done))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return await done

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            except Exception as exc:  # the database refused the batch (a key taken meanwhile, say)
                log.warning(
                    "a batch of %d writes was refused (%s): writing them one by one",
                    len(batch),
                    type(exc).__name__,
                )
                for item in batch:
                    if not item.done.done():
                        await self._alone(item)

    async def _alone(self, item: _Pending) -> None:
        try:
            result = await retrying_conflicts(
                self._sessions, lambda s: self._books.write(s, item.draft, item.now)
            )
            _settle(item.done, result)
        except Exception as exc:
            _settle(item.done, exc)

    async def _commit(self, batch: Sequence[_Pending]) -> None:
        outcomes: dict[int, Written | DomainError] = {}
        async with self._sessions() as session, session.begin():
            connection = await session.connection()  # Core statements: no ORM objects to build
            keys = [p.draft.idempotency_key for p in batch]
            before = {t.idempotency_key: t for t in await _transactions_by_key(connection, keys)}
            earlier = await _entries_of(connection, [t.id for t in before.values()])
            touched = [
                e.account_id for p in batch if p.draft.idempotency_key not in before for e in p.draft.entries
            ]
            locked = await _accounts_for_update(connection, touched)
            views = dict(locked)
            head = (await connection.execute(select(HEADS).where(HEADS.c.id == 1).with_for_update())).one()
            sequence, previous = int(head.sequence), str(head.hash)
            new: list[tuple[int, NewTransaction, list[NewEntry]]] = []
            first_of: dict[str, tuple[str, int]] = {}
            for i, p in enumerate(batch):
                key, digest = p.draft.idempotency_key, p.draft.digest()
                if key in before or key in first_of:
                    known = before[key].body_digest if key in before else first_of[key][0]
                    if known != digest:
                        outcomes[i] = idempotency_conflict()
                    elif key in before:
                        outcomes[i] = Written(before[key], earlier.get(before[key].id, []), replayed=True)
                    continue  # a duplicate within the batch: the first's result, after the commit
                try:
                    views = rules.apply(views, p.draft.entries, p.draft.phase)
                except FailedPrecondition as exc:
                    refused.add(1, {"rule": exc.violation_type.lower()})
                    outcomes[i] = exc
                    continue
                first_of[key] = (digest, i)
                sequence += 1
                t, rows = new_transaction(
                    key=key,
                    digest=digest,
                    kind=p.draft.kind,
                    phase=p.draft.phase.value,
                    entries=[(e, p.draft.phase) for e in p.draft.entries],
                    metadata=p.draft.metadata,
                    memo=p.draft.memo,
                    now=p.now,
                    sequence=sequence,
                    previous=previous,
                    expires_at=p.draft.expires_at,
                )
                previous = t.hash
                new.append((i, t, rows))
            if new:
                await self._insert(connection, new, views, locked, sequence, previous)
                for i, t, rows in new:
                    event = funding_pb2.TransactionPosted(
                        transaction=mappers.transaction(t, rows, for_event=True)
                    )
                    batch[i].context.run(self._books.outbox.add, session, FUNDING_EVENTS, event, key=t.id)
        batch_sizes.record(len(batch))
        made = {t.idempotency_key: (i, t, rows) for i, t, rows in new}
        for i, p in enumerate(batch):
            if i in outcomes:
                _settle(p.done, outcomes[i])
                continue
            first, t, rows = made[p.draft.idempotency_key]
            if first == i:
                written.add(1, {"kind": t.kind, "phase": t.phase})
            _settle(p.done, Written(t, rows, replayed=first != i))

    @staticmethod
    async def _insert(
        connection: AsyncConnection,
        new: Sequence[tuple[int, NewTransaction, list[NewEntry]]],
        views: dict[str, AccountView],
        locked: dict[str, AccountView],
        sequence: int,
        previous: str,
    ) -> None:
        await connection.execute(insert(TRANSACTIONS), [values_of(t) for _, t, _ in new])
        await connection.execute(insert(ENTRIES), [values_of(r) for _, _, rows in new for r in rows])
        changed = [
            {
                "b_id": i,
                "b_dp": v.totals.debits_posted,
                "b_cp": v.totals.credits_posted,
                "b_dq": v.totals.debits_pending,
                "b_cq": v.totals.credits_pending,
            }
            for i, v in views.items()
            if i in locked and v.totals != locked[i].totals
        ]
        if changed:
            await connection.execute(
                update(ACCOUNTS)
                .where(ACCOUNTS.c.id == bindparam("b_id"))
                .values(
                    debits_posted=bindparam("b_dp"),
                    credits_posted=bindparam("b_cp"),
                    debits_pending=bindparam("b_dq"),
                    credits_pending=bindparam("b_cq"),
                ),
                changed,
            )
        await connection.execute(
            update(HEADS).where(HEADS.c.id == 1).values(sequence=sequence, hash=previous)
        )
