"""Records under load through the gateway: create and read 10 KiB records at several
levels of concurrency, and one 100 MiB document (through ``bench_records``).

Each concurrent client is its own practitioner with its own patient file, session and
connection: the load of a practice network, not of one file (whose hash-chained audit log
serialises its writers by design). Records are encrypted before the clock starts, so the
figures are the servers' (plus the load generator's HTTP, on the same two cores). A create
is what the SDK sends for a record under 256 KiB: one ``POST /v1/records`` carrying the
content ciphertext inline, committed by that request; a read is ``GET /v1/records/{id}``
then ``GET .../content``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from benchmarks import bench_records
from benchmarks.actors import Practitioner, b64, create_body
from benchmarks.load import expect, run_clients
from benchmarks.services import BenchStack

RECORD_SIZE = 10 * 1024


async def records(bs: BenchStack, *, levels: tuple[int, ...] = (1, 16, 64),
                  ops: dict[int, int] | None = None, seconds: float = 8.0) -> dict[str, Any]:
    """At each level, creates for ``seconds`` (at most ``ops[level]`` of them), then reads
    of those records for ``seconds``."""
    ops = ops or {1: 600, 16: 3200, 64: 3840}
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
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def create(c: int, i: int) -> bool:
            body, content = queues[c].pop()
            headers = clients[c].headers
            made = await http.post(f"{base}/v1/records", json={**body, "content": b64(content)},
                                   headers={**headers, "Idempotency-Key": body["record_id"]})
            expect(made, 201)
            if made.json()["state"] != "committed":
                raise RuntimeError("an inline create left the record pending")
            created[c].append((body["record_id"], len(content)))
            return True

        async def read(c: int, i: int) -> bool:
            record_id, length = created[c][i % len(created[c])]
            headers = clients[c].headers
            expect(await http.get(f"{base}/v1/records/{record_id}", headers=headers), 200)
            got = await http.get(f"{base}/v1/records/{record_id}/versions/1/content",
                                 headers=headers)
            expect(got, 200)
            if len(got.content) != length:
                raise RuntimeError(f"content of {len(got.content)} bytes, not {length}")
            return True

        for level in levels:
            await run_clients(level, 1, create)  # warm-up: connections, authorisation cache
            made = await run_clients(level, per_client[level], create, seconds)
            got = await run_clients(level, per_client[level] * 4, read, seconds)
            out[f"create c{level}"] = {"operation": "create", "clients": level,
                                       **made.to_json()}
            out[f"read c{level}"] = {"operation": "read", "clients": level, **got.to_json()}
    return {"backend": bs.backend, "record_bytes": RECORD_SIZE, "results": out}


def large_document(bs: BenchStack, size: int = 100 << 20) -> dict[str, Any]:
    """``bench_records``' 100 MiB round trip through the SDK (client encryption included):
    its per-operation loops are skipped here (this module measures those)."""
    bench_records.CONCURRENCY = ()
    bench_records.LARGE = size
    profile = bs.work / "profile"
    profile.mkdir(exist_ok=True)
    result = asyncio.run(bench_records.run_backend(bs.backend, bs.gateway, bs.work, 0))
    return {"bytes": size, **result["large_100mib"]}
