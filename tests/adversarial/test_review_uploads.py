"""Attacker's review of resumable uploads and of the logout's Clear-Site-Data (brief G).

Each test fails on the code it was written against and says why:

* a completion that races another completion of the same session (a client retrying the
  last piece whose answer was lost while the server was still re-reading the content)
  deletes the content the first one committed: the version is committed, acknowledged,
  and unreadable for ever (``resumable.append_upload`` discards the session on *any*
  failure of ``commit_upload``, ``VersionCommitted`` included);
* a malicious server that answers every piece with ``Upload-Offset: 0`` keeps the SDK
  sending the same piece for ever (a successful PATCH resets the failure budget whatever
  offset it reports);
* a malicious server that answers the first piece with ``Upload-Complete: ?1`` makes the
  SDK report the document as stored after one piece of three;
* a compromised backend (here the kms, on its own site) can put ``Clear-Site-Data:
  "storage"`` on any answer, and the gateway forwards it: the browser's sealed device
  state (pins, rollback marks) is wiped by a server, which is what the logout route's own
  comment says a malicious server wants.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from ecrin_client.errors import EcrinError
from ecrin_client.kine import PatientIdentity, RecordMetadata

from tests.adversarial.malicious import Exchange, MaliciousServer
from tests.e2e.records_support import new_practitioner
from tests.support.apps import build_app, running

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

MIB = 1 << 20


def _document(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        for _ in range(size // MIB):
            f.write(os.urandom(MIB))
    return path


def _meta(size: int) -> RecordMetadata:
    return RecordMetadata(title="Scanner", kind="imaging", content_type="application/pdf",
                          size=size, created_at=datetime.now(UTC), filename="scan.pdf")


async def _forward(inner: httpx.AsyncHTTPTransport, request: httpx.Request
                   ) -> tuple[int, dict[str, str], bytes]:
    response = await inner.handle_async_request(request)
    try:
        content = await response.aread()
    finally:
        await response.aclose()
    headers = {k.lower(): v for k, v in response.headers.items()
               if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")}
    return response.status_code, headers, content


class RetriedCompletion(httpx.AsyncBaseTransport):
    """The network between the SDK and the real gateway. The first completing piece is sent
    on (A); as soon as the server holds every byte (HEAD: offset == length) and is still
    re-reading them to check the digest, the same session gets the empty completion a
    client sends after losing A's answer (B). The SDK gets A's answer."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.outcome: dict[str, object] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if (request.method != "PATCH" or request.headers.get("upload-complete") != "?1"
                or self.outcome):
            return await self.inner.handle_async_request(request)
        body = b"".join([piece async for piece in request.stream])  # type: ignore[union-attr]  # an httpx request built by httpx: an async stream
        self.outcome["record_id"] = request.url.path.split("/")[3]
        auth = {"authorization": request.headers["authorization"]}
        first = asyncio.ensure_future(_forward(self.inner, httpx.Request(
            "PATCH", request.url, headers=request.headers, content=body)))
        missed = False
        while True:
            _, state, _ = await _forward(self.inner, httpx.Request("HEAD", request.url,
                                                                   headers=auth))
            if state.get("upload-complete") == "?1":
                missed = True  # A committed before the retry could start: no race
                break
            if state.get("upload-offset") == state.get("upload-length"):
                break
            await asyncio.sleep(0.002)
        length = state["upload-length"]
        second = await _forward(self.inner, httpx.Request("PATCH", request.url, headers={
            **auth, "content-type": "application/octet-stream", "content-length": "0",
            "upload-offset": length, "upload-complete": "?1"}, content=b""))
        status, headers, content = await first
        self.outcome.update(missed=missed, first=status, second=second[0],
                            second_body=second[2][:300])
        return httpx.Response(status, headers=headers, content=content, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_completion_racing_another_never_deletes_the_committed_content(
        stack, tmp_path: Path) -> None:
    """The author's own retry of the last piece (its answer lost, the server still checking
    the digest) must not destroy what the first completion committed. Today the loser's
    ``commit_upload`` raises ``VersionCommitted`` and ``append_upload``'s ``except
    BaseException: discard_quietly(upload.id)`` deletes the rows and the upload the version
    now points to: GET content answers 503 content-unavailable for ever, and the version,
    committed, cannot be uploaded again."""
    size = 48 * MIB
    source = _document(tmp_path / "scan.pdf", size)
    kine = await new_practitioner(stack.url("gateway"), tmp_path / "home")
    raced = 0
    # The window is the first completion's digest check; try a few times to land in it.
    for attempt in range(4):
        network = RetriedCompletion()
        async with kine.client(network) as client:
            records, patients = await kine.unlocked(client)
            patient = await patients.create(PatientIdentity(
                name=f"Course Complète {attempt}", birth_date=datetime(1975, 3, 4).date()))
            sdk_error: EcrinError | None = None
            try:
                await records.create(patient.file_id, "clinical", _meta(size), source)
            except EcrinError as error:
                sdk_error = error
        outcome = network.outcome
        assert outcome, "the SDK never sent a completing piece"
        if outcome["missed"]:
            continue
        raced += 1
        async with kine.client() as client:
            await kine.unlocked(client)
            got = await client.transport._send(
                "GET", f"/v1/records/{outcome['record_id']}/versions/1/content",
                token=client.transport.tokens.access_token)  # type: ignore[union-attr]  # logged in: tokens are set
        assert got.status_code == 200, (
            f"two completions of one session at once: A answered {outcome['first']}, B "
            f"{outcome['second']} ({outcome['second_body']!r}); the SDK "
            f"{'raised ' + repr(sdk_error) if sdk_error else 'reported the document stored'}"
            f"; now GET content answers {got.status_code} {got.text[:200]}: the committed "
            "version's content was deleted by the losing completion")
    if not raced:
        # The window is a commit's few milliseconds; the same interleaving, made
        # deterministic, is tests/records_api/test_resumable_upload.py::TestRefusals::
        # test_what_a_losing_request_discards_never_touches_the_committed_content.
        print("\nthe first completion committed before the retry every time: race not hit")


def _uploads_patch(exchange: Exchange) -> bool:
    return exchange.method == "PATCH" and "/content/uploads/" in exchange.path


async def test_a_server_that_never_moves_the_offset_cannot_keep_the_sdk_sending(
        stack, tmp_path: Path) -> None:
    """A malicious server answers every piece ``204 Upload-Offset: 0, Upload-Complete: ?0``.
    The SDK must give up (a server that does not follow the protocol) after a bounded number
    of pieces; today each 204 resets the failure budget and sets the offset back to 0, so
    the same piece goes up for ever (bandwidth and battery, no error to the user)."""
    size = 3 * MIB
    source = _document(tmp_path / "scan.pdf", size)
    kine = await new_practitioner(stack.url("gateway"), tmp_path / "home")
    patches = 0
    looping = asyncio.Event()

    def rewrite(exchange: Exchange) -> None:
        nonlocal patches
        if not _uploads_patch(exchange):
            return
        patches += 1
        if patches >= 40:
            looping.set()
        exchange.status, exchange.content = 204, b""
        exchange.headers = {"upload-offset": "0", "upload-complete": "?0"}
        exchange.tampered = True

    async with kine.client(MaliciousServer(rewrite)) as client:
        records, patients = await kine.unlocked(client)
        patient = await patients.create(PatientIdentity(
            name="Boucle Infinie", birth_date=datetime(1982, 5, 6).date()))
        upload = asyncio.ensure_future(
            records.create(patient.file_id, "clinical", _meta(size), source))
        watch = asyncio.ensure_future(looping.wait())
        await asyncio.wait({upload, watch}, timeout=120,
                           return_when=asyncio.FIRST_COMPLETED)
        still_going = not upload.done()
        upload.cancel()
        watch.cancel()
        if not still_going:
            assert isinstance(upload.exception(), EcrinError), upload.exception()
    assert not still_going, (
        f"the SDK sent the same {size} bytes {patches} times to a server that answers "
        "every piece 'Upload-Offset: 0' and was still going")


async def test_a_server_cannot_make_the_sdk_believe_a_partial_upload_complete(
        stack, tmp_path: Path) -> None:
    """A malicious server answers the first of three pieces ``Upload-Complete: ?1`` (and
    the length as offset). The SDK sent a piece that was not the last: a completion there
    is a protocol violation. Today ``records.create`` returns as if the document were
    stored; only 8 MiB of about 20 left the device and the version is never committed."""
    size = 20 * MIB
    source = _document(tmp_path / "scan.pdf", size)
    kine = await new_practitioner(stack.url("gateway"), tmp_path / "home")
    sent: list[int] = []

    def rewrite(exchange: Exchange) -> None:
        if not _uploads_patch(exchange):
            return
        sent.append(int(exchange.request.headers.get("content-length", "0")))
        if exchange.request.headers.get("upload-complete") == "?0" and exchange.status == 204:
            exchange.headers["upload-offset"] = exchange.headers["upload-length"]
            exchange.headers["upload-complete"] = "?1"
            exchange.tampered = True

    async with kine.client(MaliciousServer(rewrite)) as client:
        records, patients = await kine.unlocked(client)
        patient = await patients.create(PatientIdentity(
            name="Fin Mensongère", birth_date=datetime(1990, 7, 8).date()))
        try:
            info = await records.create(patient.file_id, "clinical", _meta(size), source)
        except EcrinError:
            return  # refused: what the SDK must do
    pytest.fail(f"records.create returned record {info.record_id} as stored after sending "
                f"{sum(sent)} bytes in {len(sent)} piece(s) of a {size}-byte document: a "
                "server's Upload-Complete: ?1 on a piece that was not the last was believed")


async def _backend_that_clears(reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter) -> None:
    """A compromised service: a valid answer that also asks the browser to wipe the
    origin's storage."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n'
                 b'clear-site-data: "storage"\r\nconnection: close\r\n\r\n{}')
    await writer.drain()
    writer.close()


async def test_no_backend_can_make_the_gateway_clear_the_browsers_storage(
        database_url_for, internal_keys) -> None:
    """Clear-Site-Data "storage" deletes the sealed device state (pins, bindings, rollback
    marks: docs/web.md). Only the logout route may send it (gateway.auth.endpoints), at the
    user's request. A compromised kms or records API that adds it to an ordinary answer
    must not get it through the gateway (the gateway is the browser's only origin); today
    the proxy strips only server/date/set-cookie/x-request-id and SecurityHeaders adds
    only the CSP and the common headers, so the header reaches the browser."""
    server = await asyncio.start_server(_backend_that_clears, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    app = build_app("gateway", database_url_for("gateway"), internal_keys,
                    kms_url=f"http://127.0.0.1:{port}", upstream_timeout_s=2)
    try:
        async with running(app, rollback=False) as client:
            response = await client.get(f"/v1/directory/{uuid.uuid4()}")
    finally:
        server.close()
    assert response.status_code == 200, response.text
    assert "clear-site-data" not in response.headers, (
        f"the gateway forwarded a backend's Clear-Site-Data: "
        f"{response.headers['clear-site-data']} on GET /v1/directory/...: a compromised "
        "service wipes the browser's pins and rollback marks")

