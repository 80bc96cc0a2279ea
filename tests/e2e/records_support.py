"""Helpers for the patients and records end-to-end tests: practitioners made through the
SDK (TOTP enabled, so the gateway's second-factor rule holds), the `ecrin` CLI in a
subprocess, raw SQL on a service's database (to play a malicious operator), dumps."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pyotp
from ecrin_client import EcrinClient, Patients, Profile, Records
from ecrin_client.kine import RecordMetadata, SessionNote
from sqlalchemy.engine import make_url

PASSPHRASE = "records e2e passphrase"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Practitioner:
    """An account on one device (its ``ECRIN_HOME``), signed in with a verified TOTP."""

    server: str
    home: Path
    email: str
    account_id: str

    def ecrin(self, *args: str, stdin: str | None = None, timeout: float = 120) -> Run:
        env = {"PATH": "/usr/bin:/bin", "ECRIN_HOME": str(self.home),
               "ECRIN_SERVER": self.server, "ECRIN_KDF_PROFILE": "insecure-test",
               "ECRIN_PASSPHRASE": PASSPHRASE}
        done = subprocess.run([sys.executable, "-m", "ecrin_client", *args],  # noqa: S603
                              input=stdin, capture_output=True, text=True, env=env,
                              timeout=timeout)
        return Run(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, stdin: str | None = None) -> Any:
        run = self.ecrin(*args, "--json", stdin=stdin)
        assert run.code == 0, f"ecrin {' '.join(args)} exited {run.code}: {run.stderr}{run.stdout}"
        return run.json()

    def client(self, transport: httpx.AsyncBaseTransport | None = None) -> EcrinClient:
        return EcrinClient(self.server, Profile(self.home), transport=transport)

    async def unlocked(self, client: EcrinClient) -> tuple[Records, Patients]:
        records = Records(client, await client.unlock(PASSPHRASE))
        return records, Patients(records)


async def pin_as_listed(client: EcrinClient, account_id: str) -> None:
    """Pin ``account_id`` at the fingerprint its directory entry shows now, as a user who
    compared it out of band would (the trust rule: only pinned keys are sealed to)."""
    client.pin(account_id, (await client.get_directory(account_id)).fingerprint_hex())


async def new_account(server: str, home: Path, role: str) -> Practitioner:
    """An account of any role on its own device, signed in with a verified TOTP."""
    email = f"{role}-{uuid.uuid4().hex[:10]}@example.fr"
    async with EcrinClient(server, Profile(home)) as client:
        account, _ = await client.signup(email, PASSPHRASE, role)
        await client.login(email, PASSPHRASE)
        enrolment = await client.enable_totp()
        await client.confirm_totp(pyotp.TOTP(enrolment.secret).now())
    return Practitioner(server, home, email, account.account_id)


async def new_practitioner(server: str, home: Path) -> Practitioner:
    return await new_account(server, home, "practitioner")


def session_note_meta(title: str, content: bytes) -> RecordMetadata:
    """Metadata of a session note of ``content``, dated now."""
    return RecordMetadata(title=title, kind="session-note", content_type="application/json",
                          size=len(content), created_at=datetime.now(UTC))


def session_note(text: str) -> bytes:
    return SessionNote(date=date(2026, 3, 2), acts=["AMK 7.5"], pain=3, notes=text).to_bytes()


def practitioner(server: str, home: Path) -> Practitioner:
    return asyncio.run(new_practitioner(server, home))


class ServiceDatabase:
    """Raw SQL on one service's database, SQLite or PostgreSQL (``?`` placeholders)."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.postgres = self.url.get_backend_name() == "postgresql"

    def _params(self, params: tuple[Any, ...]) -> tuple[Any, ...]:
        if self.postgres:
            return params
        return tuple(p.hex if isinstance(p, uuid.UUID) else p for p in params)

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return self._run(sql, self._params(params), fetch=True)

    def execute(self, sql: str, *params: Any) -> None:
        self._run(sql, self._params(params), fetch=False)

    def _run(self, sql: str, params: tuple[Any, ...], *, fetch: bool) -> list[tuple[Any, ...]]:
        if not self.postgres:
            with sqlite3.connect(self.url.database or "", timeout=30) as conn:
                cursor = conn.execute(sql, params)
                return [tuple(r) for r in cursor.fetchall()] if fetch else []
        import asyncpg

        index = iter(range(1, 1000))
        pg_sql = "".join(f"${next(index)}" if c == "?" else c for c in sql)

        async def go() -> list[tuple[Any, ...]]:
            conn = await asyncpg.connect(host=self.url.host, port=self.url.port or 5432,
                                         user=self.url.username, password=self.url.password,
                                         database=self.url.database)
            try:
                if fetch:
                    return [tuple(r) for r in await conn.fetch(pg_sql, *params)]
                await conn.execute(pg_sql, *params)
                return []
            finally:
                await conn.close()

        from tests.support.databases import in_thread

        result: list[tuple[Any, ...]] = in_thread(asyncio.run, go())
        return result


def content_files(stack: Any) -> list[Path]:
    """The rows of large documents the records API keeps as files (its content directory)."""
    return [p for p in (stack.state / "records-content").rglob("*") if p.is_file()]


def drop_content_row(stack: Any, db: ServiceDatabase, upload_id: Any, seq: int) -> None:
    """Delete one row of a stored upload, where the records API keeps it: a file of its
    content directory, or a ``content_chunks`` row."""
    upload = uuid.UUID(str(upload_id))
    (in_files,), = db.rows("SELECT in_files FROM content_uploads WHERE id = ?", upload_id)
    if in_files:
        (stack.state / "records-content" / upload.hex[:2] / str(upload) / f"{seq:08d}").unlink()
    else:
        db.execute("DELETE FROM content_chunks WHERE upload_id = ? AND seq = ?", upload_id, seq)


def database_dumps(stack: Any) -> list[bytes]:
    """Every SQLite file (with -wal/-shm/-journal), or a pg_dump of every PostgreSQL one,
    and every file of the records API's content directory: all that the servers store."""
    dumps: list[bytes] = []
    for url in stack.database_urls.values():
        parsed = make_url(url)
        if parsed.get_backend_name() == "postgresql":
            assert shutil.which("pg_dump"), "pg_dump is needed to dump the PostgreSQL databases"
            plain = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
            dumps.append(subprocess.run(["pg_dump", "--no-owner", plain],  # noqa: S607 (a fixed argv; the tool is found on PATH)
                                        capture_output=True, check=True).stdout)
    for path in stack.state.rglob("*"):
        if path.is_file() and (path.suffix == ".db" or path.name.endswith(
                ("-wal", "-journal", "-shm"))):
            dumps.append(path.read_bytes())
    dumps.extend(path.read_bytes() for path in content_files(stack))
    assert dumps
    return dumps


def logs(stack: Any) -> list[bytes]:
    found = [p.read_bytes() for p in Path(stack.log_dir).rglob("*") if p.is_file()]
    assert found, "the stack wrote no log"
    return found
