"""Records through the real gateway: latency of small records, throughput of a large one.

    uv run python benchmarks/bench_records.py [--postgres URL | --no-postgres] [--ops N]

For each backend (SQLite always; PostgreSQL at ``--postgres``, default
``postgresql+asyncpg://postgres@127.0.0.1:5432/postgres``, on throwaway databases created
and dropped here) the four services are started as processes on free ports, a
practitioner signs up through the SDK, and then:

* **create 10 KiB**: ``Records.create`` of a 10 KiB note (encrypt, ``POST /v1/records``,
  ``PUT .../content``), p50 and p99 per operation, at 1 and at 16 concurrent clients (each
  its own ``EcrinClient`` and connection pool);
* **download 10 KiB**: ``Records.read`` of those records (``GET`` the record, stream the
  content, verify and decrypt), same concurrency levels;
* **100 MiB document**: ``Records.create`` from a file then ``Records.download`` to a file,
  in MB/s of plaintext (client encryption and decryption included), with the upload split
  into its encryption to the spool file and its sending, and the client's CPU seconds.

Latencies are what a client sees, cryptography included (about 0.3 ms of it per 10 KiB
record). The profile folder sits on /dev/shm when it exists so that the client's own
fsync of its version marks does not blur the server figures. Prints a markdown table and
writes ``bench-results/bench_records-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ecrin_client import EcrinClient, Profile, Records
from ecrin_client.kine import PatientIdentity, RecordMetadata
from ecrin_client.loop import run as run_loop
from ecrin_client.patients import Patients
from sqlalchemy.engine import make_url

from ecrin_platform.devstack import SERVICES, Stack, free_port

SMALL = 10 * 1024
LARGE = 100 << 20
CONCURRENCY = (1, 16)
PASSPHRASE = "benchmark passphrase 2026"  # noqa: S105 (a throwaway account)
ENV = {
    "ECRIN_GATEWAY_MIN_KDF_OPSLIMIT": "1",
    "ECRIN_GATEWAY_MIN_KDF_MEMLIMIT": "8192",
    "ECRIN_GATEWAY_AUTH_RATE_LIMIT_PER_IP": "100000/minute",
    "ECRIN_GATEWAY_AUTH_RATE_LIMIT_PER_ACCOUNT": "100000/minute",  # bench_login
    # Every benchmark account signs up from 127.0.0.1; the sign-up hold (which evens out
    # its timing against enumeration) is not what these figures measure.
    "ECRIN_GATEWAY_SIGNUP_RATE_LIMIT_PER_IP": "100000/minute",
    "ECRIN_GATEWAY_SIGNUP_RATE_LIMIT_PER_EMAIL": "100000/minute",
    "ECRIN_GATEWAY_SIGNUP_MIN_DURATION_S": "0",
    "ECRIN_GATEWAY_REQUIRE_PRACTITIONER_2FA": "false",
    "ECRIN_KDF_PROFILE": "insecure-test",
    # The records API serves up to 64 concurrent clients here: a pool sized for that
    # keeps connections open instead of opening and closing them under every burst
    # (docs/performance.md). The other services keep the defaults.
    "ECRIN_RECORDS_DB_POOL_SIZE": "24",
    "ECRIN_RECORDS_DB_MAX_OVERFLOW": "16",
}
os.environ["ECRIN_KDF_PROFILE"] = "insecure-test"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def _pg(url: str, statements: list[str]) -> None:
    import asyncpg

    u = make_url(url)
    conn = await asyncpg.connect(host=u.host, port=u.port or 5432, user=u.username,
                                 password=u.password, database=u.database or "postgres")
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def metadata(title: str, size: int, kind: str = "session-note",
             content_type: str = "application/json") -> RecordMetadata:
    return RecordMetadata(title=title, kind=kind, content_type=content_type, size=size,
                          created_at=datetime.now(UTC))


class Phases:
    """A progress sink that notes when each phase of a transfer began (``Records``'
    "Encrypting", "Uploading", "Downloading and decrypting")."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}

    def begin(self, label: str, total: int) -> None:
        self.started[label] = time.perf_counter()

    def advance(self, amount: int) -> None:
        pass


