"""The async engine, sessions and the request-scoped transaction."""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import AsyncAdaptedQueuePool

from ecrin_platform import sqlite_driver

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: SQLite read connections kept open between requests, and opened beyond those in a burst.
SQLITE_READERS_KEPT = 8
SQLITE_READERS_OVERFLOW = 56
#: Execution option marking a connection that never writes (SQLite: deferred BEGIN).
READ_ONLY = "ecrin_read_only"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An engine for ``postgresql+asyncpg://`` or ``sqlite+aiosqlite://``.

    SQLite runs in WAL mode with a busy timeout and ``BEGIN IMMEDIATE`` for writers,
    so concurrent writers wait instead of failing with "database is locked".
    """
    if is_sqlite(url):
        for pool_option in ("pool_size", "max_overflow", "pool_pre_ping", "pool_recycle"):
            kwargs.pop(pool_option, None)
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        # One trip to a connection's thread per statement, not four (``sqlite_driver``).
        kwargs["module"] = sqlite_driver.dbapi()
        # Writers share one kept-open connection: a process's writers queue for it in
        # order instead of polling SQLite's busy handler (which sleeps up to 100 ms between
        # tries: at 32 clients latency was mostly those sleeps), and no connection is
        # opened per request. Readers get their own connections, which WAL lets run
        # beside the writer (``read_only_engine``).
        engine = create_async_engine(url, poolclass=AsyncAdaptedQueuePool, pool_size=1,
                                     max_overflow=0, pool_timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                                     connect_args=connect_args, **kwargs)
        _configure_sqlite(engine)
        # Readers are pooled too: an aiosqlite connection is a thread, a file open and four
        # PRAGMAs, which cost a small read more CPU than the read itself when opened per
        # request. A burst beyond the pool opens overflow connections, closed on return.
        reader = create_async_engine(url, poolclass=AsyncAdaptedQueuePool,
                                     pool_size=SQLITE_READERS_KEPT,
                                     max_overflow=SQLITE_READERS_OVERFLOW,
                                     pool_timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                                     connect_args=connect_args, **kwargs)
        _configure_sqlite(reader)
        _READ_ONLY_ENGINES[engine] = reader.execution_options(**{READ_ONLY: True})
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", False)
    # Connections live for hours; recycle them before a firewall or PgBouncer would.
    kwargs.setdefault("pool_recycle", 1800)
    return create_async_engine(url, **kwargs)


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling is replaced by explicit BEGIN IMMEDIATE below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Take the write lock up front: a deferred transaction that upgrades to a writer
        # mid-way fails with SQLITE_BUSY without waiting for the busy timeout. Connections
        # marked read-only stay deferred, so WAL lets them read beside a writer.
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def engine_of(session: AsyncSession) -> AsyncEngine:
    """The service's engine a request's session is bound to (through a connection: a
    test's session inside its transaction)."""
    bind = session.bind
    if isinstance(bind, AsyncConnection):
        return bind.engine
    assert isinstance(bind, AsyncEngine), "sessions are bound to the service's engine"
    return bind


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One request, one transaction: commit on success, roll back on any error."""
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


def read_only_engine(engine: AsyncEngine) -> AsyncEngine:
    """``engine`` (same pool) for sessions that only read: on SQLite a deferred BEGIN, so
    WAL lets them run beside a writer; on PostgreSQL no transaction block at all, so each
    statement reads its own committed snapshot and the BEGIN and ROLLBACK round trips
    around every read are saved."""
    cached = _READ_ONLY_ENGINES.get(engine)
    if cached is None:
        options: dict[str, Any] = {READ_ONLY: True}
        if engine.dialect.name == "postgresql":
            options["isolation_level"] = "AUTOCOMMIT"
        cached = _READ_ONLY_ENGINES[engine] = engine.execution_options(**options)
    return cached


@asynccontextmanager
async def autocommit_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """PostgreSQL: a session outside any transaction block (same pool), where each
    statement commits by itself, for a write that is one statement: no BEGIN and COMMIT
    round trips around it. Only for statements that are whole on their own
    (``AuditLog.append_unlocked``, the records API's create)."""
    if engine.dialect.name != "postgresql":
        raise ValueError("autocommit sessions are for PostgreSQL")
    bind = _AUTOCOMMIT_ENGINES.get(engine)
    if bind is None:
        bind = _AUTOCOMMIT_ENGINES[engine] = engine.execution_options(
            isolation_level="AUTOCOMMIT")
    async with AsyncSession(bind=bind, expire_on_commit=False) as session:
        yield session


_AUTOCOMMIT_ENGINES: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = (
    weakref.WeakKeyDictionary())


_READ_ONLY_ENGINES: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = (
    weakref.WeakKeyDictionary())


async def dispose_engine(engine: AsyncEngine) -> None:
    """Close ``engine``'s connections and, on SQLite, those of its pooled readers (each an
    aiosqlite thread) too."""
    reader = _READ_ONLY_ENGINES.pop(engine, None)
    if reader is not None and reader.pool is not engine.pool:
        await reader.dispose()
    await engine.dispose()


@asynccontextmanager
async def read_only_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session that only reads (``read_only_engine``). It takes a pooled connection at
    its first statement and gives it back at ``release`` or at the end: a request that
    reads, then writes in a transaction of its own (an audit event), never holds two
    connections at once, so a burst of such requests cannot exhaust the pool while each
    waits for its second connection. Callers that need several reads to agree with one
    another use a transaction (``transaction``) instead."""
    async with AsyncSession(bind=read_only_engine(engine), expire_on_commit=False) as session:
        yield session


async def release(session: AsyncSession) -> None:
    """Give a read-only session's connection back to the pool now (it takes another if it
    reads again); the objects it loaded stay usable."""
    await session.commit()
