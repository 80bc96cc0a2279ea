"""Attacker's review (h11): the TypeScript SDK's ``Sharing.revoke`` (libs/e2ee-js/src/client/
sharing.ts) trusts the sharing service's ``rotated_version``, as the Python one does
(tests/adversarial/test_review_rotation.py shows it end to end).

``revoke`` calls ``sync``; ``Rotations.sync`` (client/rotation.ts) sends a scope whose queued
items all carry a ``rotated_version`` to ``finish``, which re-keys to the latest version
when ``latest >= rotated_version`` and reports the scope rotated; ``revoke`` then skips its
own rotation of that scope. The server answers the queue with the CURRENT version (1) as
already rotated: no new key is made, the revoked colleague's key stays the file's current
key. A fake gateway (no network) answers the SDK; Node 24 runs the sources.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE = ROOT / ".venv" / "bin" / "node"
SRC = ROOT / "libs" / "e2ee-js" / "src"

SCRIPT = (Path(__file__).parent / "review_ts_revoke.ts").read_text()


def run_revoke(tmp_path: Path, rotated_version: str) -> dict[str, object]:
    script = tmp_path / "revoke.ts"
    script.write_text(SCRIPT.replace("@SRC@", SRC.as_posix())
                      .replace("rotated_version: 1 }", f"rotated_version: {rotated_version} }}"))
    done = subprocess.run([str(NODE), str(script)], capture_output=True, text=True,  # noqa: S603 (our own program, argv list, no shell)
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_harness_rotates_when_the_queue_is_honest(tmp_path: Path) -> None:
    """Control: the same revocation with an honest queue makes version 2."""
    assert run_revoke(tmp_path, "null") == {"sharedVersions": [2], "postedNewKeys": True}


def test_revoking_makes_a_new_key_even_if_the_server_says_the_current_one_is_rotated(
        tmp_path: Path) -> None:
    result = run_revoke(tmp_path, "1")
    assert result["postedNewKeys"], (
        f"`Sharing.revoke` made no new key version ({result}): the revoked colleague's "
        "shared key (version 1) stays the file's current key")
