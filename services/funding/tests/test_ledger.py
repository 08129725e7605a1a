"""The ledger on SQLite and PostgreSQL: idempotent writes, overdrafts refused with nothing posted,
two-phase reservations resolved once, balances as of a moment, and a journal whose tampering shows;
then random sequences of operations with duplicates and concurrent writers, checking after each
that the books balance, no account is below its limit and the chain verifies."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ach_events.outbox import Outbox
from ach_funding import ledger, store
from ach_funding.domain.ledger import AccountKind, Entry, Phase, Resolution, Side, TransactionDraft
from ach_funding.fund_catalog import load_catalog
from ach_funding.journal_writer import JournalWriter
from ach_funding.ledger import Ledger, retrying_conflicts
from ach_funding.store import LedgerAccount, LedgerEntry, LedgerTransaction, view
from ach_funding.wellness_fund import CASH, NET_ASSETS, WellnessFund
from ach_platform import migrations
from ach_platform.database import create_engine, session_factory
from ach_platform.errors import FailedPrecondition, InvalidArgument
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

pytestmark = pytest.mark.postgres
D, C = Side.DEBIT, Side.CREDIT
Work = Callable[[AsyncSession], Awaitable[ledger.Written]]
AT = datetime(2026, 3, 2, 15, tzinfo=UTC)
MIGRATIONS = Path(__file__).resolve().parents[1] / "ach_funding" / "migrations"


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await asyncio.to_thread(migrations.upgrade, MIGRATIONS, database_url)
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


def fund() -> WellnessFund:
    """The tests' fund (``funds.yaml`` beside this file), its books not yet opened."""
    return WellnessFund(
        Ledger(Outbox(source="/ach/funding")), load_catalog(Path(__file__).with_name("funds.yaml"))
    )


async def opened(sessions: async_sessionmaker[AsyncSession], f: WellnessFund) -> None:
    async with sessions() as session, session.begin():
        await f.open_books(session, AT)


def grant(
    key: str, cents: int, stream: str = "stream:general", phase: Phase = Phase.POSTED
) -> TransactionDraft:
    """Restricted money released and owed to a CBO as a grant (four entries)."""
    return TransactionDraft(
        key,
        "grant",
        (
            Entry(stream, D, cents),
            Entry(NET_ASSETS, C, cents),
            Entry("expense:grant", D, cents),
            Entry("partner:cbo-1:payable", C, cents),
        ),
        phase,
    )


async def write(
    sessions: async_sessionmaker[AsyncSession], books: Ledger, d: TransactionDraft
) -> ledger.Written:
    return await retrying_conflicts(sessions, lambda s: books.write(s, d, AT))


def contributing(f: WellnessFund, key: str, cents: int, at: datetime = AT) -> Work:
    return lambda s: f.record_contribution(s, key, "general", cents, at)


def resolving(f: WellnessFund, key: str, pending: str, resolution: Resolution) -> Work:
    return lambda s: f.ledger.resolve(s, key, pending, resolution, AT)


async def account(sessions: async_sessionmaker[AsyncSession], account_id: str) -> LedgerAccount:
    async with sessions() as session:
        found = await session.get(LedgerAccount, account_id)
        assert found is not None
        return found


async def with_payable(sessions: async_sessionmaker[AsyncSession], f: WellnessFund) -> None:
    async with sessions() as session, session.begin():
        await f.ledger.open_account(
            session, "partner:cbo-1:payable", AccountKind.PAYABLE, AT, partner_id="cbo-1"
        )


