"""One database per service: SQLite files by default, PostgreSQL when DATABASE_URL says so.

Services use SQLAlchemy's asyncio engine (aiosqlite / psycopg 3); migrations use the sync driver.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite
from sqlalchemy import Table, event, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_platform.settings import ConfigError


def _driver_url(url: str, *, asynchronous: bool) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"DATABASE_URL is not a database URL: {_redact(url)}") from None
    backend = parsed.get_backend_name()
    if backend in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite" if asynchronous else "sqlite")
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    else:
        raise ConfigError(f"DATABASE_URL backend {backend!r} is not supported (postgresql or sqlite)")
    return parsed.render_as_string(hide_password=False)


def _redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable)"


def sync_url(url: str) -> str:
    return _driver_url(url, asynchronous=False)


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


class InlineSqliteConnection(aiosqlite.Connection):
    """aiosqlite, with each call made at once on the event loop's thread instead of handed to the
    connection's own thread and awaited back. SQLite is a library working on a local file: a
    statement takes microseconds, while the hand-off (a queue, a thread woken, the GIL passed over
    and back, the loop woken through its self-pipe) cost more CPU than the statements themselves,
    several times per event in every consumer. Safe because a process has one SQLite connection
    (see create_engine): nothing in the process can hold the file's lock while a call waits for it.
    The thread still opens and closes the connection (aiosqlite's life cycle)."""

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")  # what aiosqlite says (SQLAlchemy relies on it)
        return fn(*args, **kwargs)


def _inline_sqlite(driver_url: str) -> Callable[[], InlineSqliteConnection]:
    # The arguments SQLAlchemy's aiosqlite dialect would connect with (the file, the URL's options,
    # check_same_thread=False: opened on aiosqlite's thread, used on the loop's).
    args, options = SQLiteDialect_aiosqlite().create_connect_args(make_url(driver_url))

    def connect() -> InlineSqliteConnection:
        connection = InlineSqliteConnection(partial(sqlite3.connect, *args, **options), iter_chunk_size=64)
        connection._thread.daemon = True  # as SQLAlchemy does: never keeps the process alive
        return connection

    return connect


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    # hide_parameters: a database error's message must not carry the values of a statement (they
    # can be resident data) into logs, traces or client errors.
    driver_url = _driver_url(url, asynchronous=True)
    if make_url(driver_url).get_backend_name() == "sqlite":
        # SQLite has one writer at a time. One connection per process makes every transaction queue
        # in order for it, instead of racing for the file lock in SQLite's busy handler, which under
        # load starves some writers past any timeout ("database is locked"). Never open a second
        # session while holding one.
        kwargs = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 120, **kwargs}
        kwargs.setdefault("async_creator", _inline_sqlite(driver_url))
    engine = create_async_engine(driver_url, hide_parameters=True, **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers go on while the outbox relay writes; busy_timeout rides out the
            # single-writer lock instead of failing with "database is locked".
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL survives a process crash (what the outbox guards against); only an
            # OS crash or power loss can drop the last commits. PostgreSQL is the choice for production.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin_immediate(conn: Any) -> None:
            # Take the write lock at BEGIN so two writers queue instead of deadlocking on upgrade.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: everything done in the block commits together or not at all."""
    async with sessions() as session, session.begin():
        yield session


async def check_database(engine: AsyncEngine, timeout_s: float, *, tables: list[str] | None = None) -> None:
    """Fail fast with one clear message when the database is unreachable or not migrated."""
    try:
        async with asyncio.timeout(timeout_s), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            for table in tables or []:
                if not await conn.run_sync(_has_table, table):
                    raise ConfigError(
                        f"database {_redact(str(engine.url))} has no table {table!r}: "
                        "run the migrations first (make migrate)"
                    )
    except TimeoutError:
        raise ConfigError(
            f"database {_redact(str(engine.url))} did not answer within {timeout_s:g} s"
        ) from None
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None)
        reason = str(orig) if orig is not None else type(exc).__name__
        first_line = reason.strip().splitlines()[0] if reason.strip() else type(exc).__name__
        raise ConfigError(f"cannot use database {_redact(str(engine.url))}: {first_line}") from None
    except OSError as exc:
        raise ConfigError(f"cannot use database {_redact(str(engine.url))}: {exc}") from None


def _has_table(sync_conn: Any, table: str) -> bool:
    return bool(sync_conn.dialect.has_table(sync_conn, table))


async def insert_once(session: AsyncSession, model: type[SQLModel], values: dict[str, Any]) -> None:
    """One row, unless its primary key is there already (a replayed event, a row another replica
    made first): INSERT ... ON CONFLICT DO NOTHING on either backend, not a lookup and an ORM object."""
    await insert_once_into(session, model.__table__, values)  # type: ignore[attr-defined]


async def insert_many_once(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    """Many rows in one statement, each unless its primary key is there already (a bulk load)."""
    if not rows:
        return
    conn = await session.connection()
    insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    await conn.execute(insert(table).on_conflict_do_nothing(), rows)


async def insert_once_into(session: AsyncSession, table: Table, values: dict[str, Any]) -> None:
    """As insert_once, into a table given as such (e.g. a projection being rebuilt beside the live one)."""
    conn = await session.connection()
    insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    await conn.execute(insert(table).values(**values).on_conflict_do_nothing())
