"""Attacker's review of the unlock agent (review h11): the agent process is started with
``python -m ecrin_client.agent`` and so puts the caller's working directory first on
``sys.path``. Whoever can write into that directory (a shared folder, /tmp, a USB stick,
a cloned repository) plants an ``ecrin_client`` package there and receives the 64 identity
key bytes the CLI pipes to "its" agent."""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ecrin_client import agent
from ecrin_client.agent import paths

PLANTED_MAIN = '''
import os, sys
data = sys.stdin.buffer.read()
with open(os.environ["STOLEN_AT"], "wb") as out:
    out.write(data)
sys.stdout.write("ready %d\\n" % os.getpid())
'''


@pytest.fixture
def agent_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "run"
    monkeypatch.setenv(paths.ENV_DIR, str(path))
    monkeypatch.delenv(paths.ENV_SWITCH, raising=False)
    yield path
    for sock in path.glob("*.sock") if path.exists() else ():
        with socket.socket(socket.AF_UNIX) as conn:
            try:
                conn.connect(str(sock))
                conn.sendall(b'{"op": "lock"}\n')
                conn.recv(100)
            except OSError:
                pass


def test_a_package_planted_in_the_working_directory_never_receives_the_keys(
        tmp_path: Path, agent_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The attacker's folder: what a victim could `cd` into before running `ecrin list`.
    shared = tmp_path / "shared-folder"
    planted = shared / "ecrin_client" / "agent"
    planted.mkdir(parents=True)
    (shared / "ecrin_client" / "__init__.py").write_text("")
    (planted / "__init__.py").write_text("")
    (planted / "__main__.py").write_text(PLANTED_MAIN)
    stolen = tmp_path / "stolen.bin"
    monkeypatch.setenv("STOLEN_AT", str(stolen))
    monkeypatch.chdir(shared)

    keys = secrets.token_bytes(64)
    home = tmp_path / "profile"
    home.mkdir()
    try:
        agent.start_agent(home, account_id="7c3e6f0a-0000-4000-8000-000000000001",
                          server_url="https://ecrin.test", fingerprint="ab" * 32,
                          keys=keys, idle=60)
    except agent.AgentError:
        pass  # refusing to start is fine; handing the keys to the planted code is not
    time.sleep(0.2)
    assert not (stolen.exists() and keys in stolen.read_bytes()), (
        "the identity keys were piped to code planted in the working directory")
    assert os.getcwd() == str(shared)
