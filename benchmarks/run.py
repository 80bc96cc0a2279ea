"""Every benchmark of issue 9 in one run, checked against the targets.

    uv run --frozen python -m benchmarks.run [--strict] [--quick] [--no-postgres]

Prints a markdown table, writes ``bench-results/bench-<time>.json`` and rewrites
``docs/performance.md`` (``--no-docs`` to leave it). ``--quick`` runs tiny sizes on SQLite
in seconds (the smoke test) and checks no target. ``--strict``: exit 1 if a target fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ecrin_client.loop import run as run_loop

from benchmarks import (
    bench_crypto,
    bench_gateway,
    bench_growth,
    bench_load,
    bench_login,
    bench_revocation,
    bench_sdk,
)
from benchmarks.report import Row, machine, table, write_docs, write_json
from benchmarks.services import POSTGRES_URL, RssSampler, running_stack, server_versions

MiB = 1 << 20
TARGETS = {"stream_ratio": 0.7, "gateway_p50_ratio": 1.3, "creates_per_s": 500.0,
           "sdk_creates_per_s": 300.0, "sdk_requests_per_op": 1.0, "sdk_read_p50_ms": 10.0,
           "listing_growth": 1.5, "rotation_ms": 0.5, "revocation_s": 0.05,
           "login_requests": 3.0, "login_server_cpu_ms": 10.0, "large_doc_ratio": 0.3}


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"gateway": {"levels": (1, 4), "ops": {1: 10, 4: 16}},
                "load": {"levels": (1, 4), "ops": {1: 6, 4: 16}},
                "sdk": {"levels": (1, 4), "seconds": 1.0, "max_ops": 40}, "large": 2 * MiB,
                "listing": {"sizes": (10, 120), "reps": 3}, "patients": 50,
                "search_reps": 3, "rotation": 150, "revocations": 1, "logins": 3}
    return {"gateway": {"levels": (1, 32)}, "load": {"levels": (1, 16, 64)},
            "sdk": {"levels": (1, 16)},
            "large": 100 * MiB, "listing": {"sizes": (10, 10_000, 100_000), "reps": 40},
            "patients": 10_000, "search_reps": 40, "rotation": 10_000, "revocations": 3,
            "logins": 100}


def step(name: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {name}", file=sys.stderr, flush=True)


def run_backend(backend: str, postgres: str, size: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with running_stack(backend, postgres) as bs, RssSampler(bs.stack) as rss:
        sections: list[tuple[str, str, Callable[[], Any]]] = [
            # first: on a stack that has served nothing yet
            ("first", "first requests after start",
             lambda: run_loop(bench_login.first_requests(bs))),
            ("gateway", "gateway overhead",
             lambda: run_loop(bench_gateway.measure(bs, **size["gateway"]))),
            ("load", "records under load",
             lambda: run_loop(bench_load.records(bs, **size["load"]))),
            ("sdk", "records through the SDK",
             lambda: run_loop(bench_sdk.measure(bs, **size["sdk"]))),
            ("login", "logins through the SDK",
             lambda: run_loop(bench_login.measure(bs, logins=size["logins"]))),
            ("large", f"{size['large'] // MiB} MiB document",
             lambda: bench_load.large_document(bs, size["large"])),
            ("listing", "listing growth",
             lambda: run_loop(bench_growth.listing(bs, **size["listing"]))),
            ("search", "patient search", lambda: run_loop(
                bench_growth.search(bs, size["patients"], size["search_reps"]))),
            ("rotation", "rotation",
             lambda: run_loop(bench_growth.rotation(bs, size["rotation"]))),
            ("revocation", "revocation",
             lambda: run_loop(bench_revocation.measure(bs, size["revocations"]))),
        ]
        for key, label, measure in sections:
            step(f"{backend}: {label}")
            try:
                out[key] = measure()
            except Exception as exc:  # noqa: BLE001 (a failed section is reported, not fatal)
                traceback.print_exc()
                out[key] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    out["peak_rss_mib"] = {s: round(v / MiB, 1) for s, v in sorted(rss.peak.items())}
    return out


def verdict(ok: bool, check: bool) -> str:
    return ("PASS" if ok else "FAIL") if check else ""


def rows_of(crypto: dict[str, Any], backends: dict[str, dict[str, Any]],
            check: bool) -> list[Row]:
    rows: list[Row] = []
    c = crypto
    rows.append(Row("crypto", "raw XChaCha20-Poly1305, 64 KiB messages",
                    f"{c['raw_aead_mb_s']:.0f} MB/s", "baseline"))
    rows.append(Row("crypto", "stream encrypt", f"{c['stream_encrypt_mb_s']:.0f} MB/s "
                    f"({c['encrypt_ratio']:.2f}x raw)", ">= 0.70x raw",
                    verdict(c["encrypt_ratio"] >= TARGETS["stream_ratio"], check)))
    rows.append(Row("crypto", "stream decrypt", f"{c['stream_decrypt_mb_s']:.0f} MB/s "
                    f"({c['decrypt_ratio']:.2f}x raw)"))
    rows.append(Row("crypto", "encrypt + sign 10 KiB (median)",
                    f"{c['encrypt_sign_10kib_ms']:.3f} ms"))
    rows.append(Row("crypto", "open + verify 10 KiB (median)",
                    f"{c['open_verify_10kib_ms']:.3f} ms"))
    rows.append(Row("crypto", "seal a scope key to a member (median)",
                    f"{c['seal_scope_key_ms']:.3f} ms"))
    if "argon2id_moderate_s" in c:
        rows.append(Row("crypto", "Argon2id MODERATE", f"{c['argon2id_moderate_s']:.2f} s"))
    if "rss_256mib_increase_mib" in c:
        rows.append(Row("crypto", "peak RSS increase, 256 MiB stream round trip",
                        f"{c['rss_256mib_increase_mib']} MiB", "<= 32 MiB",
                        verdict(c["rss_256mib_increase_mib"] <= 32, check)))
    if "profile_writes" in c:
        pw = c["profile_writes"]
        rows.append(Row("client", f"rollback marks of {pw['writes']:,} writes from one device",
                        f"first 1000: {pw['first_1000_us']:.0f} us/write, last 1000: "
                        f"{pw['last_1000_us']:.0f} us/write (**{pw['growth']:.2f}x**); "
                        f"profile {pw['profile_bytes'] / MiB:.1f} MiB", "flat (<= 1.5x)",
                        verdict(pw["growth"] <= 1.5, check)))
    for backend, r in backends.items():
        b = backend
        for name, section in r.items():
            if isinstance(section, dict) and "error" in section:
                rows.append(Row(f"{name} ({b})", "section failed", section["error"],
                                "runs", verdict(False, True)))
        r = {k: v for k, v in r.items() if not (isinstance(v, dict) and "error" in v)}
        for _key, g in r.get("gateway", {}).get("results", {}).items():
            primary = g["request"].startswith("GET /v1/records")
            rows.append(Row(f"gateway ({b})", f"{g['request']}, {g['clients']} clients",
                            f"p50 {g['direct']['p50_ms']:.1f} -> {g['gateway']['p50_ms']:.1f} ms "
                            f"(**{g['ratio_p50']:.2f}x**); p99 {g['direct']['p99_ms']:.1f} -> "
                            f"{g['gateway']['p99_ms']:.1f} ms ({g['ratio_p99']:.2f}x)",
                            "<= 1.3x at p50" if primary else "",
                            verdict(g["ratio_p50"] <= TARGETS["gateway_p50_ratio"],
                                    check and primary)))
        for _key, m in r.get("load", {}).get("results", {}).items():
            target = ""
            ok = True
            if b == "postgres" and m["operation"] == "create" and m["clients"] == 16:
                target = f">= {TARGETS['creates_per_s']:.0f}/s, no error"
                ok = m["per_s"] >= TARGETS["creates_per_s"] and m["errors"] == 0
            cpu = m.get("cpu_ms_per_op") or {}
            cpu_txt = ("; CPU ms/op " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()
                                                  if v >= 0.005)) if cpu else ""
            rows.append(Row(f"records ({b})", f"{m['operation']} 10 KiB, {m['clients']} clients",
                            f"{m['per_s']:.0f}/s; p50 {m['p50_ms']:.1f} ms, p99 "
                            f"{m['p99_ms']:.1f} ms; {m['errors']} errors / {m['ops']}"
                            + cpu_txt, target, verdict(ok, check and bool(target))))
        rows += sdk_rows(b, r.get("sdk", {}).get("results", {}), check)
        if "login" in r:
            rows.append(login_row(b, r["login"], check))
        if "first" in r:
            rows.append(first_row(b, r["first"]))
        if "large" in r:
            large = r["large"]
            raw = crypto["raw_aead_mb_s"]
            up, down = large["upload_mb_s"] / raw, large["download_mb_s"] / raw
            rows.append(Row(f"records ({b})", f"{large['bytes'] // MiB} MiB document via SDK",
                            f"up {large['upload_mb_s']} MB/s ({up:.2f}x raw AEAD), down "
                            f"{large['download_mb_s']} MB/s ({down:.2f}x)",
                            f">= {TARGETS['large_doc_ratio']}x raw up and down",
                            verdict(min(up, down) >= TARGETS["large_doc_ratio"], check)))
        rows.append(Row(f"records ({b})", "peak RSS per service",
                        ", ".join(f"{s} {v} MiB" for s, v in r["peak_rss_mib"].items())))
        if "listing" in r:
            listing = r["listing"]
            sizes_txt = "; ".join(f"{int(s):,}: {v['first_page_p50_ms']:.1f} ms"
                                  + (f" (next {v['next_page_p50_ms']:.1f})"
                                     if v["next_page_p50_ms"] else "")
                                  for s, v in listing["sizes"].items())
            rows.append(Row(f"growth ({b})", f"one page of {listing['page_limit']} (p50)",
                            f"{sizes_txt}; **{listing['growth_ratio']:.2f}x**",
                            "flat (<= 1.5x)",
                            verdict(listing["growth_ratio"] <= TARGETS["listing_growth"], check)))
        if "search" in r:
            s = r["search"]
            n = s["patients"]
            rows.append(Row(f"growth ({b})", f"patient search among {n:,} patients (p50)",
                            f"{s[f'with_{n}']['search_p50_ms']:.1f} ms (1 patient: "
                            f"{s['with_1']['search_p50_ms']:.1f} ms); first page of 50 files "
                            f"{s[f'with_{n}']['list_p50_ms']:.1f} ms"))
        if "rotation" in r:
            rot = r["rotation"]
            cpu = rot.get("cpu_ms_per_record", {})
            rows.append(Row(f"growth ({b})", f"rotation of {rot['records']:,} records via "
                            "the SDK, per record",
                            f"**{rot['per_record_ms']:.3f} ms** "
                            f"(overlapping: list {rot['list_ms_per_record']:.3f}"
                            f", re-wrap {rot['rewrap_ms_per_record']:.3f}, rekey "
                            f"{rot['rekey_post_ms_per_record']:.3f}; CPU client "
                            f"{cpu.get('client', 0):.3f} + records-api "
                            f"{cpu.get('records-api', 0):.3f} + gateway "
                            f"{cpu.get('gateway', 0):.3f}; {rot['total_s']:.1f} s; "
                            "audit chain of "
                            f"{rot['audit_events']:,} events "
                            f"{'verified' if rot['audit_chain_verified'] else 'BROKEN'})",
                            "<= 0.5 ms",
                            verdict(rot["per_record_ms"] <= TARGETS["rotation_ms"], check)))
        if "revocation" in r:
            rev = r["revocation"]
            worst = rev["worst_s"]
            rows.append(Row(f"sharing ({b})", "revocation to denied access (worst of "
                            f"{len(rev['runs'])})",
                            "; ".join(f"{k} {v * 1e3:.0f} ms" for k, v in worst.items())
                            + f"; refused after at most {rev.get('most_requests_until_denied')}"
                            " request(s)",
                            "<= 50 ms",
                            verdict(rev["worst_overall_s"] <= TARGETS["revocation_s"]
                                    and not math.isinf(rev["worst_overall_s"]), check)))
    return rows


def rendered_rows(done: dict[str, Any]) -> list[Row]:
    """A finished run's table drawn again from its figures with today's targets (a target
    added since is checked too); its stored table when its figures lack what today's
    table reads (a run older than a field)."""
    if "backends" in done:
        try:
            return rows_of(done["crypto"], done["backends"], not done.get("quick"))
        except (KeyError, TypeError):
            pass
    return [Row(**r) for r in done["table"]]


def login_row(b: str, m: dict[str, Any], check: bool) -> Row:
    """``EcrinClient.login`` (Argon2id aside): requests, and the services' CPU per login."""
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in m["cpu_ms_per_login"].items() if v >= 0.005)
    ok = (m["requests_per_login"] <= TARGETS["login_requests"]
          and m["services_cpu_ms"] <= TARGETS["login_server_cpu_ms"])
    return Row(f"login ({b})", f"login via SDK, {m['logins']} logins (Argon2id aside)",
               f"**{m['requests_per_login']:.2f} requests**, **{m['services_cpu_ms']:.1f} ms "
               f"of service CPU** per login; p50 {m['p50_ms']:.1f} ms; CPU ms/login {cpu}",
               f"<= {TARGETS['login_requests']:.0f} requests, <= "
               f"{TARGETS['login_server_cpu_ms']:.0f} ms", verdict(ok, check))