def write_large(path: Path) -> None:
    with open(path, "wb") as f:
        f.write(b"%PDF-1.7\n")
        for _ in range(LARGE // (1 << 20)):
            f.write(os.urandom(1 << 20))
        f.truncate(LARGE)


async def timed_ops(n_clients: int, ops_per_client: int, identity: Any, home: Path,
                    server: str, op: Any) -> tuple[list[float], float]:
    """Run ``op(records, client_index, op_index)`` on ``n_clients`` concurrent clients."""
    latencies: list[float] = []

    async def worker(index: int) -> None:
        async with EcrinClient(server, Profile(home)) as client:
            records = Records(client, identity)
            for i in range(ops_per_client):
                started = time.perf_counter()
                await op(records, index, i)
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(n_clients)))
    return latencies, time.perf_counter() - started


async def run_backend(name: str, server: str, work: Path, ops: int) -> dict[str, Any]:
    home = work / "profile"
    email = f"bench-{uuid.uuid4().hex[:8]}@example.fr"
    async with EcrinClient(server, Profile(home)) as client:
        await client.signup(email, PASSPHRASE, "practitioner")
        await client.login(email, PASSPHRASE)
        identity = await client.unlock(PASSPHRASE)
        patient = await Patients(Records(client, identity)).create(PatientIdentity(
            name="Patient Benchmark", birth_date=datetime(1980, 1, 1).date()))
    content = secrets.token_bytes(SMALL)
    results: dict[str, Any] = {"backend": name}
    written: dict[tuple[int, int], str] = {}

    async def create(records: Records, c: int, i: int) -> None:
        info = await records.create(patient.file_id, "clinical",
                                    metadata(f"n{c}-{i}", SMALL), content)
        written[(c, i)] = info.record_id

    async def download(records: Records, c: int, i: int) -> None:
        _, data = await records.read(written[(c, i)])
        assert data == content

    for clients in CONCURRENCY:
        per_client = max(1, ops // clients) if clients > 1 else ops

        # one warm-up op per client (scope keys, directory, connections) not counted
        await timed_ops(clients, 1, identity, home, server, create)
        lat_c, wall_c = await timed_ops(clients, per_client, identity, home, server, create)
        lat_d, wall_d = await timed_ops(clients, per_client, identity, home, server, download)
        for label, lat, wall in (("create", lat_c, wall_c), ("download", lat_d, wall_d)):
            results[f"{label}_c{clients}"] = {
                "ops": len(lat), "p50_ms": round(percentile(lat, 0.5) * 1000, 2),
                "p99_ms": round(percentile(lat, 0.99) * 1000, 2),
                "mean_ms": round(statistics.mean(lat) * 1000, 2),
                "throughput_ops_s": round(len(lat) / wall, 1)}
    source, back = work / "large.pdf", work / "large-back.pdf"
    await asyncio.to_thread(write_large, source)
    phases = Phases()
    async with EcrinClient(server, Profile(home)) as client:
        records = Records(client, identity, spool_dir=work, progress=phases)
        started, cpu_started = time.perf_counter(), time.process_time()
        info = await records.create(patient.file_id, "clinical", metadata(
            "large", LARGE, "imaging", "application/pdf"), source)
        uploaded, cpu_uploaded = time.perf_counter(), time.process_time()
        await records.download(info.record_id, back)
        done, cpu_done = time.perf_counter(), time.process_time()
    assert back.stat().st_size == LARGE
    results["large_100mib"] = {
        "upload_mb_s": round(LARGE / 1e6 / (uploaded - started), 1),
        "download_mb_s": round(LARGE / 1e6 / (done - uploaded), 1),
        "upload_s": round(uploaded - started, 2), "download_s": round(done - uploaded, 2),
        # The upload's two hops apart: encryption to the spool file on the device, then
        # the create and the streamed PUT (gateway, records API, database).
        "encrypt_s": round(phases.started["Uploading"] - phases.started["Encrypting"], 2),
        "send_s": round(uploaded - phases.started["Uploading"], 2),
        "client_cpu_up_s": round(cpu_uploaded - cpu_started, 2),
        "client_cpu_down_s": round(cpu_done - cpu_uploaded, 2)}
    source.unlink()  # noqa: ASYNC240 (one unlink of a local temp file, after the timing)
    back.unlink()  # noqa: ASYNC240 (one unlink of a local temp file, after the timing)
    return results


def start(name: str, work: Path, postgres: str | None) -> tuple[Stack, list[str]]:
    urls: dict[str, str] = {}
    dropped: list[str] = []
    if name == "postgres":
        assert postgres is not None
        tag = uuid.uuid4().hex[:8]
        for service in SERVICES:
            database = f"ecrin_bench_{tag}_{service.replace('-', '_')}"
            asyncio.run(_pg(postgres, [f'CREATE DATABASE "{database}"']))
            urls[service] = make_url(postgres).set(database=database).render_as_string(
                hide_password=False)
            dropped.append(database)
    stack = Stack(state=work / "state", database_urls=urls,
                  ports={s: free_port() for s in SERVICES}, extra_env=ENV,
                  log_dir=work / "state" / "logs")
    stack.migrate()
    stack.start_all()
    return stack, dropped


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| backend | operation | clients | ops | p50 ms | p99 ms | ops/s |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        for label in ("create", "download"):
            for clients in CONCURRENCY:
                m = r[f"{label}_c{clients}"]
                lines.append(f"| {r['backend']} | {label} 10 KiB | {clients} | {m['ops']} | "
                             f"{m['p50_ms']} | {m['p99_ms']} | {m['throughput_ops_s']} |")
    lines += ["", "| backend | 100 MiB upload MB/s | of which: encrypt s, send s | "
              "100 MiB download MB/s | client CPU s up, down |", "|---|---|---|---|---|"]
    for r in results:
        m = r["large_100mib"]
        lines.append(f"| {r['backend']} | {m['upload_mb_s']} | {m['encrypt_s']}, "
                     f"{m['send_s']} | {m['download_mb_s']} | {m['client_cpu_up_s']}, "
                     f"{m['client_cpu_down_s']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432/"
                        "postgres", help="PostgreSQL server for throwaway databases")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--ops", type=int, default=200,
                        help="operations per measurement (split among the clients)")
    args = parser.parse_args()
    backends = ["sqlite"] + ([] if args.no_postgres else ["postgres"])
    results = []
    shm = Path("/dev/shm")  # noqa: S108 (a private TemporaryDirectory is made inside)
    for name in backends:
        with tempfile.TemporaryDirectory(prefix=f"ecrin-bench-{name}-") as tmp, \
                tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as fast:
            work = Path(tmp)
            stack, databases = start(name, work, args.postgres)
            try:
                (work / "profile").symlink_to(Path(fast), target_is_directory=True)
                print(f"{name}: running...", file=sys.stderr, flush=True)
                results.append(run_loop(run_backend(name, stack.url("gateway"), work,
                                                       args.ops)))
            finally:
                stack.stop_all()
                if databases:
                    asyncio.run(_pg(args.postgres, [f'DROP DATABASE IF EXISTS "{d}" WITH '
                                                    "(FORCE)" for d in databases]))
    print(table(results))
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    path = out / f"bench_records-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps({"when": datetime.now(UTC).isoformat(),
                                "machine": {"cpus": os.cpu_count(),
                                            "python": platform.python_version()},
                                "results": results}, indent=2))
    print(f"\nwritten to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
