"""Records under load through the gateway: create and read 10 KiB records at several
levels of concurrency, and one 100 MiB document (through ``bench_records``).

Each concurrent client is its own practitioner with its own patient file, session and
connection: the load of a practice network, not of one file (whose hash-chained audit log
serialises its writers by design). Records are encrypted before the clock starts, so the
figures are the servers' (plus the load generator's HTTP, on the same two cores). A create
is what the SDK sends for a record under 256 KiB: one ``POST /v1/records`` carrying the
content ciphertext inline, committed by that request; a read is what it sends for one: ``GET
/v1/records/{id}?include=content``, the version and its content in one answer.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import psutil
from ecrin_client.loop import run as run_loop

from benchmarks import bench_records
from benchmarks.actors import Practitioner, b64, create_body, unb64
from benchmarks.load import run_clients
from benchmarks.services import BenchStack

RECORD_SIZE = 10 * 1024


async def records(bs: BenchStack, *, levels: tuple[int, ...] = (1, 16, 64),
                  ops: dict[int, int] | None = None, seconds: float = 8.0) -> dict[str, Any]:
    """At each level, creates for ``seconds`` (at most ``ops[level]`` of them), then reads
    of those records for ``seconds``."""
    ops = ops or {1: 1200, 16: 6400, 64: 7680}
    clients = [Practitioner.sign_up(bs.gateway, name=f"Patient {i}")
               for i in range(max(levels))]
    per_client = {level: max(1, ops[level] // level) for level in levels}
    # every record each client will create, encrypted up front
    queues: list[list[tuple[dict[str, Any], bytes]]] = [[] for _ in clients]
    for level in levels:
        for c in range(level):
            for _ in range(per_client[level] + 1):  # + one warm-up
                record_id, record = clients[c].encrypt(RECORD_SIZE)
                queues[c].append(create_body(clients[c].file_id, record_id, record))
    created: list[list[tuple[str, int]]] = [[] for _ in clients]
    base = bs.gateway
    out: dict[str, Any] = {}
    cpu = ProcessCpu(bs)
    # aiohttp, not httpx: the load generator shares the two cores with what it measures,
    # and httpx's pure-Python HTTP costs about twice the CPU per request.
    connector = aiohttp.TCPConnector(limit=256, limit_per_host=256)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def create(c: int, i: int) -> bool:
            body, content = queues[c].pop()
            headers = {**clients[c].headers, "Idempotency-Key": body["record_id"]}
            async with http.post(f"{base}/v1/records", json={**body, "content": b64(content)},
                                 headers=headers) as made:
                answer = await made.read()
                if made.status != 201:
                    raise RuntimeError(f"HTTP {made.status}: {answer[:120]!r}")
                if json.loads(answer)["state"] != "committed":
                    raise RuntimeError("an inline create left the record pending")
            created[c].append((body["record_id"], len(content)))
            return True

        async def read(c: int, i: int) -> bool:
            # What the SDK sends for a small record: one GET, the content inline.
            record_id, length = created[c][i % len(created[c])]
            async with http.get(f"{base}/v1/records/{record_id}?include=content",
                                headers=clients[c].headers) as got:
                answer = await got.read()
                if got.status != 200:
                    raise RuntimeError(f"HTTP {got.status}: {answer[:120]!r}")
            content = json.loads(answer).get("content")
            if content is None or len(unb64(content)) != length:
                raise RuntimeError("the read did not carry the whole content inline")
            return True

        for level in levels:
            await run_clients(level, 1, create)  # warm-up: connections, authorisation cache
            cpu.start()
            made = await run_clients(level, per_client[level], create, seconds)
            made_cpu = cpu.per_op(made.ops)
            cpu.start()
            got = await run_clients(level, per_client[level] * 4, read, seconds)
            got_cpu = cpu.per_op(got.ops)
            out[f"create c{level}"] = {"operation": "create", "clients": level,
                                       **made.to_json(), "cpu_ms_per_op": made_cpu}
            out[f"read c{level}"] = {"operation": "read", "clients": level, **got.to_json(),
                                     "cpu_ms_per_op": got_cpu}
    return {"backend": bs.backend, "record_bytes": RECORD_SIZE, "results": out}


class ProcessCpu:
    """CPU time (user + system) per operation of each service process, of PostgreSQL's
    processes (all of them: the machine's server) and of this load generator."""

    def __init__(self, bs: BenchStack) -> None:
        self.processes = {name: psutil.Process(p.pid) for name, p in bs.stack.processes.items()}
        self.postgres = bs.backend == "postgres"
        self._start: dict[str, float | dict[int, float]] = {}

    def _now(self) -> dict[str, float | dict[int, float]]:
        now: dict[str, float | dict[int, float]] = {
            name: sum(p.cpu_times()[:2]) for name, p in self.processes.items()}
        if self.postgres:
            # per process: a backend that ends between two readings takes its time along
            backends: dict[int, float] = {}
            for proc in psutil.process_iter(["name"]):
                try:
                    if (proc.info["name"] or "").startswith("postgres"):
                        backends[proc.pid] = sum(proc.cpu_times()[:2])
                except psutil.Error:
                    continue
            now["postgresql"] = backends
        now["load generator"] = time.process_time()
        return now

    def start(self) -> None:
        self._start = self._now()

    def per_op(self, ops: int) -> dict[str, float]:
        end = self._now()
        out: dict[str, float] = {}
        for name, value in end.items():
            before = self._start[name]
            if isinstance(value, dict):
                assert isinstance(before, dict)
                spent = sum(t - before.get(pid, 0.0) for pid, t in value.items())
            else:
                assert isinstance(before, float)
                spent = value - before
            out[name] = round(spent * 1e3 / max(ops, 1), 3)
        return out


def large_document(bs: BenchStack, size: int = 100 << 20) -> dict[str, Any]:
    """``bench_records``' 100 MiB round trip through the SDK (client encryption included):
    its per-operation loops are skipped here (this module measures those)."""
    bench_records.CONCURRENCY = ()
    bench_records.LARGE = size
    profile = bs.work / "profile"
    profile.mkdir(exist_ok=True)
    result = run_loop(bench_records.run_backend(bs.backend, bs.gateway, bs.work, 0))
    return {"bytes": size, **result["large_100mib"]}
