"""A private PostgreSQL instance for the restore drill (deploy/restore_drill.py).

The machine's shared PostgreSQL admits no replication connection, so the drill runs its own:
`initdb` in a temporary folder, WAL archived by `archive_command` to a folder (as Barman ships
WAL to the object store for CloudNativePG), a base backup by `pg_basebackup -X stream`,
checked by `pg_verifybackup`, and a point-in-time recovery into a fresh data directory with
`restore_command` and `recovery_target_time` (what CloudNativePG's `bootstrap.recovery` does
with `barman-cloud-wal-restore`). initdb refuses to run as root, so as root every server-side
command runs as the `postgres` OS user (`runuser`); as another user, as that user.

Connections: the drill (superuser `postgres`) over the instance's own unix socket, in a
folder only the server's user can open (trust, replication included); the services over
127.0.0.1 with a role and a random password per database (scram-sha-256), as in production.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SERVER_USER = "postgres"


def pg_bin() -> Path | None:
    """The newest PostgreSQL server binaries (ECRIN_PG_BIN overrides), or None."""
    if os.environ.get("ECRIN_PG_BIN"):
        return Path(os.environ["ECRIN_PG_BIN"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                   key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0)
    return Path(found[-1]) if found else None


def server_user_prefix() -> list[str]:
    """How to run a command as the server's OS user: `runuser -u postgres --` as root."""
    if os.geteuid() != 0:
        return []
    return [shutil.which("runuser") or "/usr/sbin/runuser", "-u", SERVER_USER, "--"]


def unavailable() -> str | None:
    """None when a private instance can be made here, else why not."""
    binaries = pg_bin()
    needed = ("initdb", "pg_ctl", "psql", "pg_basebackup", "pg_verifybackup")
    if binaries is None or not all((binaries / b).exists() for b in needed):
        return (f"no PostgreSQL server binaries ({', '.join(needed)}) under "
                "/usr/lib/postgresql/*/bin (ECRIN_PG_BIN)")
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "root without runuser: cannot run initdb as another user"
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"root, and no `{SERVER_USER}` OS user to run the server as (initdb refuses)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresError(RuntimeError):
    pass


