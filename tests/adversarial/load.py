"""Load and soak: locust, headless, against a stack of our own, with each service's memory
sampled (psutil). ``make load`` is 32 users for 60 s, ``make soak`` 32 users for 10 min.

Passes when no request failed, and each service's memory is flat: the median RSS of the
last quarter of the run is within ``--max-growth-mib`` of the median of the second
quarter (the first quarter is warm-up: imports, caches, connection pools).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import psutil

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def sample_memory(stack: Any, stop: threading.Event, samples: dict[str, list[float]],
                  every: float) -> None:
    processes = {s: psutil.Process(p.pid) for s, p in stack.processes.items()}
    while not stop.wait(every):
        for service, process in processes.items():
            try:
                samples.setdefault(service, []).append(process.memory_info().rss / 2**20)
            except psutil.Error:
                pass


def growth(values: list[float]) -> tuple[float, float, float]:
    """(median of the 2nd quarter, median of the last quarter, growth) in MiB."""
    n = len(values)
    if n < 8:
        return (values[0], values[-1], values[-1] - values[0]) if values else (0, 0, 0)
    early = statistics.median(values[n // 4: n // 2])
    late = statistics.median(values[3 * n // 4:])
    return early, late, late - early


def run(stack: Any, users: int, seconds: int, work: Path, max_growth: float) -> dict[str, Any]:
    samples: dict[str, list[float]] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=sample_memory,
                               args=(stack, stop, samples, max(1.0, seconds / 120)))
    sampler.start()
    prefix = work / "locust"
    try:
        done = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
             "-u", str(users), "-r", str(max(1, users // 4)), "-t", f"{seconds}s",
             "--host", stack.url("gateway"), "--csv", str(prefix), "--only-summary",
             "--stop-timeout", "10", "--exit-code-on-error", "1"],
            capture_output=True, text=True, timeout=seconds + 300,
            cwd=Path(__file__).resolve().parents[2])
    finally:
        stop.set()
        sampler.join()
    stats = list(csv.DictReader(open(f"{prefix}_stats.csv")))  # noqa: SIM115
    total = next(r for r in stats if r["Name"] == "Aggregated")
    memory = {s: dict(zip(("early_mib", "late_mib", "growth_mib"),
                          (round(v, 1) for v in growth(v_)), strict=True))
              for s, v_ in samples.items()}
    result = {
        "users": users, "seconds": seconds, "exit_code": done.returncode,
        "requests": int(total["Request Count"]), "failures": int(total["Failure Count"]),
        "rps": round(float(total["Requests/s"]), 1),
        "p50_ms": float(total["50%"]), "p99_ms": float(total["99%"]),
        "per_request": {r["Name"]: {"count": int(r["Request Count"]),
                                    "failures": int(r["Failure Count"]),
                                    "p50_ms": float(r["50%"]), "p99_ms": float(r["99%"])}
                        for r in stats if r["Name"] != "Aggregated"},
        "memory": memory,
        "memory_flat": all(m["growth_mib"] <= max_growth for m in memory.values()),
    }
    failures = Path(f"{prefix}_failures.csv")
    if failures.exists():
        result["failure_kinds"] = [dict(r) for r in csv.DictReader(open(failures))][:20]  # noqa: SIM115
    if done.returncode != 0 and not result.get("failure_kinds"):
        result["locust_output"] = done.stderr[-3000:]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--max-growth-mib", type=float, default=32.0)
    args = parser.parse_args()
    from tests.support.stack import start_stack

    with tempfile.TemporaryDirectory(prefix="ecrin-load-") as tmp:
        stack = start_stack(args.backend, Path(tmp) / "state", "load")
        try:
            result = run(stack, args.users, args.seconds, Path(tmp), args.max_growth_mib)
        finally:
            stack.stop_all()
    result["backend"] = args.backend
    print(json.dumps(result, indent=2))
    ok = result["failures"] == 0 and result["exit_code"] == 0 and result["memory_flat"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
