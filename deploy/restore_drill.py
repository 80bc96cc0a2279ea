"""`make restore-drill`: back up the four databases, lose them, restore them, and read every
record back through the `ecrin` CLI. A backup that was never restored is a hope.

    ECRIN_DRILL_POSTGRES_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/postgres \\
        uv run --frozen python deploy/restore_drill.py [--patients 2] [--notes 2]

1. Four fresh PostgreSQL databases; the four services on them (real processes, the test
   profile's cheap Argon2id).
2. Through the CLI: a practitioner (TOTP enrolled) writes, for each patient, notes and a
   document; a parent accepts an invitation to the first patient and uploads a letter.
3. Back up each database with `pg_dump --format=custom` while the services run (an online,
   per-database consistent backup), then stop the services and DROP the four databases.
4. `pg_restore` into four new databases; start the services on them, with the same keys
   (the key files are not in the databases: they are Secrets, backed up apart).
5. Through the CLI again, from the same devices: the patient list, every record of every
   patient decrypted and compared with what was written; the parent reads what it was
   granted, and only that.

Production backs up with CloudNativePG (Barman: base backups and WAL to the object store)
and restores by point-in-time recovery into a new Cluster (docs/deploy.md, runbook). This
machine's PostgreSQL admits no replication connection, so the drill uses the logical tool
of the same major version; what it proves is the part no operator tool proves: that the
services, started on restored data, serve every record to the devices that wrote it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
from sqlalchemy.engine import make_url

from ecrin_platform.devstack import SERVICES, Stack, free_port

PASSPHRASE = "restore drill passphrase, not for real use"  # noqa: S105 (a drill account)
STACK_ENV = {
    "ECRIN_GATEWAY_MIN_KDF_OPSLIMIT": "1",
    "ECRIN_GATEWAY_MIN_KDF_MEMLIMIT": "8192",
    "ECRIN_GATEWAY_AUTH_RATE_LIMIT_PER_IP": "100000/minute",
    "ECRIN_GATEWAY_SIGNUP_RATE_LIMIT_PER_IP": "100000/minute",
    "ECRIN_GATEWAY_SIGNUP_RATE_LIMIT_PER_EMAIL": "100000/minute",
    "ECRIN_KDF_PROFILE": "insecure-test",
}


class DrillFailed(RuntimeError):
    pass


@dataclass
class Device:
    """One person's device: `ecrin` with its own ECRIN_HOME (keys pinned there)."""

    name: str
    home: Path
    server: str

    def ecrin(self, *args: str, expect: int = 0) -> Any:
        env = {"PATH": "/usr/bin:/bin", "ECRIN_HOME": str(self.home),
               "ECRIN_SERVER": self.server, "ECRIN_KDF_PROFILE": "insecure-test",
               "ECRIN_PASSPHRASE": PASSPHRASE, "COLUMNS": "120"}
        done = subprocess.run([sys.executable, "-m", "ecrin_client", *args, "--json"],  # noqa: S603, S607 (fixed tools on PATH, no shell)
                              capture_output=True, text=True, env=env, timeout=120)
        if done.returncode != expect:
            raise DrillFailed(f"[{self.name}] ecrin {' '.join(args)} exited {done.returncode}"
                              f" (expected {expect}):\n{done.stderr}{done.stdout}")
        return json.loads(done.stdout) if expect == 0 and done.stdout.strip() else None


