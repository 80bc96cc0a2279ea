"""Time from a revocation to denied access, for the two things a grant releases: scope
keys (kms, ``GET /v1/keyrings/{file}/entries``) and ciphertext (records-api,
``GET /v1/records/{id}``). The grantee keeps reading every few milliseconds before the
revocation, so both services hold a fresh authorisation answer in their cache when the
owner's ``DELETE /v1/grants/{id}`` returns; the clock starts then. The sharing service
tells the records API when a grant ends (a POST its answer waits for), and the kms through
the feed it follows, as in every deployment: the sharing service is restarted first without
the kms address the development stack gives it on one machine, so the kms row measures the
feed alone (it is the last section of a backend's run).

The warming reads stop (and their last answers arrive) just before the revocation is sent,
so that a read still in flight is not counted as part of the revocation; each run checks
that the denial came within the services' cache lifetime of the last allowed read, so that
it can only be the sharing service's message, not an expired cache, that denied it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from benchmarks.actors import Practitioner, upload
from benchmarks.services import BenchStack
from kms.settings import Settings as KmsSettings
from records_api.settings import Settings as RecordsSettings

POLL_S = 0.01
GIVE_UP_S = 10.0
#: The authorisation caches' lifetime, records API and kms (``authz_cache_s``): a denial
#: later than this after the last allowed read would prove nothing about the push.
CACHE_S = min(RecordsSettings.model_fields["authz_cache_s"].default,
              KmsSettings.model_fields["authz_cache_s"].default)


async def measure(bs: BenchStack, repeats: int = 3) -> dict[str, Any]:
    bs.restart("sharing", ECRIN_SHARING_KMS_URL="")
    owner = Practitioner.sign_up(bs.gateway)
    runs = []
    async with httpx.AsyncClient(timeout=30) as http:
        record_id, record = owner.encrypt(10 * 1024)
        await upload(http, bs.gateway, owner.headers, owner.file_id, record_id, record)
        targets = {"key release (kms)": f"/v1/keyrings/{owner.file_id}/entries",
                   "record read (records-api)": f"/v1/records/{record_id}"}
        for _ in range(repeats):
            colleague = Practitioner.sign_up(bs.gateway, name="Collègue")
            grant_id = owner.share(colleague.user, "care_team", {"clinical": "read"})
            headers = colleague.headers
            for path in targets.values():
                got = await http.get(bs.gateway + path, headers=headers)
                if got.status_code != 200:
                    raise RuntimeError(f"{path} before revocation: HTTP {got.status_code}")

            stop_warming = asyncio.Event()

            async def warm(path: str, headers: dict[str, str] = headers,
                           stop: asyncio.Event = stop_warming) -> int:
                status = 0
                while not stop.is_set():
                    status = (await http.get(bs.gateway + path, headers=headers)).status_code
                    await asyncio.sleep(POLL_S)
                return status

            warmers = [asyncio.create_task(warm(p)) for p in targets.values()]
            await asyncio.sleep(0.3)
            stop_warming.set()
            last = await asyncio.gather(*warmers)
            last_allowed = time.perf_counter()
            if any(status != 200 for status in last):
                raise RuntimeError(f"reads before revocation: HTTP {last}")
            started = time.perf_counter()
            revoked = await http.delete(f"{bs.gateway}/v1/grants/{grant_id}",
                                        headers=owner.headers)
            revoked_at = time.perf_counter()
            if revoked.status_code != 200:
                raise RuntimeError(f"revoke: HTTP {revoked.status_code}: {revoked.text[:120]}")

            async def until_denied(path: str, headers: dict[str, str] = headers,
                                   since: float = revoked_at) -> tuple[float, int]:
                """Seconds until a request is refused, and how many were sent (1: the
                first request after the revocation was refused)."""
                sent = 0
                while time.perf_counter() - since < GIVE_UP_S:
                    got = await http.get(bs.gateway + path, headers=headers)
                    sent += 1
                    if got.status_code == 404:
                        return time.perf_counter() - since, sent
                    await asyncio.sleep(POLL_S)
                return float("inf"), sent

            denied = await asyncio.gather(*(until_denied(p) for p in targets.values()))
            since_allowed = max(revoked_at + secs for secs, _ in denied) - last_allowed
            if since_allowed >= CACHE_S:
                raise RuntimeError(f"denied {since_allowed:.3f} s after the last allowed read, "
                                   f"not within the {CACHE_S} s cache: the push is not shown")
            runs.append({"revoke_request_ms": round((revoked_at - started) * 1e3, 1),
                         "since_last_allowed_ms": round(since_allowed * 1e3, 1),
                         **{name: round(s, 3) for name, (s, _) in zip(targets, denied,
                                                                      strict=True)},
                         "requests_until_denied": {name: n for name, (_, n) in zip(
                             targets, denied, strict=True)}})
    worst = {name: max(r[name] for r in runs) for name in targets}
    return {"backend": bs.backend, "runs": runs, "worst_s": worst,
            "worst_overall_s": max(worst.values()),
            "most_requests_until_denied": max(n for r in runs
                                              for n in r["requests_until_denied"].values())}
