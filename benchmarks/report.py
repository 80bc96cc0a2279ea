"""The benchmark's outputs: the machine it ran on, the checks against the targets, a
markdown table, a JSON file under bench-results/ and docs/performance.md."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class Row:
    section: str
    metric: str
    value: str
    target: str = ""
    result: str = ""  # PASS, FAIL or "" (informative)


def machine(versions: dict[str, Any]) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        memory = f"{psutil.virtual_memory().total / (1 << 30):.1f} GiB"
    except ImportError:
        memory = "unknown"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
                                capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory": memory,
            "python": platform.python_version(), "os": platform.platform(),
            "commit": commit, **versions}


def table(rows: list[Row]) -> str:
    lines = ["| section | metric | value | target | result |", "|---|---|---|---|---|"]
    lines += [f"| {r.section} | {r.metric} | {r.value} | {r.target} | {r.result or '-'} |"
              for r in rows]
    return "\n".join(lines)


def write_json(out_dir: Path, payload: dict[str, Any], rows: list[Row]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps({**payload, "table": [asdict(r) for r in rows]}, indent=2,
                               default=str))
    return path


DOC = """# Performance

`make bench` measures the whole product on the machine it runs on and checks the targets
of issue 9. Absolute times vary from machine to machine (and, on a shared machine, from
minute to minute); what travels is the ratios measured in the same run: stream against raw
AEAD, gateway against direct, a page of 100 000 records against a page of 10.

## Reproduce

```sh
make bench            # = uv run --frozen python -m benchmarks.run --strict
uv run --frozen python -m benchmarks.run --quick --no-postgres   # seconds, no targets
```

`make bench` needs a PostgreSQL server at
`postgresql+asyncpg://postgres@127.0.0.1:5432/postgres` (`--postgres URL` to change it,
`--no-postgres` to skip it); it creates throwaway databases and drops them. It prints the
table below, writes every figure to `bench-results/bench-<time>.json` (git-ignored) and
rewrites this file (`--no-docs` not to). With `--strict` it exits 1 when a target fails.
It takes about {duration} here.

## What is measured

- **Client cryptography** (`benchmarks/bench_e2ee.py`): stream encryption against raw
  XChaCha20-Poly1305 over the same bytes; a 10 KiB record encrypted and signed, opened
  and verified; Argon2id MODERATE; sealing one scope key to a member; peak RSS increase
  of a 256 MiB streaming round trip.
- **Gateway overhead** (`benchmarks/bench_gateway.py`): the same `GET` straight to the
  service, with an internal token minted from the stack's own key, and through the
  gateway with a bearer token; alternating rounds, at 1 and 32 concurrent clients.
- **Records under load** (`benchmarks/bench_load.py`): 10 KiB records created
  (`POST /v1/records` + `PUT` content) and read (`GET` record + `GET` content) through
  the gateway by 1, 16 and 64 concurrent practitioners, each with their own file and
  connection, encrypted before the clock starts; then a 100 MiB document up and down
  through the SDK (`benchmarks/bench_records.py`, client crypto included) against the raw
  AEAD throughput of the same run. Peak RSS of each service process over the whole run.
- **Growth** (`benchmarks/bench_growth.py`): rows seeded straight into the databases
  (real 410-byte headers and metadata ciphertexts, real blind-index tokens), then ANALYZEd:
  the first and next page (`limit=10`) of files of 10, 10 000 and 100 000 records; a
  patient search (name token) among 1 and 10 000 patients; re-keying a file of 10 000
  records after a rotation (list every header, `rekey_record_header` on the device,
  `POST /v1/records/rekey` by 500), per record, end to end.
- **Revocation** (`benchmarks/bench_revocation.py`): a grantee reads keys (kms) and a
  record (records-api) every 10 ms; the owner revokes; time until both answer 404.

The load generator runs on the same two cores as the four services and PostgreSQL, so
throughput figures are lower bounds for a deployment with one host per service.

## Latest figures

{when}, commit `{commit}`; {nproc} CPUs ({cpu}), {memory}, Python {python},
SQLite {sqlite}, PostgreSQL {postgresql}; load average {load} at the start of the run
(other work on the machine).

{table}

{notes}
"""


def write_docs(path: Path, rows: list[Row], info: dict[str, Any], duration_s: float,
               load: str, notes: str) -> None:
    path.write_text(DOC.format(
        duration=f"{duration_s / 60:.0f} minutes", when=datetime.now(UTC).strftime(
            "%Y-%m-%d %H:%M UTC"), load=load, table=table(rows), notes=notes.strip(), **{
            k: info.get(k, "?") for k in ("commit", "nproc", "cpu", "memory", "python",
                                           "sqlite", "postgresql")}))


#: What the profiles showed and what remains; kept by hand, printed under the figures.
FINDINGS = """
## Findings

(filled in from the profiles of the latest run)
"""