def first_row(b: str, m: dict[str, Any]) -> Row:
    """Each service's CPU for the first sign-up and login after a start, and the next
    login (``bench_login.first_requests``)."""
    def spent(label: str) -> str:
        return ", ".join(f"{k} {v:.1f}" for k, v in m[label].items() if v >= 0.05)

    return Row(f"login ({b})", "first sign-up and login after start (CPU ms per service)",
               f"sign-up: {spent('signup_ms')}; first login: {spent('first_login_ms')}; "
               f"next login: {spent('next_login_ms')}")


def sdk_rows(b: str, results: dict[str, Any], check: bool) -> list[Row]:
    """SDK creates and reads: requests per operation (target 1), creates at 16 clients on
    PostgreSQL, read latency at 1 client, reads at 16 no slower than creates."""
    rows: list[Row] = []
    creates16 = results.get("sdk create c16", {}).get("per_s")
    for m in results.values():
        cpu = m.get("cpu_ms_per_op") or {}
        cpu_txt = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if v >= 0.005)
        checks: list[tuple[str, bool]] = [
            ("1 request/op", m["requests_per_op"] <= TARGETS["sdk_requests_per_op"])]
        if m["operation"] == "sdk create" and m["clients"] == 16 and b == "postgres":
            checks.append((f">= {TARGETS['sdk_creates_per_s']:.0f}/s",
                           m["per_s"] >= TARGETS["sdk_creates_per_s"]))
        if m["operation"] == "sdk read" and m["clients"] == 1:
            checks.append((f"p50 <= {TARGETS['sdk_read_p50_ms']:.0f} ms",
                           m["p50_ms"] <= TARGETS["sdk_read_p50_ms"]))
        if m["operation"] == "sdk read" and m["clients"] == 16 and creates16:
            checks.append((">= creates/s", m["per_s"] >= creates16))
        checks.append(("no error", m["errors"] == 0))
        rows.append(Row(f"records ({b})", f"{m['operation']} 10 KiB, {m['clients']} clients",
                        f"{m['per_s']:.0f}/s; p50 {m['p50_ms']:.1f} ms, p99 {m['p99_ms']:.1f} "
                        f"ms; **{m['requests_per_op']:.2f} requests/op**; {m['errors']} errors "
                        f"/ {m['ops']}; CPU ms/op {cpu_txt}",
                        ", ".join(name for name, _ in checks),
                        verdict(all(ok for _, ok in checks), check)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, no target checked")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target fails")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--postgres", default=POSTGRES_URL, help="server for throwaway databases")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--docs", type=Path, default=Path("docs/performance.md"))
    parser.add_argument("--no-docs", action="store_true", help="leave docs/performance.md")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="rewrite the docs from a finished run's JSON, measuring nothing")
    args = parser.parse_args(argv)
    if args.render:
        from benchmarks.report import FINDINGS

        done = json.loads(args.render.read_text())
        rows = rendered_rows(done)
        when = datetime.fromtimestamp(args.render.stat().st_mtime, UTC)
        if "finished_at" in done:
            when = datetime.fromisoformat(done["finished_at"])
        write_docs(args.docs, rows, done["machine"], done["duration_s"],
                   done["load_average_at_start"], FINDINGS, when, speed_of(done),
                   done.get("host_probes"))
        print(table(rows))
        return 0
    started = time.perf_counter()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    speed_at_start = bench_crypto.speed_probe()
    host_at_start = host_probes()
    size = sizes(args.quick)
    step("client cryptography")
    crypto = bench_crypto.measure(args.quick)
    step("client profile: 100 000 writes")
    crypto["profile_writes"] = bench_sdk.profile_writes(2_000 if args.quick else 100_000)
    backends: dict[str, dict[str, Any]] = {}
    for backend in ["sqlite"] + ([] if args.no_postgres else ["postgres"]):
        backends[backend] = run_backend(backend, args.postgres, size)
    check = not args.quick
    rows = rows_of(crypto, backends, check)
    info = machine(server_versions(None if args.no_postgres else args.postgres))
    duration = time.perf_counter() - started
    speed = (speed_at_start, bench_crypto.speed_probe())
    host = {key: [host_at_start[key], value] for key, value in host_probes().items()}
    print(table(rows))
    print(f"\n_one core: {speed[0]:.0f} MB/s of raw AEAD at the start, {speed[1]:.0f} at the end; "
          f"the interpreter probe {host['python_us'][0]:.0f} and {host['python_us'][1]:.0f} "
          "us_")
    payload = {"machine": info, "load_average_at_start": load, "quick": args.quick,
               "speed_mb_s": [round(x, 1) for x in speed], "host_probes": host,
               "duration_s": round(duration, 1), "finished_at": datetime.now(UTC).isoformat(),
               "targets": TARGETS, "crypto": crypto,
               "backends": backends}
    path = write_json(args.out, payload, rows)
    print(f"\n_{duration:.0f} s; figures in {path}_")
    if not args.no_docs and not args.quick:
        from benchmarks.report import FINDINGS

        write_docs(args.docs, rows, info, duration, load, FINDINGS, speed=speed, host=host)
        print(f"_{args.docs} rewritten_")
    failed = [r for r in rows if r.result == "FAIL"]
    return 1 if failed and args.strict else 0


def host_probes() -> dict[str, float]:
    """How fast the host runs plain Python, and what a page of new memory costs, now
    (``bench_crypto``'s probes; taken at a run's start and end beside the AEAD probe)."""
    return {"python_us": round(bench_crypto.python_probe(), 1),
            "fresh_page_us": round(bench_crypto.fresh_page_probe(), 2)}


def speed_of(done: dict[str, Any]) -> tuple[float, float] | None:
    """The machine's speed at a finished run's start and end (runs before round 10: None)."""
    speed = done.get("speed_mb_s")
    return (float(speed[0]), float(speed[1])) if isinstance(speed, list) and len(speed) == 2 \
        else None


if __name__ == "__main__":
    sys.exit(main())
