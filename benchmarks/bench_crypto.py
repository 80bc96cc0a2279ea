"""Client cryptography through ``bench_e2ee``'s own measurements, plus sealing a scope
key to a member (a grant or a rotation costs one seal per member and scope)."""

from __future__ import annotations

import json
import mmap
import os
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt

from benchmarks import bench_e2ee
from ecrin_e2ee import IdentityKeys, Permission, Relationship, Scope, ScopeKey, seal_entry

MiB = 1 << 20


def seal_ms(iterations: int = 300) -> float:
    granter = IdentityKeys.generate(uuid.uuid4())
    member = IdentityKeys.generate(uuid.uuid4()).public_identity()
    key = ScopeKey.generate(uuid.uuid4(), Scope.CLINICAL, 1)
    times = []
    for _ in range(iterations):
        started = time.perf_counter()
        seal_entry(key, member, relationship=Relationship.CARE_TEAM,
                   permissions={Permission.READ}, granter=granter)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def speed_probe(seconds: float = 0.2) -> float:
    """How fast one core runs now: raw XChaCha20-Poly1305 over 64 KiB messages, MB/s, the
    best of three spells of ``seconds``. Taken at a run's start and end: on a shared host
    the same machine ran at 790 and at 1 332 MB/s within hours, and every CPU time per
    operation moved with it."""
    key, nonce, message = os.urandom(32), os.urandom(24), os.urandom(64 * 1024)
    best = 0.0
    for _ in range(3):
        done, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            for _ in range(20):
                crypto_aead_xchacha20poly1305_ietf_encrypt(message, None, nonce, key)
            done += 20 * len(message)
        best = max(best, done / elapsed / 1e6)
    return best


class _Visit:
    __slots__ = ("patient", "acts", "pain")

    def __init__(self, patient: str, acts: list[str], pain: int) -> None:
        self.patient, self.acts, self.pain = patient, acts, pain

    def summary(self) -> dict[str, Any]:
        return {"patient": self.patient, "acts": len(self.acts), "pain": self.pain}


def _interpreter_work() -> int:
    total = 0
    for i in range(500):
        visit = _Visit(f"patient-{i}", ["AMK 7.5", "AMC 8"][: i % 2 + 1], i % 10)
        text = json.dumps(visit.summary(), sort_keys=True)
        total += len(text) + json.loads(text)["acts"]
    return total


def python_probe(spells: int = 20) -> float:
    """How fast this host runs the interpreter now: microseconds for a fixed piece of
    plain Python (objects, a dict, a JSON round trip, 500 times), the best of ``spells``.
    The AEAD probe above runs one C loop out of the CPU's cache and can stay put while the
    services' Python work costs twice as much (round 15). It is noisier than the services'
    CPU per operation (a spell lasts milliseconds): compare it between runs, not within one."""
    best = float("inf")
    for _ in range(spells):
        started = time.perf_counter()
        for _ in range(10):
            _interpreter_work()
        best = min(best, (time.perf_counter() - started) / 10)
    return best * 1e6


def fresh_page_probe(size: int = 32 * MiB, spells: int = 3) -> float:
    """Microseconds to touch one page of memory the process never had (a new anonymous
    mapping, one byte written per page), the best of ``spells``. On a virtual machine
    whose host backs guest memory on first touch this is 10-15 us against well under one
    on bare metal (round 13): every large body a process receives into new memory pays
    it."""
    page = mmap.PAGESIZE
    best = float("inf")
    for _ in range(spells):
        area = mmap.mmap(-1, size)
        try:
            started = time.perf_counter()
            for offset in range(0, size, page):
                area[offset] = 1
            best = min(best, (time.perf_counter() - started) / (size // page))
        finally:
            area.close()
    return best * 1e6


def measure(quick: bool = False) -> dict[str, Any]:
    if quick:
        bench_e2ee.THROUGHPUT_BYTES = 4 * MiB
    out: dict[str, Any] = {}
    if not quick:
        child = subprocess.run(  # noqa: S603 (this interpreter, bench_e2ee's own child mode)
            [sys.executable, os.path.abspath(bench_e2ee.__file__), "--rss-child"],
            capture_output=True, text=True, check=True, timeout=120)
        rss = json.loads(child.stdout)
        out["rss_256mib_increase_mib"] = round((rss["peak"] - rss["baseline"]) / MiB, 1)
        out["rss_256mib_seconds"] = round(rss["seconds"], 2)
    tp = bench_e2ee.throughput()
    out.update({"raw_aead_mb_s": round(tp["raw"], 1),
                "stream_encrypt_mb_s": round(tp["encrypt"], 1),
                "stream_decrypt_mb_s": round(tp["decrypt"], 1),
                "encrypt_ratio": round(tp["encrypt"] / tp["raw"], 3),
                "decrypt_ratio": round(tp["decrypt"] / tp["raw"], 3)})
    small = bench_e2ee.small_records(40 if quick else 400)
    out["encrypt_sign_10kib_ms"] = round(small["encrypt_ms"], 3)
    out["open_verify_10kib_ms"] = round(small["open_ms"], 3)
    out["seal_scope_key_ms"] = round(seal_ms(30 if quick else 300), 3)
    if not quick:
        out["argon2id_moderate_s"] = round(bench_e2ee.argon2_seconds()["moderate"], 2)
    return out
