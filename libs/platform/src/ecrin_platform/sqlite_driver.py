"""SQLAlchemy's aiosqlite driver, one trip to the connection's thread per statement.

aiosqlite runs each SQLite connection in a thread of its own, and SQLAlchemy's adapter
makes four trips there for every statement: open a cursor, execute, fetch the rows, close
the cursor. Each trip is a queue hand-off to the thread and a wake-up of the event loop
through its self-pipe, and together they cost more CPU than the SQL itself: the records API
spent 2-3 ms more per request on SQLite than on PostgreSQL, the gateway 4 ms more per login
(docs/performance.md, round 13). Here the cursor is opened, the statement run, its rows
fetched and the cursor closed in one function run on the connection's thread.

What it changes is only where that work runs: the statements, their order on the
connection (the adapter's lock still serialises them), transactions, errors and results
are SQLAlchemy's and SQLite's own. Server-side cursors (streamed results) keep the
adapter's own cursor. It relies on two private members of ``aiosqlite.Connection``
(``_conn``, the ``sqlite3`` connection, and ``_execute``, which runs a function on its
thread), pinned by the lock file; ``tests/platform/test_sqlite_driver.py`` fails if they go.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT

_T = TypeVar("_T")
_Outcome = tuple[Any, list[Any] | None, int, Any]


class _OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor whose ``execute`` is one function on the connection's thread. It holds no
    ``sqlite3`` cursor between statements (the adapter's ``_cursor`` slot stays empty): its
    description, row count, last row id and rows are kept from the statement's run."""

    __slots__ = ("_arraysize", "_described", "_lastrowid_value", "_rowcount_value")

    def __init__(self, adapt_connection: Any) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._described: Any = None
        self._rowcount_value = -1
        self._lastrowid_value: Any = None  # sqlite3's: None before any INSERT
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._described

    @property
    def rowcount(self) -> int:
        return self._rowcount_value

    @property
    def lastrowid(self) -> int:
        return self._lastrowid_value

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _async_soft_close(self) -> None:
        """Nothing stays open between statements."""

    def close(self) -> None:
        self._rows.clear()

    async def _on_thread(self, work: Callable[[sqlite3.Cursor], _T]) -> _T:
        connection = cast(aiosqlite.Connection, self._connection)
        database = connection._conn  # raises ValueError once closed, as aiosqlite does

        def run() -> _T:
            cursor = database.cursor()
            try:
                return work(cursor)
            finally:
                cursor.close()

        async with self._adapt_connection._execute_mutex:
            result: _T = await connection._execute(run)
            return result

    def _keep(self, outcome: _Outcome) -> None:
        self._described, rows, self._rowcount_value, self._lastrowid_value = outcome
        if rows is not None:
            self._rows = collections.deque(rows)

    async def _execute_async(self, operation: Any, parameters: Any) -> None:
        def work(cursor: sqlite3.Cursor) -> _Outcome:
            cursor.execute(operation, () if parameters is None else parameters)
            description = cursor.description
            rows = cursor.fetchall() if description else None
            return description, rows, cursor.rowcount, cursor.lastrowid

        self._keep(await self._on_thread(work))

    async def _executemany_async(self, operation: Any, seq_of_parameters: Sequence[Any]
                                 ) -> None:
        def work(cursor: sqlite3.Cursor) -> _Outcome:
            cursor.executemany(operation, seq_of_parameters)
            return cursor.description, None, cursor.rowcount, cursor.lastrowid

        self._keep(await self._on_thread(work))


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = _OneTripCursor


class _DBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        adapted = super().connect(*arg, **kw)
        return _Connection(self, adapted._connection)


def dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """The DBAPI module to give ``create_async_engine(..., module=...)`` for
    ``sqlite+aiosqlite://`` URLs."""
    return _DBAPI(aiosqlite, sqlite3)
