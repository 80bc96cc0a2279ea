"""Sign-up tells nobody whether an email has an account: same status, body and timing."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

import httpx
import pytest

from ecrin_e2ee import KdfParams, create_account
from tests.support.users import sign_up, signup_payload

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

TRIES = 200
#: Pairs (one registered, one unknown email) in flight at once. Each answer waits for the
#: gateway's sign-up floor (0.1 s in tests), so the two of a pair go together; more at once
#: would queue on the server beyond the floor and time the queue, not the sign-up.
PAIRS_AT_ONCE = 1


def _payload(email: str) -> dict:
    account_id = uuid.uuid4()
    setup = create_account(account_id, "pass phrase", KdfParams.insecure_for_tests())
    return signup_payload(setup, email, "patient")


def _answer(client: httpx.Client, body: dict) -> tuple[int, dict, float]:
    started = time.perf_counter()
    response = client.post("/v1/auth/signup", json=body,
                           headers={"Idempotency-Key": uuid.uuid4().hex})
    elapsed = time.perf_counter() - started
    return response.status_code, response.json(), elapsed


async def _timed(client: httpx.AsyncClient, kind: str, body: dict
                 ) -> tuple[str, dict, int, dict, float]:
    started = time.perf_counter()
    response = await client.post("/v1/auth/signup", json=body,
                                 headers={"Idempotency-Key": uuid.uuid4().hex})
    return kind, body, response.status_code, response.json(), time.perf_counter() - started


class TestNoEnumeration:
    async def test_registered_and_unknown_emails_get_the_same_answer(self, stack):
        registered = sign_up(stack.url("gateway"), "patient", totp=False)
        # Keys are made beforehand: only the server's part is timed.
        taken = [_payload(registered.email) for _ in range(TRIES)]
        fresh = [_payload(f"new-{uuid.uuid4().hex[:12]}@example.fr") for _ in range(TRIES)]
        times: dict[str, list[float]] = {"registered": [], "unknown": []}
        async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30) as client:
            # Interleaved: both kinds under the same conditions.
            for start in range(0, TRIES, PAIRS_AT_ONCE):
                sends = []
                for i in range(start, min(start + PAIRS_AT_ONCE, TRIES)):
                    pair = [("registered", taken[i]), ("unknown", fresh[i])]
                    if i % 2:  # the first to arrive is answered first: alternate the order
                        pair.reverse()
                    sends += [_timed(client, kind, body) for kind, body in pair]
                answers = await asyncio.gather(*sends)
                for kind, body, status, answer, elapsed in answers:
                    assert status == 202
                    # The body is the request's own fields, nothing the server knew.
                    assert answer == {"account_id": body["account_id"],
                                      "email": body["email"], "role": "patient",
                                      "status": "accepted"}
                    times[kind].append(elapsed)
        med = {kind: statistics.median(values) for kind, values in times.items()}
        spread = {kind: statistics.quantiles(values, n=4) for kind, values in times.items()}
        print(f"\nsign-up over {TRIES} tries each: median registered "
              f"{med['registered'] * 1000:.1f} ms (IQR {spread['registered'][0] * 1000:.1f}-"
              f"{spread['registered'][2] * 1000:.1f}), unknown {med['unknown'] * 1000:.1f} ms "
              f"(IQR {spread['unknown'][0] * 1000:.1f}-{spread['unknown'][2] * 1000:.1f})")
        # Within noise: the medians differ by less than 5 ms, well inside either IQR.
        assert abs(med["registered"] - med["unknown"]) < 0.005

    def test_the_taken_account_is_untouched_and_its_history_says_so(self, stack):
        owner = sign_up(stack.url("gateway"), "patient", totp=False)
        body = _payload(owner.email)
        status, _, _ = _answer(httpx.Client(base_url=stack.url("gateway")), body)
        assert status == 202
        assert owner.login().status_code == 200  # still the owner's keys
        events = owner.get("/v1/auth/audit").json()["events"]
        refused = [e for e in events if e["outcome"] == "refused:taken"]
        assert [(e["action"], e["actor"]) for e in refused] == [("account.signup",
                                                                "anonymous")]
