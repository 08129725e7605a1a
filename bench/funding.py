"""The Wellness Fund's ledger under concurrent writers, on SQLite and PostgreSQL: balanced postings
(a transaction of two entries between two of 1,000 accounts) written through the ledger's whole
path — idempotency check, account locks, overdraft rule, hash chain, outbox event — with one write
in ten a duplicate of an earlier key, beside a plain INSERT of the same rows (the transaction and
its two entries) into tables without the ledger's rules, same database, same writers, same run.
After the run: no transaction lost or doubled, the books balance, the chain verifies.
Writes go through the group-commit writer (the API's path for standalone writes); a fifth as many
through one database transaction each (the path writes share with other state) for comparison.
BENCH_LEDGER_N writes, BENCH_LEDGER_WRITERS concurrent writers (on SQLite they queue for its one
connection)."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime

from ach_events.outbox import Outbox
from ach_funding import ledger
from ach_funding.domain.ledger import AccountKind, Entry, Side, TransactionDraft
from ach_funding.journal_writer import JournalWriter
from ach_funding.ledger import Ledger, retrying_conflicts
from ach_funding.main import DEFINITION
from ach_funding.store import LedgerAccount, LedgerTransaction
from ach_platform import migrations
from ach_platform.database import create_engine, session_factory
from sqlalchemy import text
from sqlmodel import func, select

from bench.results import Figure
from bench.stacks import p99
from tests.databases import drop_postgres_database, fresh_postgres_database

ACCOUNTS = 1000
PLAIN_TRANSACTION = (
    "INSERT INTO plain_transaction (id, sequence, idempotency_key, body_digest, kind, phase, memo,"
    " metadata_json, created_at, previous_hash, hash)"
    " VALUES (:id, 0, :k, '', 'bench', 'posted', '', '{}', :t, '', '')"
)
PLAIN_ENTRY = (
    "INSERT INTO plain_entry (id, transaction_id, account_id, side, cents, currency, phase, created_at)"
    " VALUES (:i, :tid, :a, :s, :c, 'USD', 'posted', :t)"
)


def drafts(n: int, seed: int = 7) -> list[TransactionDraft]:
    rng = random.Random(seed)
    out: list[TransactionDraft] = []
    for i in range(n):
        if out and rng.random() < 0.1:
            out.append(out[rng.randrange(len(out))])  # a retried write: the first result, nothing new
            continue
        a, b = rng.sample(range(ACCOUNTS), 2)
        cents = rng.randint(1, 100_000)
        out.append(
            TransactionDraft(
                f"bench-{i}",
                "bench",
                (Entry(f"bench:{a}", Side.DEBIT, cents), Entry(f"bench:{b}", Side.CREDIT, cents)),
            )
        )
    return out


async def _run(url: str, n: int, writers: int) -> tuple[list[Figure], str]:
    await asyncio.to_thread(migrations.upgrade, DEFINITION.migrations_dir, url)
    engine = create_engine(
        url, **({} if url.startswith("sqlite") else {"pool_size": writers, "max_overflow": 0})
    )
    sessions = session_factory(engine)
    backend = engine.dialect.name
    books = Ledger(Outbox(source="/ach/funding"))
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        for i in range(ACCOUNTS):
            await books.open_account(session, f"bench:{i}", AccountKind.CASH, now, overdraft_allowed=True)
        await session.exec(
            text("CREATE TABLE plain_transaction AS SELECT * FROM ledger_transaction WHERE 1 = 0")
        )  # type: ignore[call-overload]
        await session.exec(text("CREATE TABLE plain_entry AS SELECT * FROM ledger_entry WHERE 1 = 0"))  # type: ignore[call-overload]
    work = drafts(n)
    # The one-transaction-per-write path, for comparison: the same shape of writes, new keys.
    alone = [
        TransactionDraft(f"alone-{d.idempotency_key}", d.kind, d.entries)
        for d in drafts(max(n // 5, 1), seed=8)
    ]
    queue: asyncio.Queue[TransactionDraft] = asyncio.Queue()

    async def timed(write: object) -> list[float]:
        latencies: list[float] = []
        while not queue.empty():
            d = queue.get_nowait()
            t0 = time.perf_counter()
            await write(d)  # type: ignore[operator]
            latencies.append(time.perf_counter() - t0)
        return latencies

    async def one_at_a_time(d: TransactionDraft) -> None:
        await retrying_conflicts(sessions, lambda s: books.write(s, d, datetime.now(UTC)))

    writer = JournalWriter(sessions, books)

    async def committed_together(d: TransactionDraft) -> None:
        await writer.write(d)

    async def plain(d: TransactionDraft) -> None:
        tid = str(uuid.uuid4())
        async with sessions() as s, s.begin():
            await s.execute(
                text(PLAIN_TRANSACTION),
                {"id": tid, "k": f"{d.idempotency_key}-{tid[:8]}", "t": datetime.now(UTC)},
            )
            await s.execute(
                text(PLAIN_ENTRY),
                [
                    {
                        "i": random.getrandbits(31),
                        "tid": tid,
                        "a": e.account_id,
                        "s": e.side.value,
                        "c": e.cents,
                        "t": datetime.now(UTC),
                    }
                    for e in d.entries
                ],
            )

    results: dict[str, tuple[float, list[float]]] = {}
    for name, write in (("plain", plain), ("ledger", committed_together), ("alone", one_at_a_time)):
        for d in work if name != "alone" else alone:
            queue.put_nowait(d)
        t0 = time.perf_counter()
        lat = [x for part in await asyncio.gather(*[timed(write) for _ in range(writers)]) for x in part]
        results[name] = (len(work) / (time.perf_counter() - t0), lat)
    async with sessions() as session:
        written = (await session.exec(select(func.count()).select_from(LedgerTransaction))).one()
        accounts = (await session.exec(select(LedgerAccount))).all()
    await writer.close()
    unique = len({d.idempotency_key for d in work}) + len({d.idempotency_key for d in alone})
    debits = sum(a.debits_posted for a in accounts)
    credits = sum(a.credits_posted for a in accounts)
    verified = await ledger.verify_in(sessions)
    await engine.dispose()
    check = (
        f"{backend}: {written} transactions for {unique} keys ({len(work) + len(alone)} writes), "
        f"debits {debits} = credits {credits}: {debits == credits}, chain intact: {verified.intact}"
    )
    if written != unique or debits != credits or not verified.intact:
        raise AssertionError(f"the ledger lost or doubled: {check}")
    rate, lat = results["ledger"]
    plain_rate, plain_lat = results["plain"]
    alone_rate, _ = results["alone"]
    figures = [
        Figure(
            f"ledger postings/s, one transaction each ({backend})",
            alone_rate,
            "postings/s",
            "plain INSERT of the same rows",
            plain_rate,
        ),
        Figure(
            f"ledger postings/s, committed together ({backend}, {writers} writers)",
            rate,
            "postings/s",
            "plain INSERT of the same rows",
            plain_rate,
        ),
        Figure(
            f"ledger write p50 ({backend})",
            statistics.median(lat) * 1000,
            "ms",
            "plain INSERT p50",
            statistics.median(plain_lat) * 1000,
        ),
        Figure(
            f"ledger write p99 ({backend})", p99(lat) * 1000, "ms", "plain INSERT p99", p99(plain_lat) * 1000
        ),
    ]
    return figures, check


def run(server: str | None) -> list[Figure]:
    n = int(os.environ.get("BENCH_LEDGER_N", "5000"))
    writers = int(os.environ.get("BENCH_LEDGER_WRITERS", "32"))
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as scratch:
        got, check = asyncio.run(_run(f"sqlite:///{scratch}/ledger.db", n, writers))
        figures += got
        print(check)
    if server:
        url, name = fresh_postgres_database(server)
        try:
            got, check = asyncio.run(_run(url, n, writers))
            figures += got
            print(check)
        finally:
            drop_postgres_database(server, name)
    return figures
