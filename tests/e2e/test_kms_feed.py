"""A revocation reaches the kms and the records API at once, without a call from the
sharing service.

The kms is on the keys' site: in every deployment the sharing service (on the data site)
does not reach it, and it follows the sharing service's access-change feed instead
(``sharing.feed``, ``ecrin_platform.access_feed``). The records API follows the feed too,
besides the sharing service's POSTs, and keeps an answer granting access 4 s while it
follows (``authz_cache_live_s``). The attacker is a colleague whose grant the owner just
ended and who asks for the file's keys and reads a record again at once: neither service
may answer from its cached "yes". Here the kms caches answers for 4 s (the longest the
settings allow) and the sharing service has neither the kms's nor the records API's
address, so only the feed can deny in time (a POST lost, in the records API's case). On
PostgreSQL, the sharing service runs as two replicas: the revocation goes through one, the
services follow the other, and the change crosses by ``NOTIFY``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest
from ecrin_client.kine import PatientIdentity
from ecrin_client.sharing import Sharing

from tests.e2e.records_support import (
    new_practitioner,
    pin_as_listed,
    session_note,
    session_note_meta,
)
from tests.e2e.test_replicas import SECOND, Replicated, wait_ready
from tests.support.databases import available_backends
from tests.support.stack import start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


class SecondSharing(Replicated):
    """A second sharing replica at ``SECOND`` (same database), with a gateway of its own."""

    def start(self) -> None:
        port = self.stack.ports["sharing"]
        replica = self._serve("sharing", "sharing", SECOND, port, self.stack.env("sharing"))
        env = {**self.stack.env("gateway"), "ECRIN_GATEWAY_SHARING_URL": f"http://{SECOND}:{port}"}
        gateway = self._serve("gateway", "gateway", "127.0.0.1", self.gateway_port, env)
        for process, url in ((replica, f"http://{SECOND}:{port}"),
                             (gateway, self.second_gateway)):
            wait_ready(process, url)


@pytest.fixture(scope="module", params=[b.name for b in available_backends()])
def kms_on_its_own(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   worker_id_safe: str) -> Iterator[SecondSharing]:
    """The stack and, on PostgreSQL, a second sharing replica and its gateway."""
    state = tmp_path_factory.mktemp("kms-feed")
    stack = start_stack(request.param, state, f"{worker_id_safe}_kmsfeed",
                        ECRIN_KMS_AUTHZ_CACHE_S="4", ECRIN_SHARING_KMS_URL="",
                        ECRIN_RECORDS_AUTHZ_CACHE_S="4", ECRIN_SHARING_RECORDS_URL="")
    with SecondSharing(stack, state / "logs").running(
            start=request.param == "postgres") as both:
        yield both


@pytest.mark.parametrize("asked", ["keys", "record"])
def test_a_revoked_member_gets_nothing_more_at_once(kms_on_its_own: SecondSharing,
                                                    tmp_path: Path, asked: str):
    first = kms_on_its_own.stack.url("gateway")
    # The owner's device reaches the other sharing replica where there is one.
    revoking = kms_on_its_own.second_gateway if kms_on_its_own.processes else first

    async def scenario() -> list[int]:
        kine = await new_practitioner(first, tmp_path / "kine")
        colleague = await new_practitioner(first, tmp_path / "colleague")
        async with kine.client() as kc, colleague.client() as cc:
            records, patients = await kine.unlocked(kc)
            patient = await patients.create(PatientIdentity(name="Clé Révoquée",
                                                            birth_date=date(1968, 3, 3)))
            fid = patient.file_id
            note = session_note("Bilan du genou")
            made = await records.create(fid, "clinical", session_note_meta("Bilan", note), note)
            await pin_as_listed(kc, colleague.account_id)
            grant = await Sharing(records).grant(fid, colleague.account_id, "care_team")
            path = (f"/v1/keyrings/{fid}/entries" if asked == "keys"
                    else f"/v1/records/{made.record_id}?include=content")
            token = cc.transport.tokens.access_token
            async with httpx.AsyncClient(headers={"authorization": f"Bearer {token}"},
                                         timeout=10) as attacker:
                for _ in range(3):  # the service caches "yes" (and follows the feed by now)
                    assert (await attacker.get(first + path)).status_code == 200
                    await asyncio.sleep(0.1)
                owner = {"authorization": f"Bearer {kc.transport.tokens.access_token}"}
                async with httpx.AsyncClient(headers=owner, timeout=10) as device:
                    revoked = await device.delete(f"{revoking}/v1/grants/{grant.grant_id}")
                assert revoked.status_code == 200
                revoked_at = time.monotonic()
                # The revocation's answer waits for its own replica's streams only: a
                # service following another replica hears of it within milliseconds, far
                # inside its 4 s cache.
                while (await attacker.get(first + path)).status_code == 200:
                    assert time.monotonic() - revoked_at < 1.0, f"{asked}: not told"
                    await asyncio.sleep(0.01)
                return [(await attacker.get(first + path)).status_code for _ in range(2)]

    assert asyncio.run(scenario()) == [404, 404]
