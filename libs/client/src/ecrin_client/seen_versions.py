"""The highest version seen of each record and of each file scope's key: rollback marks.

Kept in ``state.db``, an SQLite database in the profile folder (mode 0600), so that each
write updates its own row in place: recording what one create saw costs the same with ten
records seen or a million (``versions.json``, rewritten whole on every write, grew without
bound and made every write slower). Marks only ever rise (``MAX`` in the upsert), also when
two processes of the same profile write at once (SQLite serialises them).

``versions.json`` from an older client is merged in on first use, then removed.

Durability: WAL with ``synchronous=NORMAL``: a commit survives a crash of the process; a
power cut may lose the last marks written, which only lets a server replay a version this
device saw in its last moments once more (nothing is decrypted that does not verify).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from ecrin_client.errors import InvalidInput

FILE_MODE = 0o600
_SCHEMA = "CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, version INTEGER NOT NULL)"
_RAISE = ("INSERT INTO seen (key, version) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
          "SET version = MAX(version, excluded.version) WHERE excluded.version > version")


#: How long a process waits for another to finish turning a new ``state.db`` to WAL.
WAL_WAIT_S = 30.0


def _use_wal(db: sqlite3.Connection) -> None:
    """WAL mode, waiting for the exclusive lock it takes. SQLite answers "database is
    locked" at once, without its busy timeout, when another process holds the database
    while this one asks for the change: two commands of one profile starting together
    on a new ``state.db``. Once the file is in WAL, asking again only reads the mode."""
    deadline = time.monotonic() + WAL_WAIT_S
    pause = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


class SeenVersions:
    """``state.db``'s marks; opened on first use."""

    def __init__(self, path: Path, legacy: Path | None = None) -> None:
        self.path = path
        self.legacy = legacy
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        # The file exists with 0600 before SQLite opens it (its -wal and -shm files take
        # the same mode). Only a file this call creates is opened and closed here: closing
        # any descriptor of a database file drops every POSIX lock this process holds on
        # it, and another connection of this process may hold some (another process would
        # then checkpoint and delete the WAL under it: "disk I/O error").
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            pass
        else:
            os.close(fd)
        os.chmod(self.path, FILE_MODE)
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                 check_same_thread=False)
            _use_wal(db)
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise InvalidInput(f"{self.path} is unreadable ({exc.__class__.__name__}: "
                               f"{exc})") from None
        self._db = db
        self._adopt_legacy(db)
        return db

    def _adopt_legacy(self, db: sqlite3.Connection) -> None:
        """Merge an older client's ``versions.json`` (highest wins), then remove it."""
        if self.legacy is None or not self.legacy.exists():
            return
        try:
            raw = json.loads(self.legacy.read_text("utf-8"))
        except (ValueError, OSError) as exc:
            raise InvalidInput(f"{self.legacy} is unreadable ({exc.__class__.__name__})"
                               ) from None
        marks = {str(k): v for k, v in raw.items() if type(v) is int} if isinstance(
            raw, dict) else {}
        self._raise(db, marks)
        self.legacy.unlink(missing_ok=True)

    @staticmethod
    def _raise(db: sqlite3.Connection, marks: Mapping[str, int]) -> None:
        if not marks:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(_RAISE, list(marks.items()))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def get(self, key: str) -> int:
        with self._lock:
            row = self._connect().execute("SELECT version FROM seen WHERE key = ?",
                                          (key,)).fetchone()
        return int(row[0]) if row else 0

    def all(self) -> dict[str, int]:
        with self._lock:
            rows = self._connect().execute("SELECT key, version FROM seen").fetchall()
        return {str(k): int(v) for k, v in rows}

    def remember(self, marks: Mapping[str, int]) -> None:
        """Raise the marks (never lower them): one transaction for many."""
        with self._lock:
            self._raise(self._connect(), marks)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
