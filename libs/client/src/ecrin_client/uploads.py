"""Uploading a version's content so that a dropped connection costs one piece, not the whole
file (the records API's resumable uploads, docs/records.md; the TypeScript SDK's
``client/upload.ts`` does the same).

The ciphertext is already spooled to a file, so any part of it can be sent again. A session
is opened (``POST …/content/uploads``), then the spool goes up in pieces (``PATCH`` with
``Upload-Offset``; a whole number of the server's 1 MiB rows: 8 MiB first, doubling up to
32 MiB while each piece goes up in under a second, halved after a failure). After a network
error or a 5xx the SDK asks where the server stands (``HEAD``) and goes on from there, giving up
after a few attempts in a row that stored nothing new. Progress counts what the server
acknowledged, not what left this device.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx

from ecrin_client.errors import EcrinError, IntegrityError, ServerError, Unavailable
from ecrin_client.transport import GatewayTransport

#: The server's rows: every piece but the last is a whole number of them.
ROW_BYTES = 1 << 20
#: Bytes of the first PATCH: what a cut costs at most at first, and how often progress moves.
PIECE_BYTES = 8 * ROW_BYTES
#: Pieces double up to this size while each one goes up in under ``QUICK_PIECE_S``: on a
#: fast link fewer requests (each costs the records API its checks, and its row writes a
#: pause), on a slow one a cut still costs about a second of sending at most.
MAX_PIECE_BYTES = 32 * ROW_BYTES
QUICK_PIECE_S = 1.0
#: Failed attempts in a row, storing nothing new, before the upload gives up.
ATTEMPTS = 6
_READ = 1 << 20
_MISMATCH = "mismatching-upload-offset"
_COMMITTED = "version-committed"


async def _piece(path: Path, start: int, end: int) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:  # noqa: ASYNC230 (each read is handed to a thread)
        await asyncio.to_thread(f.seek, start)
        left = end - start
        while left > 0:
            block = await asyncio.to_thread(f.read, min(_READ, left))
            if not block:
                return
            left -= len(block)
            yield block


def _state(response: httpx.Response, offset: int, complete: bool) -> tuple[int, bool]:
    raw = response.headers.get("upload-offset", "")
    flag = response.headers.get("upload-complete")
    return (int(raw) if raw.isdigit() else offset,
            complete if flag is None else flag.strip() == "?1")


class UploadProtocolError(IntegrityError):
    """The server's answers do not follow the resumable-upload protocol: it cannot be
    trusted to hold the document (a server that would keep the device sending, or call a
    partial upload complete)."""


def _checked(state: tuple[int, bool], length: int, *, piece: tuple[int, int] | None = None
             ) -> tuple[int, bool]:
    """``state`` as the server stated it, if possible at all: an offset within the content,
    on a row boundary or at its end, complete only at its end; after a stored piece
    (``piece`` = its start and end), exactly that piece's end, complete only when it was
    the last."""
    offset, complete = state
    if (offset > length or (offset % ROW_BYTES and offset != length)
            or (complete and offset != length)):
        raise UploadProtocolError(f"the server states an impossible upload state (offset "
                                  f"{offset} of {length}, complete={complete})")
    if piece is not None and (offset != piece[1] or complete != (piece[1] == length)):
        raise UploadProtocolError(f"the server acknowledged the piece {piece[0]}-{piece[1]} "
                                  f"of {length} bytes with offset {offset}, "
                                  f"complete={complete}")
    return offset, complete


async def resumable_upload(t: GatewayTransport, rid: uuid.UUID, version: int, path: Path,
                           length: int, acknowledged: Callable[[int], None] | None = None, *,
                           piece_bytes: int = PIECE_BYTES,
                           max_piece_bytes: int = MAX_PIECE_BYTES, attempts: int = ATTEMPTS,
                           sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """Upload ``path`` (``length`` bytes) as the content of ``rid``'s ``version``; returns
    once the version is committed. ``acknowledged(n)``: the server holds ``n`` bytes.
    Pieces start at ``piece_bytes`` and grow to ``max_piece_bytes`` on a fast link."""
    base = f"/v1/records/{rid}/versions/{version}/content/uploads"
    ack = acknowledged or (lambda n: None)
    piece = piece_bytes
    failures = 0
    # The failure budget starts again only past the furthest offset ever acknowledged, so
    # a server cannot keep the device sending by moving the offset back and forth.
    furthest = 0

    async def failed(exc: EcrinError) -> None:
        nonlocal failures, piece
        if not isinstance(exc, Unavailable | ServerError) and exc.slug != _MISMATCH:
            raise exc
        failures += 1
        if failures >= attempts:
            raise Unavailable(f"the upload stopped after {failures} failed attempts; start it "
                              "again") from exc
        if exc.slug != _MISMATCH:
            # A slow network may not carry a whole piece before the timeout: smaller pieces.
            piece = max(ROW_BYTES, piece // 2 // ROW_BYTES * ROW_BYTES)
        wait = exc.retry_after if isinstance(exc, Unavailable) else None
        await sleep(min(wait or 0.5 * 2 ** (failures - 1), 8.0))

    while True:
        try:
            opened = (await t.request("POST", base, ok=(201,),
                                      headers={"upload-length": str(length)})).json()
            break
        except EcrinError as exc:
            await failed(exc)
    url = f"{base}/{uuid.UUID(str(opened['upload_id']))}"
    offset, complete = 0, False
    ack(0)

    async def ask() -> tuple[int, bool] | None:
        try:
            return _checked(_state(await t.request("HEAD", url, ok=(200, 204)), offset,
                                   complete), length)
        except EcrinError as exc:
            await failed(exc)
            return None

    while not complete:
        start, end = offset, min(offset + piece, length)
        last = end == length
        sending = time.monotonic()
        try:
            response = await t.request(
                "PATCH", url, ok=(204,), content=lambda s=start, e=end: _piece(path, s, e),
                headers={"content-type": "application/octet-stream",
                         "content-length": str(end - start), "upload-offset": str(start),
                         "upload-complete": "?1" if last else "?0"})
            offset, complete = _checked(_state(response, end, last), length,
                                        piece=(start, end))
            if offset > furthest:
                furthest, failures = offset, 0
            if time.monotonic() - sending < QUICK_PIECE_S:
                piece = max(piece, min(max_piece_bytes, piece * 2))
            ack(offset)
            continue
        except EcrinError as exc:
            if exc.slug == _COMMITTED:
                # The last piece's answer was lost, or another upload committed the version.
                now = await ask()
                if now is not None and now[1]:
                    break
                if now is not None:
                    raise
                continue
            await failed(exc)
        now = await ask()
        if now is None:
            continue
        if now[0] > furthest:
            furthest, failures = now[0], 0  # progress made: the budget starts again
        offset, complete = now
        ack(offset)
    ack(length)
