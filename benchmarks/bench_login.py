"""Logins through the SDK: requests and server CPU per login (issue 21).

Argon2id runs on the device and costs the same whatever the servers do, so it is done
once per account here (the derived keys are reused): what is measured is every request
``EcrinClient.login`` sends (challenge, login, the keys it opens and checks) and the CPU
each service process spends per login.

    uv run --frozen python -m benchmarks.bench_login [--postgres] [-n 40]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ecrin_client import EcrinClient, Profile
from ecrin_client.loop import run as run_loop

from benchmarks.bench_load import ProcessCpu
from benchmarks.bench_sdk import PASSPHRASE, CountingTransport
from benchmarks.services import BenchStack, running_stack
from ecrin_e2ee import AccountKeys


async def measure(bs: BenchStack, *, logins: int = 40) -> dict[str, Any]:
    """``logins`` sequential logins of one account, each from a fresh SDK client."""
    home = Path(tempfile.mkdtemp(prefix="ecrin-login-"))
    email = f"login-{uuid.uuid4().hex[:10]}@example.fr"
    wire = CountingTransport()
    keys: dict[tuple[bytes, str], AccountKeys] = {}
    try:
        async with EcrinClient(bs.gateway, Profile(home / "signup"), transport=wire) as client:
            await client.signup(email, PASSPHRASE, "practitioner")

        async def one(i: int) -> float:
            client = EcrinClient(bs.gateway, Profile(home / "devices" / str(i)),
                                 transport=wire)
            derive = client._derive

            async def cached(passphrase: str, salt: bytes, params: Any) -> AccountKeys:
                key = (salt, repr(params))
                if key not in keys:
                    keys[key] = await derive(passphrase, salt, params)
                return keys[key]

            # Argon2id once per account: the benchmark measures the servers, not the device.
            client._derive = cached  # type: ignore[method-assign]  # a benchmark stub, by design
            try:
                started = time.perf_counter()
                await client.login(email, PASSPHRASE)
                return time.perf_counter() - started
            finally:
                await client.aclose()

        await one(-1)  # warm-up, and the one Argon2id
        cpu = ProcessCpu(bs)
        sent = wire.requests
        cpu.start()
        times = [await one(i) for i in range(logins)]
        per_op = cpu.per_op(logins)
        times.sort()
        servers = sum(v for k, v in per_op.items() if k not in ("load generator",
                                                                  "postgresql"))
        return {"backend": bs.backend, "logins": logins,
                "requests_per_login": round((wire.requests - sent) / logins, 2),
                "p50_ms": round(times[len(times) // 2] * 1e3, 1),
                "cpu_ms_per_login": per_op, "services_cpu_ms": round(servers, 2)}
    finally:
        shutil.rmtree(home, ignore_errors=True)


SERVICES = ("gateway", "kms", "records-api", "sharing")


def _cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far, in ns (Linux's per-thread schedstat:
    one request is a few milliseconds, below psutil's 10 ms ticks)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total


async def first_requests(bs: BenchStack) -> dict[str, Any]:
    """On a stack that has served nothing but its health checks: each service's CPU for
    the first sign-up, the first login and the next login (one Argon2id each, on the
    device, not counted). What the first person to sign up or log in after a start
    waits for beyond the usual (round 16)."""
    pids = {name: bs.stack.processes[name].pid for name in SERVICES}
    home = Path(tempfile.mkdtemp(prefix="ecrin-first-"))
    email = f"first-{uuid.uuid4().hex[:10]}@example.fr"
    out: dict[str, Any] = {}

    async def spent(label: str, action: Any) -> None:
        before = {name: _cpu_ns(pid) for name, pid in pids.items()}
        await action()
        out[label] = {name: round((_cpu_ns(pid) - before[name]) / 1e6, 1)
                      for name, pid in pids.items()}

    try:
        async with EcrinClient(bs.gateway, Profile(home / "signup")) as client:
            await spent("signup_ms", lambda: client.signup(email, PASSPHRASE, "practitioner"))
        for label in ("first_login_ms", "next_login_ms"):
            async with EcrinClient(bs.gateway, Profile(home / label)) as client:
                await spent(label, lambda c=client: c.login(email, PASSPHRASE))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL, not SQLite")
    parser.add_argument("-n", type=int, default=40, help="logins to measure")
    parser.add_argument("--hold", type=float, default=0.0,
                        help="seconds to wait before measuring (to attach py-spy)")
    args = parser.parse_args()
    with running_stack("postgres" if args.postgres else "sqlite") as bs:
        print({name: p.pid for name, p in bs.stack.processes.items()}, flush=True)
        time.sleep(args.hold)
        print(run_loop(measure(bs, logins=args.n)))


if __name__ == "__main__":
    main()
