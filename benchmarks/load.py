"""Concurrent request loops: latencies, throughput and errors, never an exception."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class Measurement:
    """Latencies of successful operations (seconds), errors, and the wall time."""

    latencies: list[float]
    errors: int
    wall_s: float
    first_error: str | None = None

    @property
    def ops(self) -> int:
        return len(self.latencies) + self.errors

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 0.5) * 1e3

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 0.99) * 1e3

    @property
    def per_s(self) -> float:
        return len(self.latencies) / self.wall_s if self.wall_s else 0.0

    def merge(self, other: Measurement) -> Measurement:
        return Measurement(self.latencies + other.latencies, self.errors + other.errors,
                           self.wall_s + other.wall_s, self.first_error or other.first_error)

    def to_json(self) -> dict[str, Any]:
        return {"ops": self.ops, "errors": self.errors, "per_s": round(self.per_s, 1),
                "p50_ms": round(self.p50_ms, 3), "p99_ms": round(self.p99_ms, 3),
                "mean_ms": round(statistics.mean(self.latencies) * 1e3, 3)
                if self.latencies else None, "first_error": self.first_error}


#: One operation: ``op(client_index, op_index)``; it raises (or returns False) on failure.
Operation = Callable[[int, int], Awaitable[Any]]


async def run_clients(clients: int, ops_per_client: int, op: Operation,
                      duration_s: float | None = None) -> Measurement:
    """``clients`` concurrent loops of at most ``ops_per_client`` operations each, and for
    at most ``duration_s`` seconds when given (the run's length stays bounded whatever the
    machine's speed)."""
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    deadline = time.perf_counter() + duration_s if duration_s else float("inf")

    async def loop(c: int) -> None:
        nonlocal errors, first_error
        for i in range(ops_per_client):
            if time.perf_counter() >= deadline:
                break
            started = time.perf_counter()
            try:
                ok = await op(c, i)
            except Exception as exc:  # noqa: BLE001 (counted, never fatal)
                ok = False
                first_error = first_error or f"{type(exc).__name__}: {exc}"[:200]
            if ok is False:
                errors += 1
            else:
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in range(clients)))
    return Measurement(latencies, errors, time.perf_counter() - started, first_error)


def expect(response: Any, *statuses: int) -> bool:
    """An operation's check: raises with the status and the start of the body otherwise."""
    if response.status_code not in statuses:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:120]}")
    return True
