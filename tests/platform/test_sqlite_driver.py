"""SQLite through ``ecrin_platform.sqlite_driver``: one trip to the connection's thread per
statement, and otherwise what SQLAlchemy's aiosqlite adapter gives (rows, row counts,
generated ids, many-row executions, errors, transactions, streamed results)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from ecrin_platform.db import create_engine, dispose_engine, read_only_session

metadata = MetaData()
notes = Table("notes", metadata, Column("id", Integer, primary_key=True, autoincrement=True),
              Column("title", String(40), unique=True), Column("n", Integer))


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await dispose_engine(engine)


async def test_a_statement_is_one_trip_to_the_connections_thread(
        engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch):
    seen: list[str] = []  # each function run on an aiosqlite connection's thread
    real = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await real(self, fn, *args, **kwargs)

    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))  # the connection and its BEGIN made
        with monkeypatch.context() as patched:
            patched.setattr(aiosqlite.Connection, "_execute", counted)
            rows = (await conn.execute(select(notes.c.title))).all()
            await conn.execute(insert(notes).values(title="bilan", n=1))
        await conn.commit()
    assert rows == [] and len(seen) == 2, seen  # the adapter of SQLAlchemy took 4 each


async def test_rows_counts_ids_and_many_row_executions(engine: AsyncEngine):
    async with engine.begin() as conn:
        first = await conn.execute(insert(notes).values(title="a", n=1))
        second = await conn.execute(insert(notes).values(title="b", n=2))
        assert first.inserted_primary_key == (1,) and second.inserted_primary_key == (2,)
        await conn.execute(insert(notes), [{"title": f"m{i}", "n": i} for i in range(10)])
        returned = (await conn.execute(insert(notes).values(title="r", n=99)
                                       .returning(notes.c.id, notes.c.n))).one()
        assert tuple(returned) == (13, 99)
        changed = await conn.execute(update(notes).where(notes.c.n < 5).values(n=0))
        assert changed.rowcount == 7  # a, b and m0-m4
        assert (await conn.scalar(select(func.count()).select_from(notes))) == 13
        batch = await conn.execute(select(notes.c.title).order_by(notes.c.id))
        assert [r.title for r in batch.fetchmany(3)] == ["a", "b", "m0"]
        assert len(batch.fetchall()) == 10
        streamed = [r.title async for r in await conn.stream(
            select(notes.c.title).order_by(notes.c.id))]
        assert streamed[0] == "a" and len(streamed) == 13


async def test_errors_and_rollbacks_are_sqlalchemys(engine: AsyncEngine):
    async with engine.begin() as conn:
        await conn.execute(insert(notes).values(title="once", n=1))
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert(notes).values(title="twice", n=2))
            await conn.execute(insert(notes).values(title="once", n=3))
    with pytest.raises(OperationalError):
        async with engine.connect() as conn:
            await conn.execute(text("SELECT * FROM no_such_table"))
    async with read_only_session(engine) as session:  # the failed transaction left nothing
        titles = (await session.execute(select(notes.c.title))).scalars().all()
    assert titles == ["once"]


async def test_a_closed_connection_is_an_error_not_a_hang(engine: AsyncEngine):
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, aiosqlite.Connection)
        await driver.close()
        with pytest.raises(OperationalError):
            await conn.execute(text("SELECT 1"))
        await conn.invalidate()


def test_the_private_members_it_relies_on_are_there():
    """``aiosqlite.Connection._conn`` and ``._execute``: a new aiosqlite without them fails
    here rather than in every service."""
    assert isinstance(aiosqlite.Connection.__dict__.get("_conn"), property)
    assert callable(aiosqlite.Connection.__dict__.get("_execute"))


async def test_a_statement_cancelled_on_its_thread_leaves_nothing_and_the_pool_works(
        engine: AsyncEngine):
    """A request cancelled while its statement runs (a client gone, a timeout): the
    statement's transaction does not commit, and the one writer connection serves the next."""
    import asyncio

    slow = ("INSERT INTO notes (title, n) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
            "SELECT x + 1 FROM c WHERE x < 3000000) SELECT 'n' || x, x FROM c")

    async def victim() -> None:
        async with engine.begin() as conn:
            await conn.execute(text(slow))

    task = asyncio.create_task(victim())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with engine.begin() as conn:
        assert await conn.scalar(select(func.count()).select_from(notes)) == 0
        await conn.execute(insert(notes).values(title="after", n=1))
    async with read_only_session(engine) as session:
        assert (await session.execute(select(notes.c.title))).scalars().all() == ["after"]
