"""The CLI's start-up, a command served by the unlock agent, and `patient list` (issue 20).

    uv run --frozen python -m benchmarks.bench_cli [--patients 1000] [--strict] [--json FILE]

Starts the four services on SQLite, signs up and unlocks once, then runs the real ``ecrin``
command as a subprocess and measures its CPU time (user + system of the child, from
``getrusage(RUSAGE_CHILDREN)``) and wall time, median of several runs:

* ``import ecrin_client.cli`` (``python -X importtime``, cumulative), what ``--help`` loads,
  and the same for what ``patient show`` loads (``ecrin_client.cli.patients`` on top);
* ``ecrin --help``                       target: < 0.3 s of CPU;
* ``ecrin patient show`` through the agent target: < 0.3 s of CPU (no Argon2id);
* ``ecrin patient list`` of ``--patients`` patients (created through the SDK beforehand).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PASSPHRASE = "benchmark passphrase for the cli"  # noqa: S105 (a throwaway stack's)
TARGETS = {"help_cpu_s": 0.3, "agent_command_cpu_s": 0.3, "patient_list_s": 1.0}
ECRIN = [sys.executable, "-m", "ecrin_client"]


def _run(command: list[str], env: dict[str, str], input: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    """Our own interpreter running our own modules: nothing untrusted in ``command``."""
    return subprocess.run(command, env=env, input=input, capture_output=True,  # noqa: S603 (our ecrin, no shell)
                          text=True, check=False)


def bytecode_env(tmp: str) -> dict[str, str]:
    """Compiled bytecode kept in ``tmp`` (an installed CLI has it; a checkout with
    PYTHONDONTWRITEBYTECODE=1 would compile every module at every run, 1 s of CPU)."""
    return {"PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache")}


def import_time_ms(tmp: str, modules: tuple[str, ...] = ("ecrin_client.cli",)) -> float:
    """Cumulative import time of ``modules``, imported in that order (-X importtime: the
    sum of each one's cumulative line, which leaves out what an earlier one loaded)."""
    env = {**os.environ, **bytecode_env(tmp)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    command = [sys.executable, "-X", "importtime", "-c", f"import {', '.join(modules)}"]
    _run(command, env)  # warm-up
    out = _run(command, env).stderr.splitlines()
    total = 0
    for module in modules:
        line = [x for x in out if re.search(rf"\|\s*{re.escape(module)}$", x.rstrip())][-1]
        total += int(re.split(r"\s*\|\s*", line)[1])
    return total / 1000


def timed(args: list[str], env: dict[str, str], *, input: str | None = None,
          runs: int = 5) -> dict[str, float]:
    """Median CPU (user + system) and wall seconds of ``ecrin args`` over ``runs`` runs."""
    cpu, wall = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = _run([*ECRIN, *args], env, input)
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"ecrin {' '.join(args)} failed: {done.stderr.strip()}")
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return {"cpu_s": round(statistics.median(cpu), 3), "wall_s": round(statistics.median(wall), 3)}


def ecrin(args: list[str], env: dict[str, str], input: str | None = None) -> str:
    done = _run([*ECRIN, *args], env, input)
    if done.returncode != 0:
        raise RuntimeError(f"ecrin {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


async def create_patients(home: Path, server: str, count: int) -> None:
    """``count`` patients through the SDK, with the keys the agent holds (8 at a time)."""
    from ecrin_client import EcrinClient, Patients, Profile, Records, agent
    from ecrin_client.kine import PatientIdentity

    profile = Profile(home)
    held = agent.fetch_keys(home)
    assert held is not None, "the agent should hold the keys"
    async with EcrinClient(server, profile) as client:
        identity = client.held_identity(held.account_id, held.keys)
        assert identity is not None
        patients = Patients(Records(client, identity))
        gate = asyncio.Semaphore(8)

        async def one(i: int) -> None:
            async with gate:
                await patients.create(PatientIdentity(
                    name=f"Patient {i:05d} Benchmark", birth_date="1980-01-01"))

        await asyncio.gather(*(one(i) for i in range(count)))


def run(patients: int) -> dict[str, Any]:
    from ecrin_client.loop import run as run_loop

    from benchmarks.services import running_stack

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ecrin-bench-cli-") as tmp, \
            running_stack("sqlite") as bs:
        results["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
        results["import_ms"] = import_time_ms(tmp)
        results["import_agent_command_ms"] = import_time_ms(
            tmp, ("ecrin_client.cli", "ecrin_client.cli.patients"))
        home = Path(tmp) / "home"
        env = {**os.environ, "ECRIN_HOME": str(home), "ECRIN_SERVER": bs.gateway,
               "ECRIN_AGENT_DIR": str(Path(tmp) / "agent"), **bytecode_env(tmp)}
        env.pop("ECRIN_PASSPHRASE", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        ecrin(["--help"], env)  # warm the bytecode cache, as any second run finds it
        results["help"] = timed(["--help"], env)
        ecrin(["account", "create", "--email", "bench-cli@example.fr", "--passphrase-stdin"],
              env, input=PASSPHRASE + "\n")
        results["unlock"] = timed(["unlock", "--passphrase-stdin"], env,
                                  input=PASSPHRASE + "\n", runs=1)
        try:
            os.environ.update({k: env[k] for k in ("ECRIN_HOME", "ECRIN_AGENT_DIR")})
            ecrin(["patient", "create", "--name", "Léa Dupont", "--birth-date", "2001-05-04"],
                  env)
            ecrin(["patient", "show", "dupont"], env)  # warm-up
            results["agent_command"] = timed(["patient", "show", "dupont"], env)
            run_loop(create_patients(home, bs.gateway, patients - 1))
            results["patient_list"] = timed(["patient", "list", "--json"], env, runs=3)
            results["patient_list"]["patients"] = len(json.loads(
                ecrin(["patient", "list", "--json"], env)))
        finally:
            ecrin(["lock"], env)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--strict", action="store_true", help="exit 1 on a missed target")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = run(args.patients)
    checks = {
        "help_cpu_s": results["help"]["cpu_s"],
        "agent_command_cpu_s": results["agent_command"]["cpu_s"],
        "patient_list_s": results["patient_list"]["wall_s"],
    }
    print("| measure | value | target | |\n|---|---|---|---|")
    print(f"| import ecrin_client.cli (--help) | {results['import_ms']:.0f} ms | | |")
    print(f"| imports of `patient show` | {results['import_agent_command_ms']:.0f} ms | | |")
    print(f"| unlock (Argon2id once, agent started) | {results['unlock']['wall_s']} s wall | "
          "| |")
    failed = False
    for name, value in checks.items():
        ok = value < TARGETS[name]
        failed |= not ok
        print(f"| {name} | {value} s | < {TARGETS[name]} s | {'PASS' if ok else 'FAIL'} |")
    print(f"\n(patient list of {results['patient_list']['patients']} patients; load average "
          f"{results['load_average_at_start']} -> {results['load_average_at_end']}; "
          f"full figures: {json.dumps(results)})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.strict and failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
