"""Crashes under load (threat 5 of DESIGN.md): while concurrent clients write, kill -9 each
service in turn and restart PostgreSQL; then every acknowledged write must be readable (and
decryptable), nothing half-created visible, no 500 seen, and no retry with the same
idempotency key may have made a duplicate.

``python -m tests.adversarial.faults --backend postgres --seconds 60`` (``make faults``)
starts its own stack on its own throwaway databases. PostgreSQL is the machine's shared
server: it is restarted only with ``--restart-postgres``, the outage is a few seconds, and
it is brought back up in a ``finally`` whatever happens.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ecrin_e2ee import (
    EncryptedRecord,
    KdfParams,
    KeyringEntry,
    Permission,
    RecordHeader,
    Relationship,
    Scope,
    ScopeKey,
    SearchKey,
    create_account,
    encrypt_record,
    open_entry,
    open_record,
)
from ecrin_e2ee.keyring import seal_entry
from tests.support.users import ApiUser, b64, sign_up, signup_payload, unb64

RETRYABLE = {502, 503, 504}


@dataclass
class Tally:
    attempted: collections.Counter = field(default_factory=collections.Counter)
    acknowledged: collections.Counter = field(default_factory=collections.Counter)
    verified: collections.Counter = field(default_factory=collections.Counter)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    retry_after_missing: int = 0
    connection_errors: int = 0
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, response: httpx.Response | None) -> None:
        with self.lock:
            if response is None:
                self.connection_errors += 1
                return
            if response.status_code >= 500:
                self.statuses[response.status_code] += 1
                if response.status_code == 503 and "retry-after" not in response.headers:
                    self.retry_after_missing += 1

    def report(self) -> dict[str, Any]:
        return {"attempted": dict(self.attempted), "acknowledged": dict(self.acknowledged),
                "verified": dict(self.verified), "5xx": dict(self.statuses),
                "503_without_retry_after": self.retry_after_missing,
                "connection_errors": self.connection_errors, "retries": self.retries}


class Client:
    """Retries what a careful client retries: 502/503/504 and dropped connections, with the
    same body and the same idempotency key, until ``patience`` runs out."""

    def __init__(self, gateway: str, tally: Tally, patience: float = 45.0) -> None:
        self.gateway = gateway
        self.tally = tally
        self.patience = patience

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        deadline = time.monotonic() + self.patience
        first = True
        while time.monotonic() < deadline:
            if not first:
                with self.tally.lock:
                    self.tally.retries += 1
            first = False
            try:
                response = httpx.request(method, self.gateway + path, timeout=20, **kwargs)
            except httpx.TransportError:
                self.tally.note(None)
                time.sleep(0.3)
                continue
            self.tally.note(response)
            if response.status_code in RETRYABLE:
                time.sleep(min(float(response.headers.get("retry-after", "1") or 1), 2.0))
                continue
            return response
        return None


@dataclass
class Written:
    accounts: list[tuple[str, str]] = field(default_factory=list)        # (email, passphrase)
    files: dict[str, dict[Scope, ScopeKey]] = field(default_factory=dict)  # file id -> keys
    file_owner: dict[str, ApiUser] = field(default_factory=dict)
    attempted_files: set[str] = field(default_factory=set)
    records: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # record -> (file, plain)
    attempted_records: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def write_signup(client: Client, written: Written, tally: Tally) -> None:
    account_id = uuid.uuid4()
    email, passphrase = f"fault-{account_id.hex[:12]}@example.fr", "fault passphrase"
    setup = create_account(account_id, passphrase, KdfParams.insecure_for_tests())
    tally.attempted["signup"] += 1
    response = client.call("POST", "/v1/auth/signup",
                           json=signup_payload(setup, email, "patient"),
                           headers={"Idempotency-Key": uuid.uuid4().hex})
    if response is not None and response.status_code == 201:
        tally.acknowledged["signup"] += 1
        with written.lock:
            written.accounts.append((email, passphrase))


def write_file(client: Client, owner: ApiUser, written: Written, tally: Tally) -> None:
    file_id = uuid.uuid4()
    token = SearchKey.for_owner(owner.identity).name_token(f"patient {file_id.hex[:6]}")
    tally.attempted["file"] += 1
    with written.lock:
        written.attempted_files.add(str(file_id))
    made = client.call("POST", "/v1/files", headers=owner.headers,
                       json={"file_id": str(file_id), "search_tokens": [token]})
    if made is None or made.status_code not in (200, 201):
        return
    keys = {scope: ScopeKey.generate(file_id, scope) for scope in Scope}
    entries = [seal_entry(k, owner.identity.public_identity(), relationship=Relationship.OWNER,
                          permissions={Permission.READ, Permission.APPEND},
                          granter=owner.identity).to_json() for k in keys.values()]
    stored = client.call("PUT", f"/v1/keyrings/{file_id}/initial", headers=owner.headers,
                         json={"entries": entries})
    if stored is not None and stored.status_code in (200, 201):
        tally.acknowledged["file"] += 1
        with written.lock:
            written.files[str(file_id)] = keys
            written.file_owner[str(file_id)] = owner


def write_record(client: Client, owner: ApiUser, written: Written, tally: Tally) -> None:
    with written.lock:
        mine = [f for f, o in written.file_owner.items() if o is owner]
    if not mine:
        return
    file_id = random.choice(mine)  # noqa: S311
    keys = written.files[file_id]
    record_id = uuid.uuid4()
    plain = f"séance {record_id}".encode() * random.randint(1, 400)  # noqa: S311
    encrypted = encrypt_record(plain, {"kind": "note"}, file_id=uuid.UUID(file_id),
                               record_id=record_id, record_version=1,
                               scope_key=keys[Scope.CLINICAL], author=owner.identity)
    content = b"".join(encrypted.chunks)
    body = {"record_id": str(record_id), "file_id": file_id, "scope": "clinical",
            "header": b64(encrypted.header.to_bytes()),
            "metadata_ciphertext": b64(encrypted.metadata_ciphertext),
            "content_length": len(content)}
    tally.attempted["record"] += 1
    with written.lock:
        written.attempted_records.add(str(record_id))
    key = uuid.uuid4().hex
    created = client.call("POST", "/v1/records", json=body,
                          headers={**owner.headers, "Idempotency-Key": key})
    if created is None or created.status_code != 201:
        return
    uploaded = client.call("PUT", f"/v1/records/{record_id}/versions/1/content", content=content,
                           headers={**owner.headers, "Content-Type": "application/octet-stream"})
    if uploaded is not None and uploaded.status_code == 409:
        # A retry of an upload whose first attempt committed but lost its answer.
        got = client.call("GET", f"/v1/records/{record_id}", headers=owner.headers)
        uploaded = got if got is not None and got.status_code == 200 else uploaded
    if uploaded is not None and uploaded.status_code in (200, 204):
        tally.acknowledged["record"] += 1
        with written.lock:
            written.records[str(record_id)] = (file_id, plain)


def writer(client: Client, owner: ApiUser, written: Written, tally: Tally,
           stop: threading.Event) -> None:
    while not stop.is_set():
        choice = random.random()  # noqa: S311
        try:
            if choice < 0.2:
                write_signup(client, written, tally)
            elif choice < 0.45:
                write_file(client, owner, written, tally)
            else:
                write_record(client, owner, written, tally)
        except Exception as exc:  # noqa: BLE001  (counted: the run must not die silently)
            with tally.lock:
                tally.statuses[f"client-error {type(exc).__name__}"] += 1


def chaos(stack: Any, restart_postgres: bool, log: list[str], pause: float) -> None:
    for service in ("records-api", "kms", "sharing", "gateway"):
        time.sleep(pause)
        stack.stop(service, sig=signal.SIGKILL)
        log.append(f"{time.strftime('%X')} kill -9 {service}")
        time.sleep(1.0)
        stack.start(service)
        stack.wait_ready(services=[service])
        log.append(f"{time.strftime('%X')} {service} back")
    if restart_postgres:
        time.sleep(pause)
        restart_shared_postgres(log)


def restart_shared_postgres(log: list[str]) -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"]
    try:
        log.append(f"{time.strftime('%X')} restart PostgreSQL {version}")
        subprocess.run(command, check=True, timeout=60)  # noqa: S603
    finally:
        ensure_postgres_up(version)
        log.append(f"{time.strftime('%X')} PostgreSQL up")


def ensure_postgres_up(version: str) -> None:
    for _ in range(60):
        if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0:  # noqa: S607 (a fixed argv; the tool is found on PATH)
            return
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main",  # noqa: S607 (a fixed argv; the tool is found on PATH)
                        "start"], timeout=60)
        time.sleep(1)
    raise RuntimeError("PostgreSQL did not come back")


def verify(gateway: str, written: Written, tally: Tally, owners: list[ApiUser]) -> list[str]:
    problems: list[str] = []
    for email, passphrase in written.accounts:
        user = ApiUser(gateway, email, passphrase, "patient", uuid.uuid4(), None, "")  # type: ignore[arg-type]
        response = user.login()
        if response.status_code == 200:
            tally.verified["signup"] += 1
        else:
            problems.append(f"acknowledged account {email} cannot log in: {response.status_code}")
    for owner in owners:
        owner.login().raise_for_status()
        listed: list[str] = []
        cursor = None
        while True:
            page = owner.get("/v1/files", params={"cursor": cursor} if cursor else None).json()
            listed += [f["id"] for f in page["items"]]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        mine = {f for f, o in written.file_owner.items() if o is owner}
        if missing := mine - set(listed):
            problems.append(f"acknowledged files missing from the listing: {sorted(missing)}")
        for file_id in listed:
            entries = owner.get(f"/v1/keyrings/{file_id}/entries")
            if entries.status_code != 200:
                problems.append(f"listed file {file_id} has no keyring (half-created)")
                continue
            if file_id not in written.files:
                continue  # written, not acknowledged (answer lost): complete, and allowed
            keys = {k.scope: k.to_bound_bytes() for k in (
                open_entry(KeyringEntry.from_json(e), owner.identity,
                           owner.identity.public_identity()) for e in entries.json()["entries"])}
            if keys != {s: k.to_bound_bytes() for s, k in written.files[file_id].items()}:
                problems.append(f"file {file_id}: keyring differs from what was written")
            else:
                tally.verified["file"] += 1
            problems += verify_records(owner, file_id, written, tally)
    return problems


def verify_records(owner: ApiUser, file_id: str, written: Written, tally: Tally) -> list[str]:
    problems = []
    items, cursor = [], None
    while True:
        params = {"file_id": file_id, "limit": 200, **({"cursor": cursor} if cursor else {})}
        page = owner.get("/v1/records", params=params).json()
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    ids = [i["record_id"] for i in items]
    if len(ids) != len(set(ids)):
        problems.append(f"file {file_id}: duplicate records {ids}")
    acknowledged = {r for r, (f, _) in written.records.items() if f == file_id}
    if missing := acknowledged - set(ids):
        problems.append(f"file {file_id}: acknowledged records missing {sorted(missing)}")
    if unknown := set(ids) - written.attempted_records:
        problems.append(f"file {file_id}: records nobody wrote {sorted(unknown)}")
    keys = written.files[file_id]
    for item in items:
        record_id = item["record_id"]
        content = owner.get(f"/v1/records/{record_id}/versions/1/content")
        header = RecordHeader.from_bytes(unb64(item["version"]["header"]))
        try:
            opened = open_record(
                EncryptedRecord(header, unb64(item["version"]["metadata_ciphertext"]),
                                _chunks(content.content)),
                scope_key=keys[Scope.CLINICAL], author=owner.identity.public_identity())
        except Exception as exc:  # noqa: BLE001
            problems.append(f"record {record_id} does not decrypt: {type(exc).__name__}")
            continue
        if record_id in written.records and opened.content != written.records[record_id][1]:
            problems.append(f"record {record_id}: other plaintext")
        elif record_id in written.records:
            tally.verified["record"] += 1
    return problems


def _chunks(content: bytes) -> tuple[bytes, ...]:
    size = 65536 + 17
    return tuple(content[i:i + size] for i in range(0, len(content), size))


def run(stack: Any, *, seconds: float, writers: int, restart_postgres: bool) -> dict[str, Any]:
    gateway = stack.url("gateway")
    tally, written, log = Tally(), Written(), []
    owners = [sign_up(gateway) for _ in range(writers)]
    stop = threading.Event()
    threads = [threading.Thread(target=writer, args=(Client(gateway, tally), owner, written,
                                                     tally, stop), daemon=True)
               for owner in owners]
    for thread in threads:
        thread.start()
    steps = 4 + (1 if restart_postgres else 0)
    pause = max(0.5, (seconds - steps * 3) / (steps + 1))
    try:
        chaos(stack, restart_postgres, log, pause)
        time.sleep(pause)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        for service in ("gateway", "records-api", "kms", "sharing"):
            if service not in stack.processes:
                stack.start(service)
        stack.wait_ready()
    problems = verify(gateway, written, tally, owners)
    return {"log": log, "counts": tally.report(), "problems": problems}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="postgres", choices=["sqlite", "postgres"])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--writers", type=int, default=6)
    parser.add_argument("--restart-postgres", action="store_true")
    args = parser.parse_args()
    from tests.support.stack import start_stack

    if args.restart_postgres and (args.backend != "postgres" or not shutil.which("pg_ctlcluster")):
        parser.error("--restart-postgres needs --backend postgres and pg_ctlcluster")
    with tempfile.TemporaryDirectory(prefix="ecrin-faults-") as tmp:
        stack = start_stack(args.backend, Path(tmp) / "state", "faults")
        try:
            result = run(stack, seconds=args.seconds, writers=args.writers,
                         restart_postgres=args.restart_postgres)
        finally:
            stack.stop_all()
    print(json.dumps(result, indent=2, default=str))
    counts = result["counts"]
    failed = (result["problems"] or counts["503_without_retry_after"]
              or any(str(code).startswith(("500", "client-error")) for code in counts["5xx"]))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
