"""The four services for one benchmark run: started on SQLite or on throwaway PostgreSQL
databases (through ``bench_records.start``), sampled for peak RSS, and opened for seeding.

Seeding writes rows straight into a service's database with SQLAlchemy Core and the
service's own tables, so that 100 000 records cost seconds rather than an hour of API calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from benchmarks import bench_records
from ecrin_platform.devstack import SERVICES, Stack

POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


class RssSampler:
    """Peak resident set size of each service process (and its children), sampled in a
    thread every ``interval`` seconds while the benchmark runs.

    Listing a process's children scans every process of the machine, so the children are
    listed once per ``children_every`` seconds, not at each sample: forty scans a second
    cost the load generator, which shares the two cores and the GIL with this thread,
    about as much CPU as its own SDK calls."""

    def __init__(self, stack: Stack, interval: float = 0.1,
                 children_every: float = 2.0) -> None:
        self.stack = stack
        self.interval = interval
        self.children_every = children_every
        self.peak: dict[str, int] = {}
        self._procs: dict[str, list[psutil.Process]] = {}
        self._listed = float("-inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _list(self) -> None:
        self._listed = time.monotonic()
        for service, process in self.stack.processes.items():
            try:
                proc = psutil.Process(process.pid)
                self._procs[service] = [proc, *proc.children(recursive=True)]
            except psutil.Error:
                self._procs.pop(service, None)

    def _sample(self) -> None:
        if time.monotonic() - self._listed >= self.children_every:
            self._list()
        for service, procs in self._procs.items():
            rss = 0
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    rss += proc.memory_info().rss
            self.peak[service] = max(self.peak.get(service, 0), rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


@dataclass
class BenchStack:
    backend: str
    stack: Stack
    work: Path
    databases: list[str] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        return self.stack.url("gateway")

    def url(self, service: str) -> str:
        return self.stack.url(service)

    def database_url(self, service: str) -> str:
        return self.stack.database_urls[service]

    @property
    def internal_key(self) -> bytes:
        return self.stack.private_key.read_bytes()

    def restart(self, service: str, **env: str) -> None:
        """Restart one service with extra settings (the others keep running)."""
        self.stack.stop(service)
        self.stack.extra_env.update(env)
        self.stack.start(service)
        self.stack.wait_ready(services=[service])

    @contextlib.asynccontextmanager
    async def database(self, service: str) -> AsyncIterator[AsyncConnection]:
        """A transaction on the service's own database, committed on exit."""
        engine = create_async_engine(self.database_url(service))
        try:
            async with engine.begin() as conn:
                yield conn
            async with engine.connect() as conn:
                # what autovacuum (PostgreSQL) or a periodic ANALYZE (SQLite) would do
                await conn.execute(text("ANALYZE"))
                await conn.commit()
        finally:
            await engine.dispose()


@contextlib.contextmanager
def running_stack(backend: str, postgres: str = POSTGRES_URL) -> Iterator[BenchStack]:
    """The four services on ``backend`` ("sqlite" or "postgres"), stopped and their
    databases dropped on exit."""
    with tempfile.TemporaryDirectory(prefix=f"ecrin-bench-{backend}-") as tmp:
        work = Path(tmp)
        stack, databases = bench_records.start(backend, work,
                                               postgres if backend == "postgres" else None)
        try:
            yield BenchStack(backend, stack, work, databases)
        finally:
            stack.stop_all()
            if databases:
                asyncio.run(bench_records._pg(postgres, [
                    f'DROP DATABASE IF EXISTS "{d}" WITH (FORCE)' for d in databases]))


def server_versions(postgres: str | None = POSTGRES_URL) -> dict[str, Any]:
    import sqlite3

    out: dict[str, Any] = {"sqlite": sqlite3.sqlite_version, "postgresql": "not measured"}
    if postgres is None:
        return out

    async def pg(url: str) -> str:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return str((await conn.execute(text("SHOW server_version"))).scalar())
        finally:
            await engine.dispose()

    try:
        out["postgresql"] = asyncio.run(pg(postgres))
    except Exception as exc:  # noqa: BLE001 (reported, not fatal)
        out["postgresql"] = f"unreachable ({type(exc).__name__})"
    return out


__all__ = ["SERVICES", "BenchStack", "RssSampler", "running_stack", "server_versions"]