class Postgres:
    """The server the drill uses: psql, pg_dump and pg_restore against it."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.env = {**os.environ, "PGPASSWORD": self.url.password or ""}
        self.args = ["-h", self.url.host or "127.0.0.1", "-p", str(self.url.port or 5432),
                     "-U", self.url.username or "postgres"]

    def sql(self, statement: str) -> None:
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *self.args, "-d",  # noqa: S603, S607 (fixed tools on PATH, no shell)
                        self.url.database or "postgres", "-c", statement],
                       check=True, env=self.env, capture_output=True, text=True)

    def url_for(self, database: str) -> str:
        return self.url.set(database=database).render_as_string(hide_password=False)

    def dump(self, database: str, path: Path) -> None:
        subprocess.run(["pg_dump", *self.args, "--format=custom", "--no-owner",  # noqa: S603, S607 (fixed tools on PATH, no shell)
                        f"--file={path}", database], check=True, env=self.env)

    def restore(self, database: str, path: Path) -> None:
        subprocess.run(["pg_restore", *self.args, "--no-owner", "--exit-on-error",  # noqa: S603, S607 (fixed tools on PATH, no shell)
                        f"--dbname={database}", str(path)], check=True, env=self.env)


def start(state: Path, urls: dict[str, str]) -> Stack:
    stack = Stack(state=state, database_urls=dict(urls), ports={s: free_port() for s in SERVICES},
                  metrics_ports={s: free_port() for s in SERVICES}, extra_env=STACK_ENV,
                  log_dir=state / "logs")
    stack.migrate()
    stack.start_all()
    return stack


def write_story(kine: Device, parent: Device, files: Path, patients: int,
                notes: int) -> dict[str, Any]:
    """What the devices write; returns what must be read back."""
    out = kine.ecrin("account", "create", "--email", "kine@drill.example.fr", "--role",
                     "practitioner")
    enrolment = kine.ecrin("2fa", "enable", "--no-confirm")
    kine.ecrin("2fa", "confirm", pyotp.TOTP(enrolment["secret"]).now())
    written: dict[str, Any] = {"kine": out["account"]["account_id"], "files": {}}
    today = dt.date.today()
    for p in range(patients):
        birth = dt.date(today.year - 10 - p, 1, 15)
        patient = kine.ecrin("patient", "create", "--name", f"Patient Drill {p}",
                             "--birth-date", birth.isoformat())
        file_id = patient["file_id"]
        records: dict[str, Any] = {}
        for n in range(notes):
            text = f"drill note {p}.{n} {uuid.uuid4().hex}"
            made = kine.ecrin("record", "note", file_id, "--kind", "session-note",
                              "--notes", text, "--pain", str(n % 10))
            records[made["record_id"]] = {"note": text}
        document = files / f"scan-{p}.pdf"
        document.write_bytes(b"%PDF-1.4\n" + os.urandom(4096) + b"\n%%EOF\n")
        made = kine.ecrin("record", "add", file_id, str(document), "--kind", "prescription",
                          "--title", f"Ordonnance {p}")
        records[made["record_id"]] = {"document": document.read_bytes().hex(),
                                      "shared": True}
        written["files"][file_id] = {"name": f"Patient Drill {p}", "records": records}
    first = next(iter(written["files"]))
    invitation = kine.ecrin("share", "invite", first, "--as", "parent")
    parent.ecrin("account", "create", "--email", "parent@drill.example.fr", "--role",
                 "representative")
    parent.ecrin("share", "accept", invitation["code"])
    letter = files / "letter.pdf"
    letter.write_bytes(b"%PDF-1.4\nparent's letter " + os.urandom(512) + b"\n%%EOF\n")
    made = parent.ecrin("record", "add", first, str(letter), "--kind", "letter", "--title",
                        "Certificat")
    written["files"][first]["records"][made["record_id"]] = {
        "document": letter.read_bytes().hex(), "shared": True}
    return written


def snapshot(kine: Device, parent: Device, files: Path, written: dict[str, Any],
             tag: str) -> dict[str, Any]:
    """Everything the devices read: the patient list, each file's record list, and every
    record decrypted by the practitioner (and, on the shared file, what the parent may
    read). Taken before the backup and after the restore; the two must be equal."""
    seen: dict[str, Any] = {"patients": sorted(p["file_id"] for p in kine.ecrin("patient",
                                                                                 "list"))}
    first = next(iter(written["files"]))
    for file_id in written["files"]:
        records = sorted(r["record_id"] for r in kine.ecrin("record", "list", file_id))
        seen[file_id] = {"records": records, "content": {}}
        readers = [kine, parent] if file_id == first else [kine]
        for device in readers:
            readable = records if device is kine else sorted(
                r["record_id"] for r in device.ecrin("record", "list", file_id))
            for record_id in readable:
                target = files / f"{tag}-{device.name}-{record_id}"
                got = device.ecrin("record", "get", file_id, record_id, "-o", str(target))
                content = target.read_bytes().hex() if target.exists() else json.dumps(
                    got, sort_keys=True, ensure_ascii=False)
                seen[file_id]["content"][f"{device.name}/{record_id}"] = content
    return seen


def readable_text(content: str) -> str:
    """A note's content as read back: the file `-o` wrote (hex here), else the JSON."""
    try:
        return bytes.fromhex(content).decode("utf-8", errors="replace")
    except ValueError:
        return content


