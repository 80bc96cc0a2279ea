"""Alembic, driven from code: each service keeps its own script directory."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, async_engine_from_config

from ecrin_platform.db import create_engine, read_only_engine

#: Key of the PostgreSQL advisory lock every migration run takes first (transaction-level:
#: released at its commit or rollback). Each service has its own database, so one key is
#: enough; the number is the first 8 bytes of BLAKE2b("ecrin.alembic"). A run waiting for
#: it shows in ``pg_locks`` as ``locktype = 'advisory'`` with ``granted = false``.
MIGRATION_LOCK_KEY = int.from_bytes(
    hashlib.blake2b(b"ecrin.alembic", digest_size=8).digest(), "big", signed=True)


def alembic_config(script_location: Path, database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    # Alembic's ini interpolation treats '%' specially.
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade_to_head(script_location: Path, database_url: str) -> None:
    """Blocking: run from a thread or a CLI, never on the event loop."""
    command.upgrade(alembic_config(script_location, database_url), "head")


def head_revisions(script_location: Path) -> set[str]:
    return set(ScriptDirectory(str(script_location)).get_heads())


async def current_revisions(engine: AsyncEngine) -> set[str]:
    async with read_only_engine(engine).connect() as conn:
        return await conn.run_sync(lambda c: set(MigrationContext.configure(c).get_current_heads()))


def run_env(target_metadata: MetaData) -> None:
    """Body of every service's ``env.py``: online migrations over an async engine."""
    from alembic import context

    config = context.config
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None

    def do_run(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=connection.dialect.name == "sqlite",
                          compare_type=True)
        if connection.dialect.name == "postgresql":
            # Two pods (or a Job and a pod) starting at once on the first deploy: the second
            # waits here, then reads the version the first one committed and does nothing.
            # The lock is taken before Alembic reads alembic_version, in the one transaction
            # that runs every migration (PostgreSQL DDL is transactional), and is released
            # by its commit or rollback, a crash included.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        with _sqlite_file_lock(connection), context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = create_engine(url) if url.startswith("sqlite") else async_engine_from_config(
            config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
            poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
            await connection.commit()
        await engine.dispose()

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(run_async())


@contextlib.contextmanager
def _sqlite_file_lock(connection: Connection) -> Iterator[None]:
    """SQLite has no advisory lock and pysqlite commits before DDL: two runs at once on one
    file (two services started together on the embedded database) take turns on an
    exclusive lock of a file beside the database instead."""
    database = connection.engine.url.database if connection.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    with open(f"{database}.migrate-lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
