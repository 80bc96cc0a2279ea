"""Migrations under a lock: two `<service> migrate` runs at once (two pods starting together
on a first deploy) both succeed, and the second does nothing the first has done.

Each run is the service's real command line in a process of its own, against a fresh empty
database (PostgreSQL when ECRIN_TEST_POSTGRES_URL is set, SQLite always).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time

import pytest
from sqlalchemy.engine import make_url

from ecrin_platform.migrations import MIGRATION_LOCK_KEY, head_revisions
from tests.support.databases import Backend, fresh_database, in_thread, migrations_of

pytestmark = pytest.mark.timeout(180)

SERVICES = {"gateway": ("gateway", "ECRIN_GATEWAY_DATABASE_URL"),
            "records-api": ("records_api", "ECRIN_RECORDS_DATABASE_URL"),
            "kms": ("kms", "ECRIN_KMS_DATABASE_URL"),
            "sharing": ("sharing", "ECRIN_SHARING_DATABASE_URL")}


def start_migrate(service: str, url: str) -> subprocess.Popen[str]:
    package, variable = SERVICES[service]
    env = {**os.environ, variable: url}
    return subprocess.Popen([sys.executable, "-m", package, "migrate"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


async def _postgres_query(url: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    import asyncpg

    u = make_url(url)
    conn = await asyncpg.connect(host=u.host, port=u.port or 5432, user=u.username,
                                 password=u.password, database=u.database, timeout=10)
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


def versions(backend: Backend, url: str) -> list[str]:
    """Rows of alembic_version (empty if the table does not exist yet)."""
    if backend.name == "postgres":
        exists = in_thread(asyncio.run, _postgres_query(
            url, "SELECT to_regclass('alembic_version') IS NOT NULL"))[0][0]
        if not exists:
            return []
        rows = in_thread(asyncio.run,
                         _postgres_query(url, "SELECT version_num FROM alembic_version"))
        return sorted(str(r[0]) for r in rows)
    path = make_url(url).database
    assert path
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "alembic_version" not in tables:
            return []
        return sorted(r[0] for r in conn.execute("SELECT version_num FROM alembic_version"))


def table_count(backend: Backend, url: str) -> int:
    if backend.name == "postgres":
        rows = in_thread(asyncio.run, _postgres_query(
            url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
        return int(rows[0][0])  # type: ignore[call-overload]  # psql output parsed in a test
    path = make_url(url).database
    assert path
    with sqlite3.connect(path) as conn:
        return int(conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0])


class TestConcurrentMigrations:
    @pytest.mark.parametrize("service", list(SERVICES))
    def test_two_runs_at_once_both_succeed_and_reach_head(self, backend, tmp_path, service):
        url = fresh_database(backend, f"ecrin_lock_{service.replace('-', '_')}", tmp_path)
        runs = [start_migrate(service, url) for _ in range(2)]
        outputs = [run.communicate(timeout=120)[0] for run in runs]
        assert [run.returncode for run in runs] == [0, 0], "\n".join(outputs)[-3000:]
        assert versions(backend, url) == sorted(head_revisions(migrations_of(service)))


class TestLockIsHeld:
    def test_a_run_waits_for_the_lock_and_then_migrates(self, backend, tmp_path):
        """While something else holds the migration lock, a run changes nothing; it
        migrates as soon as the lock is released."""
        url = fresh_database(backend, "ecrin_lock_wait", tmp_path)
        if backend.name == "postgres":
            holder = _PostgresLockHolder(url)
        else:
            holder = _SqliteWriterHolder(make_url(url).database or "")
        with holder:
            run = start_migrate("kms", url)
            time.sleep(3)
            assert run.poll() is None, run.communicate()[0][-2000:]
            assert versions(backend, url) == []
            assert table_count(backend, url) == 0
        output = run.communicate(timeout=120)[0]
        assert run.returncode == 0, output[-3000:]
        assert versions(backend, url) == sorted(head_revisions(migrations_of("kms")))


class _PostgresLockHolder:
    """Holds the migration advisory lock from a connection of its own (psql), as a first
    migration run would."""

    def __init__(self, url: str) -> None:
        u = make_url(url)
        self.args = ["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
                     "-h", u.host or "127.0.0.1", "-p", str(u.port or 5432),
                     "-U", u.username or "postgres", u.database or ""]
        self.env = {**os.environ, "PGPASSWORD": u.password or ""}

    def __enter__(self) -> None:
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=self.env)
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY});\n"
                              "SELECT 'held';\n")
        self.proc.stdin.flush()
        # Tuples only: an empty line for the lock (void), then "held" once it is taken.
        while (line := self.proc.stdout.readline()) and line.strip() != "held":
            pass
        assert line.strip() == "held"

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()  # psql exits, its session ends, the lock is released
        self.proc.wait(timeout=30)


class _SqliteWriterHolder:
    """SQLite's equivalent: a writer transaction (the service's engine begins every
    migration with BEGIN IMMEDIATE and waits up to 30 s for it)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> None:
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, *exc: object) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()