@dataclass
class Instance:
    """One PostgreSQL instance under ``root`` (owned by the server's user):
    ``data/`` and, once recovered, ``data-recovered/``; ``wal-archive/`` and
    ``wal-archive-recovered/`` (a recovered instance archives apart, as CloudNativePG wants an
    empty archive for a recovered cluster); ``base/`` the base backup; ``socket/`` its unix
    socket; ``server*.log`` its server logs."""

    name: str
    root: Path
    port: int = field(default_factory=free_port)
    data: Path = field(init=False)
    archive: Path = field(init=False)
    passwords: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bin = pg_bin() or Path("/usr/lib/postgresql/15/bin")
        self.data = self.root / "data"
        self.archive = self.root / "wal-archive"
        self.socket = self.root / "socket"
        self.base = self.root / "base"
        self.log = self.root / "server.log"

    # -- commands -------------------------------------------------------------------------
    def run(self, *args: str | Path, timeout: float = 120) -> str:
        """A server-side command, as the server's user; its stdout."""
        command = [*server_user_prefix(), *(str(a) for a in args)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,  # noqa: S603 (fixed binaries, no shell)
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
                                   "TZ": "UTC"})
        if done.returncode != 0:
            raise PostgresError(f"{self.name}: {Path(str(args[0])).name} exited "
                                f"{done.returncode}: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self.run(self.bin / "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", self.socket,
                        "-p", str(self.port), "-U", "postgres", "-d", database,
                        "-c", sql).strip()

    # -- life cycle -----------------------------------------------------------------------
    def init(self) -> None:
        """initdb, then the settings the drill relies on: WAL archiving on, replication over
        the private socket, the services' roles over loopback with scram."""
        for folder in (self.root, self.socket, self.archive):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.chown(folder)
        self.run(self.bin / "initdb", "-D", self.data, "-U", "postgres", "-E", "UTF8",
                 "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=reject", "--no-sync")
        (self.data / "pg_hba.conf").write_text(
            "# the drill's superuser over the private socket (the folder is 0700)\n"
            "local all         postgres trust\n"
            "local replication postgres trust\n"
            "# the services: their own role and database, a password, loopback only\n"
            "host  sameuser    all      127.0.0.1/32 scram-sha-256\n")
        self.configure(self.data / "postgresql.conf", {
            "listen_addresses": "'127.0.0.1'",
            "wal_level": "replica",
            "archive_mode": "on",
            "max_wal_senders": "4",
            "shared_buffers": "'16MB'",
            "max_connections": "60",
            # no fsync: the drill proves the backup's content and the recovery, not what
            # survives a power cut (the WAL is still written, archived and replayed)
            "fsync": "off",
            "timezone": "'UTC'",
            "log_timezone": "'UTC'",
        })
        self.set_local(self.data, self.archive)

    def set_local(self, data: Path, archive: Path) -> None:
        """What differs between the original and the recovered instance: port, socket and
        the archive its WAL goes to (postgresql.auto.conf: read last, so it wins)."""
        self.configure(data / "postgresql.auto.conf", {
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket}'",
            # copied under a temporary name, then renamed: a segment is in the archive
            # whole or not at all (barman-cloud-wal-archive uploads the same way)
            "archive_command": f"'test ! -f {archive}/%f && cp %p {archive}/%f.part"
                               f" && mv {archive}/%f.part {archive}/%f'",
        })

    def configure(self, path: Path, settings: dict[str, str]) -> None:
        lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
        with path.open("a") as conf:
            conf.write(lines)
        self.chown(path)

    def chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, SERVER_USER, SERVER_USER)

    def start(self) -> None:
        self.run(self.bin / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "120",
                 "start", timeout=150)

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self.run(self.bin / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def create_database(self, database: str) -> str:
        """A database owned by a role of the same name with a random password; its URL."""
        password = secrets.token_hex(16)
        self.passwords[database] = password
        self.psql(f"CREATE ROLE \"{database}\" LOGIN PASSWORD '{password}'")
        self.psql(f'CREATE DATABASE "{database}" OWNER "{database}"')
        return self.url(database)

    def url(self, database: str) -> str:
        return (f"postgresql+asyncpg://{database}:{self.passwords[database]}"
                f"@127.0.0.1:{self.port}/{database}")

    # -- backup ---------------------------------------------------------------------------
    def base_backup(self) -> dict[str, object]:
        """`pg_basebackup -X stream` (plain format, with its manifest), then
        `pg_verifybackup`: every file's checksum and the WAL the backup needs."""
        self.run(self.bin / "pg_basebackup", "-h", self.socket, "-p", str(self.port),
                 "-U", "postgres", "-D", self.base, "-X", "stream", "-c", "fast",
                 "--manifest-checksums=SHA256", "--no-sync", timeout=300)
        verified = self.run(self.bin / "pg_verifybackup", self.base, timeout=300)
        return {"bytes": sum(f.stat().st_size for f in self.base.rglob("*") if f.is_file()),
                "verified": verified.strip()}

    def archive_now(self, timeout: float = 60) -> str:
        """Close the current WAL segment and wait until the archiver has copied it: what a
        live cluster's archive holds a few minutes later (CloudNativePG's default
        `archive_timeout` is 5 min)."""
        segment = self.psql("SELECT pg_walfile_name(pg_switch_wal())")
        deadline = time.monotonic() + timeout
        while not (self.archive / segment).exists():
            if time.monotonic() > deadline:
                raise PostgresError(f"{self.name}: WAL segment {segment} not archived")
            time.sleep(0.1)
        return segment

    def destroy(self) -> None:
        """The disaster: the server dies and its data directory is gone."""
        self.stop("immediate")
        shutil.rmtree(self.data)

    # -- recovery -------------------------------------------------------------------------
    def recover(self, target_time: str, timeout: float = 120) -> dict[str, object]:
        """Point-in-time recovery into a fresh data directory: the base backup copied,
        `restore_command` fetching WAL from the archive, `recovery_target_time`, promotion
        at the target; its WAL then goes to a new, empty archive. Returns what the server
        logged about it."""
        self.data = self.root / "data-recovered"
        self.archive = self.root / "wal-archive-recovered"
        self.log = self.root / "server-recovered.log"
        self.port = free_port()
        self.archive.mkdir(mode=0o700)
        self.chown(self.archive)
        self.run("cp", "-a", self.base, self.data)
        original_archive = self.root / "wal-archive"
        self.configure(self.data / "postgresql.auto.conf", {
            "restore_command": f"'cp {original_archive}/%f %p'",
            "recovery_target_time": f"'{target_time}'",
            "recovery_target_action": "'promote'",
        })
        self.set_local(self.data, self.archive)
        (self.data / "recovery.signal").touch()
        self.chown(self.data / "recovery.signal")
        self.start()
        deadline = time.monotonic() + timeout
        while self.psql("SELECT pg_is_in_recovery()") != "f":  # hot standby until promoted
            if time.monotonic() > deadline:
                raise PostgresError(f"{self.name}: still in recovery after {timeout:.0f} s")
            time.sleep(0.1)
        log = self.log.read_text(errors="replace")
        stop = re.search(r"recovery stopping before (?:commit|abort) of transaction \d+, "
                         r"time (\S+ \S+)", log)
        if stop is None:
            raise PostgresError(f"{self.name}: the log shows no stop at the target:\n{log[-2000:]}")
        return {"segments_from_archive": len(re.findall(r"restored log file", log)),
                "stopped_before_commit_at": stop.group(1)}
