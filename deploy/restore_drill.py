"""`make restore-drill`: back up the four databases as production does (a physical base backup
and the WAL archive), lose them, recover them to a point in time, start the services on the
recovered data and read every record back through the `ecrin` CLI. A backup that was never
restored is a hope.

    uv run --frozen python deploy/restore_drill.py [--patients 2] [--notes 2] [--keep DIR]

1. Four private PostgreSQL instances, one per service's database as in production (one
   CloudNativePG Cluster each): initdb'd in a temporary folder, run as the `postgres` OS user,
   WAL archived by `archive_command` to a folder per instance (deploy/pg_instance.py). The four
   services on them (real processes, the test profile's cheap Argon2id).
2. Through the CLI: a practitioner (TOTP enrolled) writes, for each patient, notes and a
   document; a parent accepts an invitation to the first patient and uploads a letter.
3. `pg_basebackup -X stream` of each instance while the services run, checked by
   `pg_verifybackup`.
4. More writes through the CLI (a note per patient, a new patient with a note and a
   document): they exist only in the archived WAL. Every record is read back (the snapshot
   "at the target"); the target time is taken; then writes that must be lost (a new patient,
   a note on the first one).
5. The disaster: the services stop, each instance is killed and its data directory deleted.
6. Point-in-time recovery of each instance into a fresh data directory: the base backup,
   `restore_command` from the archive, `recovery_target_time` (the same for the four, as the
   runbook asks), promotion; then the services start on the recovered data with the same keys
   (the key files are not in the databases: they are Secrets, backed up apart).
7. Through the CLI again, from the same devices: the patient list, the record lists and every
   record decrypted are byte-identical to the snapshot at the target; the writes after the
   target are absent (not listed, `record get` exits 4); the parent reads what it was
   granted, and only that.

Production does the same with CloudNativePG (Barman: base backups and WAL in the object
store; `bootstrap.recovery` with a `recoveryTarget`): docs/deploy.md, runbook. What the drill
proves, and no operator tool does, is that the services, started on recovered data, serve
every record to the devices that wrote it.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
from pg_instance import Instance, PostgresError, unavailable  # deploy/, beside this script

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


def start(state: Path, urls: dict[str, str]) -> Stack:
    stack = Stack(state=state, database_urls=dict(urls), ports={s: free_port() for s in SERVICES},
                  metrics_ports={s: free_port() for s in SERVICES}, extra_env=STACK_ENV,
                  log_dir=state / "logs")
    stack.migrate()
    for service in SERVICES:
        stack.start(service)
    stack.wait_ready(timeout=180)  # 2 cores shared with other work: 60 s is not always enough
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


def write_note(kine: Device, file_id: str, text: str) -> str:
    return str(kine.ecrin("record", "note", file_id, "--kind", "session-note", "--notes", text,
                          "--pain", "3")["record_id"])


def write_after_base(kine: Device, files: Path, written: dict[str, Any]) -> None:
    """Writes after the base backup, before the target: only the archived WAL holds them. A
    note per patient, and a new patient with a note and a document."""
    for file_id, patient in list(written["files"].items()):
        text = f"after the base backup {uuid.uuid4().hex}"
        patient["records"][write_note(kine, file_id, text)] = {"note": text}
    patient = kine.ecrin("patient", "create", "--name", "Patient Drill WAL", "--birth-date",
                         "2015-06-01")
    file_id = patient["file_id"]
    text = f"a note only the WAL holds {uuid.uuid4().hex}"
    records: dict[str, Any] = {write_note(kine, file_id, text): {"note": text}}
    document = files / "scan-wal.pdf"
    document.write_bytes(b"%PDF-1.4\n" + os.urandom(4096) + b"\n%%EOF\n")
    made = kine.ecrin("record", "add", file_id, str(document), "--kind", "prescription",
                      "--title", "Ordonnance WAL")
    records[made["record_id"]] = {"document": document.read_bytes().hex(), "shared": True}
    written["files"][file_id] = {"name": "Patient Drill WAL", "records": records}


def write_after_target(kine: Device, written: dict[str, Any]) -> dict[str, Any]:
    """Writes after the target time: the recovery must leave them out."""
    first = next(iter(written["files"]))
    lost_note = write_note(kine, first, f"after the target {uuid.uuid4().hex}")
    patient = kine.ecrin("patient", "create", "--name", "Patient Drill Lost", "--birth-date",
                         "2016-02-02")
    return {"note": (first, lost_note), "patient": patient["file_id"],
            "patient_note": write_note(kine, patient["file_id"], "lost with its patient")}


def check_lost(kine: Device, lost: dict[str, Any], after: dict[str, Any]) -> None:
    """What was written after the target is gone, and the CLI says so (exit 4)."""
    file_id, note = lost["note"]
    if lost["patient"] in after["patients"]:
        raise DrillFailed("the patient created after the target is back")
    if note in after[file_id]["records"]:
        raise DrillFailed("the note written after the target is back")
    kine.ecrin("record", "get", file_id, note, expect=4)
    kine.ecrin("record", "list", lost["patient"], expect=4)


def in_parallel(instances: dict[str, Instance], action: str, *args: Any) -> dict[str, Any]:
    """``instance.action(*args)`` on the four instances at once (they are independent)."""
    with ThreadPoolExecutor(max_workers=len(instances)) as pool:
        futures = {s: pool.submit(getattr(i, action), *args) for s, i in instances.items()}
        return {s: f.result() for s, f in futures.items()}


def drill(patients: int, notes: int, keep: Path | None) -> dict[str, Any]:
    work = keep or Path(tempfile.mkdtemp(prefix="ecrin-drill-"))
    state, homes, pg = work / "state", work / "homes", work / "pg"
    for folder in (state, homes / "files"):
        folder.mkdir(parents=True, exist_ok=True)
    pg.mkdir(mode=0o711, exist_ok=True)
    work.chmod(0o711)  # the server's user (postgres) crosses it to reach pg/, nothing more
    databases = {s: f"ecrin_{s.replace('-', '_')}" for s in SERVICES}
    instances = {s: Instance(s, pg / s) for s in SERVICES}
    figures: dict[str, Any] = {}
    stack = None
    try:
        t = time.monotonic()
        in_parallel(instances, "init")
        in_parallel(instances, "start")
        urls = {s: instances[s].create_database(databases[s]) for s in SERVICES}
        stack = start(state, urls)
        figures["setup_s"] = round(time.monotonic() - t, 1)
        kine = Device("kine", homes / "kine", stack.url("gateway"))
        parent = Device("parent", homes / "parent", stack.url("gateway"))
        t = time.monotonic()
        written = write_story(kine, parent, homes / "files", patients, notes)
        figures["write_s"] = round(time.monotonic() - t, 1)

        t = time.monotonic()
        backups = in_parallel(instances, "base_backup")
        figures["base_backup_s"] = round(time.monotonic() - t, 1)
        figures["base_backup_bytes"] = {s: b["bytes"] for s, b in backups.items()}
        figures["pg_verifybackup"] = sorted({str(b["verified"]) for b in backups.values()})

        t = time.monotonic()
        write_after_base(kine, homes / "files", written)
        figures["records"] = sum(len(f["records"]) for f in written["files"].values())
        at_target = snapshot(kine, parent, homes / "files", written, "target")
        check_written(at_target, written)
        time.sleep(1)  # the target falls between two commits, a second from each
        target = instances["gateway"].psql("SELECT clock_timestamp()")
        figures["target_time"] = target
        time.sleep(1)
        lost = write_after_target(kine, written)
        for instance in instances.values():
            # A commit after the target in every instance's archive, as a live cluster's
            # always has: PostgreSQL refuses to end a recovery short of its target.
            instance.psql("SELECT txid_current()")
        in_parallel(instances, "archive_now")
        figures["after_base_s"] = round(time.monotonic() - t, 1)

        stack.stop_all()  # the disaster: the servers die, their data directories are lost
        stack = None
        in_parallel(instances, "destroy")

        t = time.monotonic()
        recovered = in_parallel(instances, "recover", target)
        figures["recovery_s"] = round(time.monotonic() - t, 1)
        figures["wal_segments_from_archive"] = {
            s: r["segments_from_archive"] for s, r in recovered.items()}
        figures["stopped_before_commit_at"] = {
            s: r["stopped_before_commit_at"] for s, r in recovered.items()}
        t = time.monotonic()
        stack = start(state, {s: instances[s].url(databases[s]) for s in SERVICES})
        kine.server = parent.server = stack.url("gateway")
        figures["restart_s"] = round(time.monotonic() - t, 1)

        t = time.monotonic()
        after = snapshot(kine, parent, homes / "files", written, "after")
        if after != at_target:
            raise DrillFailed("what the devices read after the recovery differs from what "
                              "they read at the target time")
        check_written(after, written)
        check_lost(kine, lost, after)
        # The parent still reads only what the grant gives: a clinical note stays refused.
        first = next(iter(written["files"]))
        clinical = next(r for r, e in written["files"][first]["records"].items() if "note" in e)
        parent.ecrin("record", "get", first, clinical, expect=4)
        figures["records_on_server"] = sum(len(after[f]["records"]) for f in written["files"])
        figures["reads_checked"] = sum(len(after[f]["content"]) for f in written["files"])
        figures["lost_after_target"] = 3
        figures["read_s"] = round(time.monotonic() - t, 1)
        return figures
    finally:
        if stack is not None:
            stack.stop_all()
        for instance in instances.values():
            try:
                instance.stop("immediate")
            except (PostgresError, OSError, subprocess.SubprocessError):
                pass  # already gone
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="restore-drill", description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=2)
    parser.add_argument("--notes", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None,
                        help="work in this folder and keep it (server logs, WAL archives)")
    args = parser.parse_args(argv)
    reason = unavailable()
    if reason is not None:
        print(f"restore drill cannot run here: {reason}", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        figures = drill(args.patients, args.notes, args.keep)
    except (DrillFailed, PostgresError, subprocess.CalledProcessError, RuntimeError,
            TimeoutError) as exc:
        print(f"restore drill FAILED: {exc}", file=sys.stderr)
        if args.keep is None:
            print("(run it again with --keep DIR to keep the services' and servers' logs)",
                  file=sys.stderr)
        return 1
    figures["total_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(figures, indent=2))
    print(f"restore drill passed: {figures['records_on_server']} records "
          f"({figures['records']} written by the drill, some only in the archived WAL) "
          "backed up with pg_basebackup, the instances destroyed, recovered to "
          f"{figures['target_time']}, {figures['reads_checked']} reads decrypted identical "
          f"through the CLI, the {figures['lost_after_target']} writes after the target absent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
