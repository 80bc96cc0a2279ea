"""The sizes of a resumable upload's pieces: they grow on a fast link, up to a cap, and stay
small on a slow one (a cut then costs one small piece)."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from ecrin_client import uploads
from ecrin_client.profile import StoredTokens
from ecrin_client.transport import GatewayTransport
from ecrin_client.uploads import ROW_BYTES, resumable_upload


class Recorder:
    """A records API that stores every piece it is sent and acknowledges it."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.pieces: list[int] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(201, json={"upload_id": str(uuid.uuid4()), "offset": 0,
                                             "length": self.length})
        assert request.method == "PATCH"
        body = await request.aread()
        start = int(request.headers["upload-offset"])
        assert start == sum(self.pieces)
        self.pieces.append(len(body))
        end = start + len(body)
        return httpx.Response(204, headers={
            "upload-offset": str(end), "upload-complete": "?1" if end == self.length else "?0"})


async def _upload(tmp_path: Path, rows: int) -> list[int]:
    path = tmp_path / "spool"
    path.write_bytes(bytes(rows * ROW_BYTES))
    server = Recorder(rows * ROW_BYTES)
    t = GatewayTransport("http://records.test", tokens=StoredTokens(
        access_token="a", refresh_token="r", session_id="s"), on_tokens=lambda _: None,
        transport=httpx.MockTransport(server))
    try:
        await resumable_upload(t, uuid.uuid4(), 1, path, rows * ROW_BYTES,
                               piece_bytes=ROW_BYTES, max_piece_bytes=4 * ROW_BYTES)
    finally:
        await t.aclose()
    return [size // ROW_BYTES for size in server.pieces]


class TestPieceSizes:
    async def test_pieces_double_up_to_the_cap_on_a_fast_link(self, tmp_path: Path) -> None:
        assert await _upload(tmp_path, 12) == [1, 2, 4, 4, 1]

    async def test_pieces_stay_at_their_first_size_on_a_slow_link(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(uploads, "QUICK_PIECE_S", 0.0)  # every piece took too long
        assert await _upload(tmp_path, 5) == [1, 1, 1, 1, 1]