async def test_a_write_is_idempotent_on_its_key_and_a_changed_body_is_a_conflict(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    f = fund()
    await opened(sessions, f)
    first = await retrying_conflicts(
        sessions, lambda s: f.record_contribution(s, "c-1", "general", 10_000, AT)
    )
    again = await retrying_conflicts(
        sessions, lambda s: f.record_contribution(s, "c-1", "general", 10_000, AT)
    )
    assert again.replayed and again.transaction.id == first.transaction.id
    with pytest.raises(FailedPrecondition) as caught:
        await retrying_conflicts(sessions, lambda s: f.record_contribution(s, "c-1", "general", 10_001, AT))
    assert caught.value.violation_type == "IDEMPOTENCY" and caught.value.subject == "idempotency_key"
    assert (await account(sessions, "stream:general")).credits_posted == 10_000
    # Concurrent writers with one key: one transaction.
    await asyncio.gather(
        *[
            retrying_conflicts(sessions, lambda s: f.record_contribution(s, "c-2", "general", 500, AT))
            for _ in range(8)
        ]
    )
    assert (await account(sessions, "stream:general")).credits_posted == 10_500


async def test_an_overdraft_or_a_bad_transaction_posts_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    f = fund()
    await opened(sessions, f)
    await with_payable(sessions, f)
    await retrying_conflicts(sessions, lambda s: f.record_contribution(s, "c-1", "general", 1000, AT))
    with pytest.raises(FailedPrecondition) as caught:
        await write(sessions, f.ledger, grant("g-1", 1001))
    assert caught.value.violation_type == "OVERDRAFT" and caught.value.subject == "stream:general"
    with pytest.raises(InvalidArgument):
        await write(
            sessions, f.ledger, TransactionDraft("g-2", "grant", (Entry(CASH, D, 5), Entry(NET_ASSETS, C, 4)))
        )
    with pytest.raises(FailedPrecondition) as unknown:
        await write(
            sessions, f.ledger, TransactionDraft("g-3", "grant", (Entry("nobody", D, 5), Entry(CASH, C, 5)))
        )
    assert unknown.value.violation_type == "ACCOUNT"
    async with sessions() as session:
        assert (await session.exec(select(func.count()).select_from(LedgerTransaction))).one() == 1
    assert (await account(sessions, "stream:general")).credits_posted == 1000
    assert (await account(sessions, "partner:cbo-1:payable")).credits_posted == 0


async def test_a_reservation_is_resolved_once_in_full_in_part_or_not_at_all(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    f = fund()
    await opened(sessions, f)
    await with_payable(sessions, f)
    await retrying_conflicts(sessions, lambda s: f.record_contribution(s, "c-1", "general", 1000, AT))
    held = await write(sessions, f.ledger, grant("g-1", 800, phase=Phase.PENDING))
    general = view(await account(sessions, "stream:general"))
    assert (general.balance, general.available) == (1000, 200)
    with pytest.raises(FailedPrecondition):  # the reservation holds the money
        await write(sessions, f.ledger, grant("g-2", 300))
    part = [
        Entry("stream:general", D, 500),
        Entry(NET_ASSETS, C, 500),
        Entry("expense:grant", D, 500),
        Entry("partner:cbo-1:payable", C, 500),
    ]
    resolve = f.ledger.resolve
    posted = await retrying_conflicts(
        sessions, lambda s: resolve(s, "p-1", held.transaction.id, Resolution.POST, AT, part)
    )
    assert posted.transaction.resolves_id == held.transaction.id and posted.transaction.phase == "posted"
    general = view(await account(sessions, "stream:general"))
    assert (general.balance, general.available) == (500, 500)  # the other 300 released
    again = await retrying_conflicts(
        sessions, lambda s: resolve(s, "p-1", held.transaction.id, Resolution.POST, AT, part)
    )
    assert again.replayed
    with pytest.raises(FailedPrecondition) as caught:
        await retrying_conflicts(
            sessions, lambda s: resolve(s, "v-1", held.transaction.id, Resolution.VOID, AT)
        )
    assert caught.value.violation_type == "RESOLVED"
    # Two concurrent resolutions of one reservation: one wins.
    other = await write(sessions, f.ledger, grant("g-3", 400, phase=Phase.PENDING))
    outcomes = await asyncio.gather(
        *[
            retrying_conflicts(sessions, resolving(f, k, other.transaction.id, r))
            for k, r in (("a", Resolution.POST), ("b", Resolution.VOID), ("c", Resolution.POST))
        ],
        return_exceptions=True,
    )
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert all(isinstance(o, FailedPrecondition) for o in outcomes if isinstance(o, BaseException))
    assert (await ledger.verify_in(sessions)).intact


async def test_a_reservation_past_its_deadline_expires_and_cannot_be_posted(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    f = fund()
    await opened(sessions, f)
    await with_payable(sessions, f)
    await retrying_conflicts(sessions, lambda s: f.record_contribution(s, "c-1", "general", 1000, AT))
    d = grant("g-1", 1000, phase=Phase.PENDING)
    d = TransactionDraft(d.idempotency_key, d.kind, d.entries, d.phase, expires_at=AT + timedelta(days=1))
    held = await write(sessions, f.ledger, d)
    late = AT + timedelta(days=2)
    with pytest.raises(FailedPrecondition) as caught:
        await retrying_conflicts(
            sessions, lambda s: f.ledger.resolve(s, "p", held.transaction.id, Resolution.POST, late)
        )
    assert caught.value.violation_type == "EXPIRED"
    assert await f.ledger.expire_due(sessions, AT) == 0
    assert await f.ledger.expire_due(sessions, late) == 1
    assert await f.ledger.expire_due(sessions, late) == 0
    assert view(await account(sessions, "stream:general")).available == 1000


async def test_balances_as_of_a_moment(sessions: async_sessionmaker[AsyncSession]) -> None:
    f = fund()
    await opened(sessions, f)
    for day, cents in ((0, 100), (10, 250), (20, 400)):
        at = AT + timedelta(days=day)
        await retrying_conflicts(sessions, contributing(f, f"c{day}", cents, at))
    async with sessions() as session:
        assert await store.posted_totals_as_of(session, "stream:general", AT + timedelta(days=15)) == (0, 350)
        assert await store.posted_totals_as_of(session, "stream:general", AT - timedelta(days=1)) == (0, 0)


async def test_the_journal_shows_tampering(sessions: async_sessionmaker[AsyncSession]) -> None:
    f = fund()
    await opened(sessions, f)
    for n in range(5):
        await retrying_conflicts(sessions, contributing(f, f"c{n}", 100 + n))
    result = await ledger.verify_in(sessions)
    assert result.intact and result.transactions == 5

    async def tampered(sql: str) -> ledger.Verification:
        async with sessions() as session, session.begin():
            await session.exec(text(sql))  # type: ignore[call-overload]
        return await ledger.verify_in(sessions)

    async with sessions() as session:
        third = (await session.exec(select(LedgerTransaction).where(LedgerTransaction.sequence == 3))).one()
        entry = (
            await session.exec(select(LedgerEntry).where(LedgerEntry.transaction_id == third.id))
        ).first()
    assert entry is not None
    broken = await tampered(f"UPDATE ledger_entry SET cents = cents + 1 WHERE id = {entry.id}")
    assert not broken.intact and broken.sequence == 3 and "hash" in broken.problem
    await tampered(f"UPDATE ledger_entry SET cents = cents - 1 WHERE id = {entry.id}")
    assert (await ledger.verify_in(sessions)).intact
    moved = await tampered(
        "UPDATE ledger_account SET credits_posted = credits_posted + 7 WHERE id = 'stream:general'"
    )
    assert not moved.intact and "totals" in moved.problem
    await tampered(
        "UPDATE ledger_account SET credits_posted = credits_posted - 7 WHERE id = 'stream:general'"
    )
    last = await tampered("DELETE FROM outbox_event")  # not the journal: still intact
    assert last.intact
    async with sessions() as session:
        fifth = (await session.exec(select(LedgerTransaction).where(LedgerTransaction.sequence == 5))).one()
    removed = await tampered(f"DELETE FROM ledger_entry WHERE transaction_id = '{fifth.id}'")
    assert not removed.intact


# Random operations, on one database per test: each example works under its own prefix, and the
# checks run over the whole ledger after every step.
OPERATION = st.one_of(
    st.tuples(st.just("contribute"), st.integers(1, 5000)),
    st.tuples(st.just("grant"), st.integers(1, 3000)),
    st.tuples(st.just("reserve"), st.integers(1, 3000)),
    st.tuples(st.just("post"), st.integers(0, 20)),
    st.tuples(st.just("part"), st.integers(0, 20)),
    st.tuples(st.just("void"), st.integers(0, 20)),
    st.tuples(st.just("again"), st.integers(0, 20)),  # a duplicate of an earlier write
)


async def check_books(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        accounts = (await session.exec(select(LedgerAccount))).all()
        for phase in ("posted", "pending"):
            debits = sum(getattr(a, f"debits_{phase}") for a in accounts)
            credits = sum(getattr(a, f"credits_{phase}") for a in accounts)
            assert debits == credits, f"{phase}: {debits} debited, {credits} credited"
        for a in accounts:
            assert a.overdraft_allowed or view(a).available >= 0, a.id
    result = await ledger.verify_in(sessions)
    assert result.intact, result.problem


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.lists(OPERATION, min_size=1, max_size=4), min_size=1, max_size=6))
def test_random_operations_keep_the_books(
    sessions: async_sessionmaker[AsyncSession], steps: list[list[tuple[str, int]]]
) -> None:
    asyncio.run(run_operations(sessions, fund(), steps))


async def run_operations(
    sessions_made_elsewhere: async_sessionmaker[AsyncSession],
    f: WellnessFund,
    steps: list[list[tuple[str, int]]],
) -> None:
    # The fixture's engine belongs to the test's loop: this example's loop opens its own.
    bind = sessions_made_elsewhere.kw["bind"]
    engine = create_engine(bind.url.render_as_string(hide_password=False))
    sessions = session_factory(engine)
    try:
        await opened(sessions, f)
        await with_payable(sessions, f)
        run = uuid.uuid4().hex[:8]
        writes: list[TransactionDraft] = []
        pendings: list[str] = []
        n = 0

        async def one(op: str, value: int) -> None:
            nonlocal n
            n += 1
            key = f"{run}-{n}"
            try:
                if op == "contribute":
                    await retrying_conflicts(
                        sessions, lambda s: f.record_contribution(s, key, "general", value, AT)
                    )
                elif op in ("grant", "reserve"):
                    d = grant(key, value, phase=Phase.PENDING if op == "reserve" else Phase.POSTED)
                    writes.append(d)
                    done = await write(sessions, f.ledger, d)
                    if op == "reserve":
                        pendings.append(done.transaction.id)
                elif op == "again" and writes:
                    await write(sessions, f.ledger, writes[value % len(writes)])
                elif op in ("post", "part", "void") and pendings:
                    pending = pendings[value % len(pendings)]
                    asked: list[Entry] = []
                    if op == "part":
                        async with sessions() as session:
                            held = await store.entries_of(session, [pending])
                        asked = [Entry(e.account_id, Side(e.side), max(1, e.cents // 2)) for e in held]
                    resolution = Resolution.VOID if op == "void" else Resolution.POST
                    await retrying_conflicts(
                        sessions, lambda s: f.ledger.resolve(s, key, pending, resolution, AT, asked)
                    )
            except FailedPrecondition as exc:  # an overdraft, a second resolution: refused, nothing posted
                assert exc.violation_type in {"OVERDRAFT", "RESOLVED"}, exc.message

        for step in steps:
            await asyncio.gather(*[one(op, value) for op, value in step])  # concurrent writers
            await check_books(sessions)
    finally:
        await engine.dispose()


async def test_writes_committed_together_each_keep_their_outcome(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    f = fund()
    await opened(sessions, f)
    await with_payable(sessions, f)
    writer = JournalWriter(sessions, f.ledger)
    await writer.write(
        TransactionDraft("c-0", "contribution", (Entry(CASH, D, 10_000), Entry("stream:general", C, 10_000)))
    )
    drafts = [grant(f"g-{i}", 100) for i in range(150)]  # 15,000 asked of 10,000: a third refused
    drafts += drafts[:20]  # retried writes
    drafts.append(grant("g-0", 101))  # a key used again with another body
    outcomes = await asyncio.gather(*[writer.write(d) for d in drafts], return_exceptions=True)
    await writer.close()
    posted = [o for o in outcomes[:150] if isinstance(o, ledger.Written)]
    overdrafts = [
        o for o in outcomes[:150] if isinstance(o, FailedPrecondition) and o.violation_type == "OVERDRAFT"
    ]
    assert len(posted) == 100 and len(overdrafts) == 50
    for first, again in zip(outcomes[:20], outcomes[150:170], strict=True):
        if isinstance(first, ledger.Written):
            assert (
                isinstance(again, ledger.Written)
                and again.replayed
                and again.transaction.id == first.transaction.id
            )
    assert isinstance(outcomes[-1], FailedPrecondition) and outcomes[-1].violation_type == "IDEMPOTENCY"
    assert view(await account(sessions, "stream:general")).balance == 0
    assert (await account(sessions, "partner:cbo-1:payable")).credits_posted == 10_000
    await check_books(sessions)
    async with sessions() as session:
        sequences = (
            await session.exec(select(LedgerTransaction.sequence).order_by(col(LedgerTransaction.sequence)))
        ).all()
    assert list(sequences) == list(range(1, 102))  # one chain, no gaps, no doubles


async def test_the_verify_command_says_whether_the_journal_holds(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    f = fund()
    await opened(sessions, f)
    for n in range(3):
        await retrying_conflicts(sessions, contributing(f, f"c{n}", 100))
    env = {**os.environ, "DATABASE_URL": database_url, "FUNDING_DATABASE_URL": database_url}
    command = [sys.executable, "-m", "ach_funding.main", "verify"]
    intact = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=120
    )
    assert intact.returncode == 0 and "journal intact: 3 transactions" in intact.stdout, intact.stderr[-500:]
    async with sessions() as session, session.begin():
        await session.exec(text("UPDATE ledger_transaction SET memo = 'changed' WHERE sequence = 2"))  # type: ignore[call-overload]
    broken = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=120
    )
    assert broken.returncode == 1 and "NOT intact at sequence 2" in broken.stdout
    assert "Traceback" not in broken.stderr
