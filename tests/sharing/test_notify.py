"""The access-change notice reaches every replica a target names, over verified TLS.

Two TLS servers stand for two pods of one Service: same port, on 127.0.0.1 and 127.0.0.2,
with a certificate that names ``localhost`` and 127.0.0.1 only (as a pod's names the
Service, never the pod's address). The notifier reaches each by address and must still
check it as ``localhost``: a notice sent by address without the Service's name as TLS
server name fails verification at 127.0.0.2.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ecrin_platform.devstack import free_port
from sharing import notify
from sharing.notify import PATH, AccessNotifier, Target
from tests.support.certificates import CertificateAuthority

pytestmark = pytest.mark.timeout(60)

FILE = uuid.UUID("5e1d0000-0000-4000-8000-000000000001")


def replica(seen: list[tuple[str, str, dict[str, str]]], name: str) -> Starlette:
    async def changed(request: Request) -> Response:
        seen.append((name, request.headers["host"], await request.json()))
        return Response(status_code=204)

    return Starlette(routes=[Route(PATH, changed, methods=["POST"])])


@asynccontextmanager
async def two_replicas(tmp_path) -> AsyncIterator[tuple[int, ssl.SSLContext, list]]:
    ca = CertificateAuthority(tmp_path, "internal")
    crt, key = ca.issue("records-api")
    port = free_port()
    seen: list[tuple[str, str, dict[str, str]]] = []
    servers = [uvicorn.Server(uvicorn.Config(replica(seen, host), host=host, port=port,
                                             ssl_certfile=str(crt), ssl_keyfile=str(key),
                                             log_level="warning", lifespan="off"))
               for host in ("127.0.0.1", "127.0.0.2")]
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    while not all(server.started for server in servers):
        assert not any(task.done() for task in tasks), "a replica did not start"
        await asyncio.sleep(0.01)
    try:
        yield port, ssl.create_default_context(cafile=str(ca.ca_file)), seen
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks)


async def tell(target: Target, verify: ssl.SSLContext) -> None:
    async with httpx.AsyncClient(verify=verify) as http:
        await AccessNotifier(http, [target]).files_changed([FILE], token="t")


class TestReplicas:
    async def test_every_address_is_told_under_the_service_name(self, tmp_path):
        async with two_replicas(tmp_path) as (port, verify, seen):
            await tell(Target.of("records-api", f"https://localhost:{port}",
                                 "127.0.0.1, 127.0.0.2,"), verify)
        assert sorted(seen) == [(host, f"localhost:{port}", {"file_ids": [str(FILE)]})
                                for host in ("127.0.0.1", "127.0.0.2")]

    async def test_names_that_resolve_to_nothing_leave_the_service_address(self, tmp_path):
        async with two_replicas(tmp_path) as (port, verify, seen):
            await tell(Target.of("records-api", f"https://127.0.0.1:{port}/",
                                 "replicas.invalid"), verify)
        assert [(host, header) for host, header, _ in seen] == [
            ("127.0.0.1", f"127.0.0.1:{port}")]

    async def test_no_replicas_named_tells_the_url(self, tmp_path):
        async with two_replicas(tmp_path) as (port, verify, seen):
            await tell(Target.of("records-api", f"https://localhost:{port}"), verify)
        assert [host for host, _, _ in seen] == ["127.0.0.1"]

    async def test_an_address_that_fails_verification_is_not_told(self, tmp_path):
        """The name checked is the URL's: replicas found by DNS are trusted no further than
        the certificate they present (here, a CA the notifier does not trust)."""
        async with two_replicas(tmp_path) as (port, _, seen):
            other = ssl.create_default_context(
                cafile=str(CertificateAuthority(tmp_path, "other").ca_file))
            await tell(Target.of("records-api", f"https://localhost:{port}", "127.0.0.2"),
                       other)
        assert seen == []

    async def test_a_replica_whose_certificate_names_another_service_is_not_told(
            self, tmp_path):
        """Same CA, but the certificate names localhost, not the URL's ``records-api``: a
        pod of another service behind a poisoned DNS answer gets nothing."""
        async with two_replicas(tmp_path) as (port, verify, seen):
            await tell(Target.of("records-api", f"https://records-api:{port}",
                                 "127.0.0.1,127.0.0.2"), verify)
        assert seen == []

    async def test_a_silent_resolver_holds_the_notice_a_bounded_time(self, tmp_path,
                                                                     monkeypatch):
        loop = asyncio.get_running_loop()
        resolve = loop.getaddrinfo

        async def silent_about_replicas(host, *args, **kwargs):
            if host == "records-api-replicas":
                await asyncio.sleep(30)
            return await resolve(host, *args, **kwargs)

        async with two_replicas(tmp_path) as (port, verify, seen):
            monkeypatch.setattr(loop, "getaddrinfo", silent_about_replicas)
            monkeypatch.setattr(notify, "LOOKUP_TIMEOUT_S", 0.2)
            started = time.monotonic()
            await tell(Target.of("records-api", f"https://127.0.0.1:{port}",
                                 "records-api-replicas"), verify)
            took = time.monotonic() - started
            monkeypatch.undo()
        assert took < 5
        assert [host for host, _, _ in seen] == ["127.0.0.1"]  # the service address


def test_target_names_are_a_comma_separated_list():
    target = Target.of("kms", "http://kms:8002/", " a.svc ,b.svc,, ")
    assert (target.url, target.replicas) == (httpx.URL("http://kms:8002"), ("a.svc", "b.svc"))
