"""A service that fails under a forwarded request is a 503 with Retry-After, never a 500:
real sockets that refuse, drop, reset or never answer."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from ecrin_platform.devstack import free_port
from tests.support.apps import build_app, running


async def _drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads the request, then closes without a word."""
    await reader.read(65536)
    writer.close()


async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads the request, then resets the connection (RST, not FIN)."""
    await reader.read(65536)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads the request and never answers."""
    await reader.read(65536)
    await asyncio.sleep(30)


@pytest.mark.parametrize("behaviour", ["refused", "dropped", "reset", "silent"])
async def test_an_upstream_failure_is_a_503(database_url_for, internal_keys, behaviour):
    server = None
    if behaviour == "refused":
        port = free_port()  # nothing listens there
    else:
        handler = {"dropped": _drop, "reset": _reset, "silent": _silent}[behaviour]
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    app = build_app("gateway", database_url_for("gateway"), internal_keys,
                    kms_url=f"http://127.0.0.1:{port}", upstream_timeout_s=0.5)
    try:
        async with running(app, rollback=False) as client:
            for method, body in (("GET", None), ("POST", b'{"a": 1}')):
                response = await client.request(
                    method, "/v1/directory/anyone", content=body,
                    headers={"content-type": "application/json"})
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"] == "2"
                assert response.headers["content-type"] == "application/problem+json"
                assert response.headers["x-request-id"]
    finally:
        if server is not None:
            server.close()


async def test_an_unknown_method_never_reaches_a_service(database_url_for, internal_keys):
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.read(65536))
        writer.close()

    server = await asyncio.start_server(record, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    app = build_app("gateway", database_url_for("gateway"), internal_keys,
                    kms_url=f"http://127.0.0.1:{port}")
    try:
        async with running(app, rollback=False) as client:
            for method in ("PROPFIND", "FOO"):
                response = await client.request(method, "/v1/directory/anyone")
                assert response.status_code == 405, (method, response.status_code)
        assert seen == []
    finally:
        server.close()
