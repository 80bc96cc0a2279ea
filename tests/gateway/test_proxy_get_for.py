"""``Proxy.get_for``: what a login's answer carries from the kms (``unlock``). Only a 200
with a JSON object of bounded size, in time, goes out, re-encoded as strict JSON; anything
else is None, and the device then asks for itself and learns why. Real sockets, canned
answers, as a broken or hostile kms would send them."""

from __future__ import annotations

import asyncio
import json

import pytest

from ecrin_platform.devstack import free_port
from ecrin_platform.tokens import InternalTokenVerifier, Principal
from gateway.auth.principal import passes_gates
from gateway.proxy import CARRIED_BODY, Proxy, upstream_session
from gateway.settings import Settings

PRINCIPAL = Principal(account_id="0b6f4a52-6c1e-4a7e-9d0c-5b1e2f3a4c5d", role="patient",
                      session_id="6a1f0e2b-8c3d-4e5f-9a0b-1c2d3e4f5a6b", second_factor=False)


async def _anonymous(_request: object) -> None:
    return None


def _answer(status: str, body: bytes, length: int | None = None) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
    head += f"content-length: {len(body) if length is None else length}\r\n\r\n"
    return head.encode() + body


async def _get_for(answer: bytes | None, issuer, *, drip_s: float = 0.0
                   ) -> tuple[bytes | None, bytes]:
    """What ``get_for`` returns against a server that sends ``answer`` (None: nothing
    listens; ``drip_s``: a byte at a time, that long apart), and the request it read."""
    seen = bytearray()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.extend(await reader.readuntil(b"\r\n\r\n"))
        assert answer is not None
        for i in range(len(answer)) if drip_s else [0]:
            writer.write(answer[i:i + 1] if drip_s else answer)
            await writer.drain()
            await asyncio.sleep(drip_s)
        writer.close()

    server = None
    if answer is None:
        port = free_port()
    else:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    client = upstream_session(60.0)
    proxy = Proxy(client=client, issuer=issuer, upstream_url=lambda _: f"http://127.0.0.1:{port}",
                  resolve_principal=_anonymous)
    try:
        return await proxy.get_for(PRINCIPAL, "kms", "/v1/keys/me/unlock/c2FsdA", "req-1",
                                   timeout_s=0.5), bytes(seen)
    finally:
        await client.close()
        if server is not None:
            server.close()


async def test_a_json_object_goes_out_as_it_came_with_the_sessions_token(issuer, internal_keys):
    body = '{"wrap": {"v": 1},  "directory": {"name": "Zoé \\ud83d\\ude00"}}'.encode()
    got, request = await _get_for(_answer("200 OK", body), issuer)
    assert got is not None and got.isascii()
    assert json.loads(got) == json.loads(body)
    lines = request.decode("latin-1").split("\r\n")
    assert lines[0] == "GET /v1/keys/me/unlock/c2FsdA HTTP/1.1"
    token = next(line.split(": ", 1)[1] for line in lines if line.lower().startswith(
        "x-ecrin-internal-token:"))
    claims = InternalTokenVerifier(internal_keys[1], "kms").verify(token)
    assert claims.principal == PRINCIPAL


@pytest.mark.parametrize("answer", [
    _answer("200 OK", b'{"wrap": '),  # not JSON
    _answer("200 OK", b'[{"wrap": {}}]'),  # not an object
    _answer("200 OK", b"null"),
    _answer("200 OK", b'{"wrap": NaN}'),  # Python's parser takes it, JSON does not
    _answer("200 OK", b'{"wrap": -Infinity}'),
    _answer("200 OK", b'\xef\xbb\xbf{"wrap": {}}'),  # a BOM
    _answer("200 OK", b'{"wrap": "\xed\xa0\x80"}'),  # a raw surrogate: not UTF-8
    _answer("200 OK", '{"wrap": {}}'.encode("utf-16")),
    _answer("200 OK", b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),  # too deep
    _answer("200 OK", b"{}", length=CARRIED_BODY + 1),  # announced too large
    _answer("404 Not Found", json.dumps({"type": "about:blank"}).encode()),
    _answer("503 Service Unavailable", b"{}"),
    None,  # nothing listens
])
async def test_anything_else_is_none(issuer, answer):
    got, _ = await _get_for(answer, issuer)
    assert got is None


async def test_a_kms_that_drips_its_answer_is_given_up_on_in_time(issuer):
    started = asyncio.get_running_loop().time()
    got, _ = await _get_for(_answer("200 OK", b'{"wrap": {}, "directory": {}}'), issuer,
                            drip_s=0.05)
    assert got is None
    assert asyncio.get_running_loop().time() - started < 1.5  # the 0.5 s bound, not 4 s


@pytest.mark.parametrize(("principal", "path", "passes"), [
    (PRINCIPAL, "/v1/keys/me/unlock/c2FsdA", True),
    # what the login fetches passes the proxy's gates, and would stop passing with them
    (Principal(account_id=PRINCIPAL.account_id, role="patient", session_id="s",
               second_factor=False, session_kind="recovery"), "/v1/keys/me/unlock/c2FsdA",
     False),
    (Principal(account_id=PRINCIPAL.account_id, role="practitioner", session_id="s",
               second_factor=False), "/v1/records/abc", False),
    (Principal(account_id=PRINCIPAL.account_id, role="practitioner", session_id="s",
               second_factor=True), "/v1/records/abc", True),
])
def test_a_fetch_on_a_sessions_behalf_passes_the_proxys_gates(principal, path, passes):
    settings = Settings(require_practitioner_2fa=True)
    assert passes_gates(settings, principal, path) is passes
