"""A revocation reaches every replica of the records API, not the one behind the address.

Production runs several records API replicas behind one Service, each with its own cache
of access answers. The attacker is a colleague whose grant the owner just ended: a load
balancer that sends their next read to a replica the sharing service did not tell would
answer it from that replica's cache. Here two real replicas share one database, on
127.0.0.1 and 127.0.0.2 at the same port (as two pods behind a headless Service), each
with its own gateway, and cache answers for 4 s (the longest the settings allow) so that
only the sharing service's message can deny in time. The sharing service is told the
replicas' names (``ECRIN_SHARING_RECORDS_REPLICAS``), as the Kubernetes overlays tell it
the headless Service's.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Self

import httpx
import pytest
from ecrin_client.kine import PatientIdentity, RecordMetadata
from ecrin_client.sharing import Sharing

from ecrin_platform.devstack import Stack, free_port
from tests.e2e.records_support import new_practitioner, pin_as_listed
from tests.support.databases import available_backends
from tests.support.stack import start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

SECOND = "127.0.0.2"


class Replicated:
    """A stack whose records API has a second replica at ``SECOND``, with a gateway of its
    own (the load balancer's other choice)."""

    def __init__(self, stack: Stack, log_dir: Path) -> None:
        self.stack = stack
        self.port = stack.ports["records-api"]
        self.gateway_port = free_port()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.log_dir = log_dir

    def start(self) -> None:
        replica = self._serve("records-api", "records_api", SECOND, self.port,
                              self.stack.env("records-api"))
        env = {**self.stack.env("gateway"),
               "ECRIN_GATEWAY_RECORDS_URL": f"http://{SECOND}:{self.port}"}
        gateway = self._serve("gateway", "gateway", "127.0.0.1", self.gateway_port, env)
        for process, url in ((replica, f"http://{SECOND}:{self.port}"),
                             (gateway, self.second_gateway)):
            wait_ready(process, url)

    @property
    def second_gateway(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def _serve(self, name: str, package: str, host: str, port: int,
               env: dict[str, str]) -> subprocess.Popen[bytes]:
        out = (self.log_dir / f"{name}-second.log").open("ab")
        process = subprocess.Popen(  # noqa: S603 - this interpreter, one of our packages
            [sys.executable, "-m", package, "serve", "--host", host, "--port", str(port),
             "--metrics-port", str(free_port())], env=env, stdout=out, stderr=out)
        self.processes.append(process)
        return process

    @contextlib.contextmanager
    def running(self, *, start: bool = True) -> Iterator[Self]:
        """The second processes started (unless ``start`` is false), then stopped with
        the whole stack."""
        try:
            if start:
                self.start()
            yield self
        finally:
            self.stop()
            self.stack.stop_all()

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(process: subprocess.Popen[bytes], url: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not become ready")


#: PostgreSQL where there is one (replicas share it in production), else SQLite.
@pytest.fixture(scope="module", params=[available_backends()[-1].name])
def replicated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               worker_id_safe: str) -> Iterator[Replicated]:
    state = tmp_path_factory.mktemp("replicas")
    stack = start_stack(request.param, state, f"{worker_id_safe}_replicas",
                        ECRIN_RECORDS_AUTHZ_CACHE_S="4",
                        ECRIN_SHARING_RECORDS_REPLICAS=f"127.0.0.1, {SECOND}")
    with Replicated(stack, state / "logs").running() as both:
        yield both


def meta(title: str) -> RecordMetadata:
    return RecordMetadata(title=title, kind="document", content_type="application/pdf",
                          size=6, created_at=datetime.now(UTC))


def test_a_revoked_member_is_refused_at_once_by_every_replica(replicated, tmp_path):
    first, second = replicated.stack.url("gateway"), replicated.second_gateway

    async def scenario():
        kine = await new_practitioner(first, tmp_path / "kine")
        colleague = await new_practitioner(first, tmp_path / "colleague")
        async with kine.client() as kc, colleague.client() as cc:
            records, patients = await kine.unlocked(kc)
            patient = await patients.create(PatientIdentity(name="Deux Répliques",
                                                            birth_date=date(1975, 5, 5)))
            fid = patient.file_id
            note = await records.create(fid, "clinical", meta("bilan"), b"%PDF-1")
            await pin_as_listed(kc, colleague.account_id)
            grant = await Sharing(records).grant(fid, colleague.account_id, "care_team")
            path = f"/v1/records/{note.record_id}"
            token = cc.transport.tokens.access_token
            async with httpx.AsyncClient(headers={"authorization": f"Bearer {token}"},
                                         timeout=10) as attacker:
                for gateway in (first, second, first, second):  # both replicas cache "yes"
                    assert (await attacker.get(gateway + path)).status_code == 200
                revoked = await kc.transport.request("DELETE", f"/v1/grants/{grant.grant_id}")
                assert revoked.status_code == 200
                answers = [(await attacker.get(gateway + path)).status_code
                           for gateway in (second, first)]
            assert answers == [404, 404]

    asyncio.run(scenario())
