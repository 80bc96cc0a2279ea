"""A session ended through one gateway replica is refused at once by every other.

Each gateway replica reuses a token's session check for ``ECRIN_GATEWAY_SESSION_CACHE_S``.
The attacker holds a stolen access token whose owner logs out (or revokes that session)
through another replica than the one the attacker's requests reach: that replica must not
answer from its cached check. Here two gateways share one PostgreSQL database (two pods of
one Deployment) and cache checks for 4 s, the longest the settings allow, so that only the
replicas' own message (``gateway.app``: a NOTIFY after each write to the gateway's own
routes) can refuse in time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.records_support import new_practitioner
from tests.e2e.test_replicas import Replicated, wait_ready
from tests.support.databases import POSTGRES, needs_postgres
from tests.support.stack import start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e"), pytest.mark.postgres,
              needs_postgres]


class SecondGateway(Replicated):
    """A second gateway on the same database (SQLite is one process: PostgreSQL only)."""

    def start(self) -> None:
        gateway = self._serve("gateway", "gateway", "127.0.0.1", self.gateway_port,
                              self.stack.env("gateway"))
        wait_ready(gateway, self.second_gateway)


@pytest.fixture(scope="module")
def two_gateways(tmp_path_factory: pytest.TempPathFactory,
                 worker_id_safe: str) -> Iterator[SecondGateway]:
    state = tmp_path_factory.mktemp("gateways")
    stack = start_stack(POSTGRES.name, state, f"{worker_id_safe}_gateways",
                        ECRIN_GATEWAY_SESSION_CACHE_S="4")
    with SecondGateway(stack, state / "logs").running() as both:
        yield both


@pytest.mark.parametrize("ending", ["logout", "revoke"], ids=["postgres-logout", "postgres-revoke"])
def test_a_session_ended_through_one_replica_is_refused_by_the_other(
        two_gateways: SecondGateway, tmp_path: Path, ending: str):
    first, second = two_gateways.stack.url("gateway"), two_gateways.second_gateway

    async def scenario() -> list[int]:
        kine = await new_practitioner(first, tmp_path / "kine")
        async with kine.client() as kc:
            stolen = kc.transport.tokens.access_token
            me = f"/v1/directory/{kine.account_id}"
            async with httpx.AsyncClient(headers={"authorization": f"Bearer {stolen}"},
                                         timeout=10) as attacker:
                for _ in range(3):  # the second replica caches the session's check
                    assert (await attacker.get(second + me)).status_code == 200
                owner = {"authorization": f"Bearer {stolen}"}
                async with httpx.AsyncClient(headers=owner, timeout=10) as device:
                    if ending == "logout":
                        ended = await device.post(f"{first}/v1/auth/logout")
                    else:
                        sessions = (await device.get(f"{first}/v1/auth/sessions")).json()
                        [current] = [s for s in sessions if s["current"]]
                        ended = await device.delete(f"{first}/v1/auth/sessions/{current['id']}")
                assert ended.status_code == 204
                ended_at = time.monotonic()
                while (await attacker.get(second + me)).status_code == 200:
                    assert time.monotonic() - ended_at < 1.0, "the other replica was not told"
                    await asyncio.sleep(0.01)
                return [(await attacker.get(second + me)).status_code for _ in range(2)]

    assert asyncio.run(scenario()) == [401, 401]
