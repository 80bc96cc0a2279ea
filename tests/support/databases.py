"""Per-worker databases, migrated with Alembic: SQLite always, PostgreSQL when given.

``ECRIN_TEST_POSTGRES_URL`` names a PostgreSQL server (an ``postgresql+asyncpg://`` URL to
a database the user may connect to, normally ``postgres``). Each test worker gets its own
database per service, created fresh and migrated to head. With
``ECRIN_TEST_REQUIRE_POSTGRES=1`` (CI) an unreachable server fails the run.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from ecrin_platform.migrations import upgrade_to_head

POSTGRES_URL = os.environ.get("ECRIN_TEST_POSTGRES_URL", "")
#: Set once in the controlling process, inherited by the xdist workers: two test runs on
#: one PostgreSQL server (a developer's and a CI job, say) never touch each other's
#: databases.
RUN_ID = os.environ.setdefault("ECRIN_TEST_RUN_ID", uuid.uuid4().hex[:8])
_created: list[str] = []
REQUIRE_POSTGRES = os.environ.get("ECRIN_TEST_REQUIRE_POSTGRES") == "1"


@dataclass(frozen=True)
class Backend:
    name: str


SQLITE = Backend("sqlite")
POSTGRES = Backend("postgres")


#: For a test that only means something on PostgreSQL (LISTEN/NOTIFY, row locks, two
#: processes on one database): skipped on a developer's machine without a server, never in
#: CI, where ECRIN_TEST_REQUIRE_POSTGRES=1 runs it (and an unset or unreachable server
#: fails the run instead).
needs_postgres = pytest.mark.skipif(not POSTGRES_URL and not REQUIRE_POSTGRES,
                                    reason="needs ECRIN_TEST_POSTGRES_URL")


def available_backends() -> list[Backend]:
    if REQUIRE_POSTGRES and not POSTGRES_URL:
        raise RuntimeError("ECRIN_TEST_REQUIRE_POSTGRES=1 but ECRIN_TEST_POSTGRES_URL is unset")
    return [SQLITE, POSTGRES] if POSTGRES_URL else [SQLITE]


def migrations_of(service: str) -> Path:
    package = {"records-api": "records_api"}.get(service, service)
    module = __import__(f"{package}.app", fromlist=["MIGRATIONS"])
    return module.MIGRATIONS


def run_scoped(name: str) -> str:
    return f"{name}_{RUN_ID}"


async def _recreate_postgres_database(name: str) -> None:
    import asyncpg

    url = make_url(POSTGRES_URL)
    try:
        conn = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username,
                                     password=url.password, database=url.database or "postgres",
                                     timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {url.host}:{url.port} is unreachable: {exc!r}")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
        _created.append(name)
    finally:
        await conn.close()


def postgres_url_for(database: str) -> str:
    return make_url(POSTGRES_URL).set(database=database).render_as_string(hide_password=False)


def provision_database(backend: Backend, service: str, worker: str, tmp: Path) -> str:
    """A fresh database for (service, worker), migrated to head; returns its URL."""
    if backend is POSTGRES or backend.name == "postgres":
        name = run_scoped(f"ecrin_test_{worker}_{service.replace('-', '_')}")
        asyncio.run(_recreate_postgres_database(name))
        url = postgres_url_for(name)
    else:
        path = tmp / f"{worker}-{service}.db"
        path.unlink(missing_ok=True)
        url = f"sqlite+aiosqlite:///{path}"
    upgrade_to_head(migrations_of(service), url)
    return url


def fresh_database(backend: Backend, name: str, tmp: Path) -> str:
    """An empty, unmigrated database, for tests of migrations and readiness."""
    if backend.name == "postgres":
        name = run_scoped(name)
        in_thread(asyncio.run, _recreate_postgres_database(name))
        return postgres_url_for(name)
    path = tmp / f"{name}.db"
    path.unlink(missing_ok=True)
    return f"sqlite+aiosqlite:///{path}"


def in_thread(fn, *args):
    """Runs ``fn`` in a thread of its own: safe to call from inside a running event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


async def _drop_created() -> None:
    import asyncpg

    url = make_url(POSTGRES_URL)
    conn = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username,
                                 password=url.password, database=url.database or "postgres",
                                 timeout=10)
    try:
        for name in _created:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def drop_created_databases() -> None:
    """Best effort, at the end of a worker's session: this run's databases go away."""
    if POSTGRES_URL and _created:
        try:
            in_thread(asyncio.run, _drop_created())
        except Exception:  # noqa: BLE001 - cleanup must never fail the run
            pass


async def _connect(database_url: str) -> Any:
    """An asyncpg connection to the PostgreSQL database at ``database_url``."""
    import asyncpg

    url = make_url(database_url)
    return await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username,
                                 password=url.password, database=url.database, timeout=10)


async def waiting_for_locks(database_url: str, count: int, timeout_s: float = 30.0) -> None:
    """PostgreSQL: returns once ``count`` clients of the database at ``database_url`` wait
    for a lock (a heavy-weight one: a row, a table, an advisory lock), rather than after a
    sleep a slow machine may outlast; fails the test after ``timeout_s``."""
    conn = await _connect(database_url)
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
            if waiting >= count:
                return
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail(f"{waiting} of {count} clients came to wait for a lock")
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def rolled_back(database_url: str) -> int:
    """PostgreSQL: ``pg_stat_database.xact_rollback`` of the database at ``database_url``
    (transactions rolled back, a failed statement's included), read once no other client is
    connected to it: a backend reports its counters before it leaves (the caller disposes
    its engines first), so the figure is complete, where a connected one may report late."""
    conn = await _connect(database_url)
    try:
        for _ in range(200):
            others = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()")
            if not others:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("another client stayed connected to the database")
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        return int(await conn.fetchval(
            "SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()"))
    finally:
        await conn.close()