def check_written(seen: dict[str, Any], written: dict[str, Any]) -> None:
    """What the devices wrote is among what they read back, byte for byte."""
    for file_id, patient in written["files"].items():
        for record_id, expected in patient["records"].items():
            content = seen[file_id]["content"][f"kine/{record_id}"]
            if "document" in expected and content != expected["document"]:
                raise DrillFailed(f"{record_id}: the document read back differs")
            if "note" in expected and expected["note"] not in readable_text(content):
                raise DrillFailed(f"{record_id}: the note read back differs")


def drill(postgres_url: str, patients: int, notes: int, keep: Path | None) -> dict[str, Any]:
    pg = Postgres(postgres_url)
    run = uuid.uuid4().hex[:8]
    originals = {s: f"ecrin_drill_{run}_{s.replace('-', '_')}" for s in SERVICES}
    restored = {s: f"{name}_restored" for s, name in originals.items()}
    work = keep or Path(tempfile.mkdtemp(prefix="ecrin-drill-"))
    state, homes, dumps = work / "state", work / "homes", work / "dumps"
    for folder in (state, homes / "files", dumps):
        folder.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"run": run}
    stack = None
    try:
        for name in originals.values():
            pg.sql(f'CREATE DATABASE "{name}"')
        stack = start(state, {s: pg.url_for(n) for s, n in originals.items()})
        kine = Device("kine", homes / "kine", stack.url("gateway"))
        parent = Device("parent", homes / "parent", stack.url("gateway"))
        t = time.monotonic()
        written = write_story(kine, parent, homes / "files", patients, notes)
        figures["records"] = sum(len(f["records"]) for f in written["files"].values())
        figures["write_s"] = round(time.monotonic() - t, 1)
        before = snapshot(kine, parent, homes / "files", written, "before")
        check_written(before, written)

        t = time.monotonic()
        for service, name in originals.items():
            pg.dump(name, dumps / f"{service}.dump")
        figures["backup_s"] = round(time.monotonic() - t, 2)
        figures["backup_bytes"] = {s: (dumps / f"{s}.dump").stat().st_size for s in SERVICES}
        stack.stop_all()
        stack = None
        for name in originals.values():  # the disaster
            pg.sql(f'DROP DATABASE "{name}" WITH (FORCE)')

        t = time.monotonic()
        for service, name in restored.items():
            pg.sql(f'CREATE DATABASE "{name}"')
            pg.restore(name, dumps / f"{service}.dump")
        figures["restore_s"] = round(time.monotonic() - t, 2)
        stack = start(state, {s: pg.url_for(n) for s, n in restored.items()})
        kine.server = parent.server = stack.url("gateway")
        t = time.monotonic()
        after = snapshot(kine, parent, homes / "files", written, "after")
        if after != before:
            raise DrillFailed("what the devices read after the restore differs from before")
        check_written(after, written)
        # The parent still reads only what the grant gives: a clinical note stays refused.
        first = next(iter(written["files"]))
        clinical = next(r for r, e in written["files"][first]["records"].items() if "note" in e)
        parent.ecrin("record", "get", first, clinical, expect=4)
        figures["records_on_server"] = sum(len(after[f]["records"]) for f in written["files"])
        figures["reads_checked"] = sum(len(after[f]["content"]) for f in written["files"])
        figures["read_s"] = round(time.monotonic() - t, 1)
        return figures
    finally:
        if stack is not None:
            stack.stop_all()
        for name in [*originals.values(), *restored.values()]:
            pg.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="restore-drill", description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default=os.environ.get(
        "ECRIN_DRILL_POSTGRES_URL", os.environ.get(
            "ECRIN_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")))
    parser.add_argument("--patients", type=int, default=2)
    parser.add_argument("--notes", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="keep the work folder here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        figures = drill(args.postgres, args.patients, args.notes, args.keep)
    except (DrillFailed, subprocess.CalledProcessError, RuntimeError, TimeoutError) as exc:
        print(f"restore drill FAILED: {exc}", file=sys.stderr)
        return 1
    figures["total_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(figures, indent=2))
    print(f"restore drill passed: {figures['records_on_server']} records "
          f"({figures['records']} written by the drill) backed up, the databases dropped, "
          f"restored, and {figures['reads_checked']} reads decrypted identical to before "
          "through the CLI")
    return 0


if __name__ == "__main__":
    sys.exit(main())
