"""Gateway overhead: the same request straight to the service (with an internal token
minted from the stack's own key, as the gateway would) and through the gateway (bearer
token: session lookup, gates, a fresh internal token, streaming relay).

Rounds alternate direct and gateway so that background load on the shared machine falls
on both alike; the ratio of the two p50s is the figure that travels between machines.
"""

from __future__ import annotations

from typing import Any

import httpx

from benchmarks.actors import Practitioner, TokenMinter, upload
from benchmarks.load import Measurement, expect, run_clients
from benchmarks.services import BenchStack

RECORD_SIZE = 10 * 1024


async def measure(bs: BenchStack, *, levels: tuple[int, ...] = (1, 32),
                  ops: dict[int, int] | None = None, rounds: int = 2,
                  seconds: float = 2.5) -> dict[str, Any]:
    """Each round: at most ``ops / rounds`` requests or ``seconds``, direct then gateway."""
    ops = ops or {1: 1000, 32: 4000}
    owner = Practitioner.sign_up(bs.gateway)
    minter = TokenMinter(bs.internal_key, owner)
    record_id, record = owner.encrypt(RECORD_SIZE)
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        await upload(http, bs.gateway, owner.headers, owner.file_id, record_id, record)
        paths = {
            # a record's metadata: authorisation (cached), a read audit event, JSON
            "GET /v1/records/{id}": ("records-api", f"/v1/records/{record_id}"),
            # a public key from the signed directory: the lightest authenticated read
            "GET /v1/directory/{id}": ("kms", f"/v1/directory/{owner.user.account_id}"),
        }
        results: dict[str, Any] = {}
        for label, (service, path) in paths.items():
            direct_url, gateway_url = bs.url(service) + path, bs.gateway + path

            async def direct(c: int, i: int, url: str = direct_url,
                             audience: str = service) -> bool:
                return expect(await http.get(url, headers=minter.headers(audience)), 200)

            async def through(c: int, i: int, url: str = gateway_url) -> bool:
                return expect(await http.get(url, headers=owner.headers), 200)

            for clients in levels:
                per_client = max(1, ops[clients] // clients // rounds)
                await run_clients(clients, 2, direct)  # warm-up: connections, caches
                await run_clients(clients, 2, through)
                d = g = Measurement([], 0, 0.0)
                for _ in range(rounds):
                    d = d.merge(await run_clients(clients, per_client, direct, seconds))
                    g = g.merge(await run_clients(clients, per_client, through, seconds))
                results[f"{label} c{clients}"] = {
                    "request": label, "clients": clients, "direct": d.to_json(),
                    "gateway": g.to_json(),
                    "ratio_p50": round(g.p50_ms / d.p50_ms, 3) if d.latencies else None,
                    "ratio_p99": round(g.p99_ms / d.p99_ms, 3) if d.latencies else None,
                    "added_p50_ms": round(g.p50_ms - d.p50_ms, 3)}
    return {"backend": bs.backend, "file_id": str(owner.file_id),
            "results": results}
