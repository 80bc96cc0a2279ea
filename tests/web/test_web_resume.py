"""An upload from the browser survives a dropped connection without starting over.

tests/web/resume.mts uploads a multi-MiB document in real headless Chromium, through a TCP
proxy (tests/support/cutting_proxy.py) that resets the connection once in the middle of the
upload. The page resumes from what the server acknowledged, and the bar never goes back.

What is sent again is bounded, not the document: the part of the cut piece the server had
not stored, plus, at most, the whole piece once more, because Chromium itself re-sends a
request whose reused keep-alive connection was reset before any answer (its network stack
does, transparently; the page never sees that first failure). The Python SDK then reads
the document back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
from urllib.parse import urlsplit

import pytest

from tests.support.cutting_proxy import cutting_proxy
from tests.support.users import next_totp_code
from tests.web.browser import CHROMIUM
from tests.web.build import ROOT, node

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]

#: The document's size; ECRIN_RESUME_MIB=200 measures issue 17's 200 MiB (docs/web.md).
MIB = int(os.environ.get("ECRIN_RESUME_MIB", "48"))
#: The SDK's first piece; each next one is twice the last while they go up in under a
#: second (client/upload.ts), up to 32 MiB.
PIECE = 8 << 20
#: The second piece, 8 to 24 MiB of the ciphertext on a fast link (8 to 16 on a loaded
#: machine): the one the proxy cuts.
CUT_PIECE = 2 * PIECE
#: The create, the session's opening, the HEAD after the cut and the list refresh.
OVERHEAD = 512 << 10


@pytest.fixture(scope="module")
def resumed(web_stack) -> dict:
    gateway = urlsplit(web_stack.url("gateway"))
    with cutting_proxy(gateway.hostname or "127.0.0.1", gateway.port or 80) as proxy:
        driver = subprocess.Popen(  # noqa: S603 (our own node script, argv list, no shell)
            [node(), str(ROOT / "tests" / "web" / "resume.mts"), proxy.url, str(CHROMIUM),
             str(MIB)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        assert driver.stdout is not None and driver.stdin is not None
        try:
            line = driver.stdout.readline()
            if line.strip() != "READY":
                driver.wait(30)
                raise AssertionError(f"driver: {line}{driver.stderr.read()[-4000:]}")
            # In the middle of the second piece (the first 8 MiB are acknowledged).
            proxy.arm(PIECE + CUT_PIECE // 2 + 4321)
            driver.stdin.write("go\n")
            driver.stdin.flush()
            out, err = driver.communicate(timeout=420)
        finally:
            if driver.poll() is None:
                driver.kill()
        assert driver.returncode == 0, err[-4000:]
        report: dict = json.loads(out.strip().splitlines()[-1])
        report["sent"], report["cuts"] = proxy.sent, proxy.cuts
        report["requests"] = proxy.requests
    return report


class TestResumedUpload:
    def test_the_connection_was_cut_and_the_upload_completed(self, resumed):
        assert resumed["cuts"] == 1
        assert "scanner.png" in resumed["listed"]
        assert resumed["final_progress"] == "100"
        assert resumed["errors"] == []

    def test_what_was_sent_again_is_at_most_two_pieces(self, resumed):
        ciphertext = (MIB << 20) + (MIB << 20) // (64 << 10) * 17  # padded stream and tags
        resent = resumed["sent"] - ciphertext
        print(f"\n{MIB} MiB from Chromium, cut once: {resumed['sent']} bytes sent, "
              f"{resent} more than the ciphertext, in {resumed['upload_seconds']} s")
        print(f"  page memory while encrypting and sending: {resumed['memory']}")
        for at, line in resumed["requests"]:
            print(f"  {at:>10} {line}")
        assert 0 < resent < 2 * CUT_PIECE + OVERHEAD, resent
        assert resent < (MIB << 20) // 2  # far from starting over

    def test_the_bar_shows_acknowledged_bytes_and_never_goes_back(self, resumed):
        shown = resumed["sending_progress"]
        assert shown and shown[-1] == 100
        assert shown == sorted(shown)
        # The acknowledged steps (one per piece, a few more after the cut, when the pieces
        # after a failure are smaller), not a smooth stream of bytes handed out.
        assert len(set(shown)) <= MIB // 8 + 8, shown


def test_the_sdk_reads_back_what_the_browser_sent(resumed, web_stack, tmp_path):
    from ecrin_client import EcrinClient
    from ecrin_client.profile import Profile
    from ecrin_client.records import Records

    code, _ = next_totp_code(resumed["totp_secret"], resumed["totp_step"])

    async def read_back() -> None:
        async with EcrinClient(web_stack.url("gateway"), Profile(tmp_path / "sdk")) as client:
            await client.login(resumed["email"], resumed["passphrase"], totp_code=code)
            records = Records(client, await client.unlock(resumed["passphrase"]))
            [info] = [r for r in await records.list(resumed["file_id"])
                      if r.metadata.filename == "scanner.png"]
            await records.download(info.record_id, tmp_path / "back.png")

    asyncio.run(read_back())
    digest = hashlib.sha256()
    with open(tmp_path / "back.png", "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    assert digest.hexdigest() == resumed["sha256"]
