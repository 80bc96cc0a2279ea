"""The unlock agent: keys only in memory, a private socket, idle expiry, locked on logout and
on passphrase change, and commands that open patient data without Argon2id."""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ecrin_client import agent, client
from ecrin_client.agent import paths, server
from ecrin_client.agent.server import peer_uid
from ecrin_client.cli import runtime

from tests.client.cli_support import Result, run_cli
from tests.client.conftest import EMAIL, NEW_PASSPHRASE, PASSPHRASE
from tests.client.fake_records import FakeRecords
from tests.client.fake_server import URL


@pytest.fixture
def agent_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private agent directory of this test; every agent started in it is locked after."""
    path = tmp_path / "run"
    monkeypatch.setenv(paths.ENV_DIR, str(path))
    monkeypatch.delenv(paths.ENV_SWITCH, raising=False)
    monkeypatch.delenv(paths.ENV_IDLE, raising=False)
    yield path
    for sock in path.glob("*.sock") if path.exists() else ():
        with socket.socket(socket.AF_UNIX) as conn:
            try:
                conn.connect(str(sock))
                conn.sendall(b'{"op": "lock"}\n')
                conn.recv(100)
            except OSError:
                pass


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    status = Path(f"/proc/{pid}/stat")
    return not status.exists() or status.read_text().split()[2] != "Z"


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def key_forms(keys: bytes) -> list[bytes]:
    """The key bytes as they could be written: raw, hex, base64 (std and url-safe)."""
    return [keys, keys[:32], keys[32:], keys.hex().encode(), base64.b64encode(keys),
            base64.urlsafe_b64encode(keys).rstrip(b"="), base64.b64encode(keys[:32]),
            base64.b64encode(keys[32:])]


def files_under(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def start(home: Path, keys: bytes, idle: int = 60) -> int:
    return agent.start_agent(home, account_id="7c3e6f0a-0000-4000-8000-000000000001",
                             server_url=URL, fingerprint="ab" * 32, keys=keys, idle=idle)


class TestAgentProcess:
    def test_holds_the_keys_in_memory_only(self, agent_dir, tmp_path):
        home = tmp_path / "profile"
        home.mkdir()
        keys = secrets.token_bytes(64)
        pid = start(home, keys)
        held = agent.fetch_keys(home)
        assert held is not None and held.keys == keys and held.server_url == URL
        for path in files_under(home, agent_dir, tmp_path):
            if stat.S_ISSOCK(path.lstat().st_mode):
                continue
            data = path.read_bytes()
            assert not any(form in data for form in key_forms(keys)), path
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert not any(form in cmdline + environ for form in key_forms(keys))
        assert agent.lock(home)

    def test_socket_is_0600_in_a_0700_directory_and_answers_its_user(self, agent_dir,
                                                                        tmp_path):
        start(tmp_path, secrets.token_bytes(64))
        sock = agent.socket_path(tmp_path)
        assert sock.parent == agent_dir
        assert stat.S_IMODE(agent_dir.stat().st_mode) == 0o700
        assert stat.S_ISSOCK(sock.lstat().st_mode)
        assert stat.S_IMODE(sock.lstat().st_mode) == 0o600
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(str(sock))
            assert peer_uid(conn) == os.getuid()
        agent.lock(tmp_path)

    def test_a_peer_of_another_user_gets_no_answer(self, tmp_path, monkeypatch):
        """The SO_PEERCRED check: a connection whose peer is another uid is closed unanswered
        (simulated: another user cannot reach our 0700 directory to try it for real)."""
        path = tmp_path / "a.sock"
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(path))
            listener.listen(1)
            keys = bytearray(secrets.token_bytes(64))
            held = server.Agent({"account_id": "a", "idle": 60}, keys, listener, path)
            monkeypatch.setattr(server, "peer_uid", lambda _conn: os.getuid() + 1)
            with socket.socket(socket.AF_UNIX) as client_side:
                client_side.connect(str(path))
                client_side.sendall(b'{"op": "keys"}\n')
                conn, _ = listener.accept()
                with conn:
                    assert held._answer(conn) is True  # refused, and the agent goes on
                client_side.settimeout(2)
                try:
                    answered = client_side.recv(1000)
                except ConnectionResetError:  # closed with our request unread
                    answered = b""
                assert answered == b""
            monkeypatch.setattr(server, "peer_uid", lambda _conn: os.getuid())
            with socket.socket(socket.AF_UNIX) as client_side:
                client_side.connect(str(path))
                client_side.sendall(b'{"op": "keys"}\n')
                conn, _ = listener.accept()
                with conn:
                    held._answer(conn)
                client_side.settimeout(2)
                answer = b""
                while chunk := client_side.recv(4096):
                    answer += chunk
                assert answer.endswith(bytes(keys))

    def test_an_open_directory_is_refused(self, agent_dir, tmp_path):
        agent_dir.mkdir(mode=0o755)
        agent_dir.chmod(0o755)
        with pytest.raises(agent.AgentError, match="not a private directory"):
            start(tmp_path, secrets.token_bytes(64))
        with pytest.raises(agent.AgentError, match="not private"):
            agent.fetch_keys(tmp_path)

    def test_a_symlinked_directory_is_refused(self, agent_dir, tmp_path):
        real = tmp_path / "elsewhere"
        real.mkdir(mode=0o700)
        agent_dir.symlink_to(real)
        with pytest.raises(agent.AgentError, match="not a private directory"):
            start(tmp_path, secrets.token_bytes(64))

    def test_forgets_the_keys_after_the_idle_time(self, agent_dir, tmp_path):
        pid = start(tmp_path, secrets.token_bytes(64), idle=1)
        status = agent.agent_status(tmp_path)
        assert status is not None and status["idle"] == 1
        assert wait_gone(pid, 5.0)
        assert agent.fetch_keys(tmp_path) is None
        assert not agent.socket_path(tmp_path).exists()

    def test_use_resets_the_idle_time(self, agent_dir, tmp_path):
        pid = start(tmp_path, secrets.token_bytes(64), idle=2)
        for _ in range(4):  # 3 s of use, more than the idle time
            time.sleep(0.75)
            assert agent.fetch_keys(tmp_path) is not None
        assert alive(pid)
        agent.lock(tmp_path)
        assert wait_gone(pid)

    def test_lock_stops_it_and_removes_the_socket(self, agent_dir, tmp_path):
        pid = start(tmp_path, secrets.token_bytes(64))
        assert agent.lock(tmp_path)
        assert wait_gone(pid)
        assert agent.fetch_keys(tmp_path) is None
        assert not agent.socket_path(tmp_path).exists()
        assert not agent.lock(tmp_path)

    def test_a_new_agent_replaces_the_old_one(self, agent_dir, tmp_path):
        first = start(tmp_path, secrets.token_bytes(64))
        keys = secrets.token_bytes(64)
        start(tmp_path, keys)
        assert wait_gone(first)
        held = agent.fetch_keys(tmp_path)
        assert held is not None and held.keys == keys
        agent.lock(tmp_path)

    def test_an_agent_whose_socket_is_gone_stops(self, agent_dir, tmp_path):
        """Deleting the agent's folder (or its socket) leaves no process holding keys that
        nothing can reach or lock any more."""
        pid = start(tmp_path, secrets.token_bytes(64))
        agent.socket_path(tmp_path).unlink()
        assert wait_gone(pid, seconds=10)

    def test_one_agent_per_profile(self, agent_dir, tmp_path):
        a, b = tmp_path / "a", tmp_path / "b"
        start(a, keys_a := secrets.token_bytes(64))
        assert agent.fetch_keys(b) is None
        held = agent.fetch_keys(a)
        assert held is not None and held.keys == keys_a
        agent.lock(a)

    def test_disabled_by_the_environment(self, agent_dir, tmp_path, monkeypatch):
        start(tmp_path, secrets.token_bytes(64))
        monkeypatch.setenv(paths.ENV_SWITCH, "off")
        assert agent.fetch_keys(tmp_path) is None
        monkeypatch.delenv(paths.ENV_SWITCH)
        agent.lock(tmp_path)

    @pytest.mark.parametrize(("text", "seconds"), [("900", 900), ("90s", 90), ("15m", 900),
                                                   ("2h", 7200)])
    def test_durations(self, text, seconds):
        assert paths.parse_duration(text) == seconds

    @pytest.mark.parametrize("text", ["", "0", "15x", "-3", "25h"])
    def test_bad_durations(self, text):
        with pytest.raises(ValueError):
            paths.parse_duration(text)


@pytest.fixture
def fake() -> FakeRecords:
    return FakeRecords()


@pytest.fixture
def ecrin(fake, tmp_path: Path, monkeypatch, agent_dir):
    monkeypatch.setattr(runtime, "transport_factory", fake.transport)
    home = tmp_path / "home"

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None
            ) -> Result:
        full = {"ECRIN_HOME": str(home), "ECRIN_SERVER": URL, **(env or {})}
        return run_cli(args, full, input)

    created = run("account", "create", "--email", EMAIL, "--json",
                  env={"ECRIN_PASSPHRASE": PASSPHRASE})
    assert created.exit_code == 0, created.stderr
    run.home = home  # type: ignore[attr-defined]  # a test's attribute on a function
    return run


def no_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> None:
        raise AssertionError("Argon2id ran although the agent holds the keys")

    monkeypatch.setattr(client, "derive_account_keys", refuse)


class TestCommandsThroughTheAgent:
    def test_unlock_once_then_no_passphrase_and_no_argon2(self, ecrin, monkeypatch):
        unlocked = ecrin("unlock", "--json", "--passphrase-stdin", input=PASSPHRASE + "\n")
        assert unlocked.exit_code == 0, unlocked.stderr
        assert unlocked.json()["expires_in"] == paths.DEFAULT_IDLE_SECONDS
        no_argon2(monkeypatch)
        made = ecrin("patient", "create", "--name", "Léa Dupont", "--birth-date", "2001-05-04",
                     "--json")
        assert made.exit_code == 0, made.stderr
        listed = ecrin("patient", "list", "--json")
        assert [p["file_id"] for p in listed.json()] == [made.json()["file_id"]]
        again = ecrin("unlock", "--json")
        assert again.exit_code == 0 and again.json()["started"] is False

    def test_a_passphrase_typed_at_the_prompt_starts_the_agent(self, ecrin, monkeypatch):
        from ecrin_client.cli import unlocked

        first = ecrin("patient", "list", env={"ECRIN_PASSPHRASE": PASSPHRASE})
        assert first.exit_code == 0 and agent.fetch_keys(ecrin.home) is None  # a script's
        monkeypatch.setattr(unlocked, "_typed_at_terminal", lambda _rt: True)
        typed = ecrin("patient", "list", env={"ECRIN_PASSPHRASE": PASSPHRASE})
        assert typed.exit_code == 0, typed.stderr
        assert agent.fetch_keys(ecrin.home) is not None
        no_argon2(monkeypatch)
        assert ecrin("patient", "list").exit_code == 0

    def test_a_wrong_passphrase_starts_no_agent(self, ecrin):
        result = ecrin("unlock", "--passphrase-stdin", input="not the passphrase\n")
        assert result.exit_code == 2
        assert agent.fetch_keys(ecrin.home) is None

    def test_the_timeout_option(self, ecrin):
        result = ecrin("unlock", "--timeout", "2m", "--json", "--passphrase-stdin",
                       input=PASSPHRASE + "\n")
        assert result.exit_code == 0 and result.json()["expires_in"] == 120
        status = agent.agent_status(ecrin.home)
        assert status is not None and status["idle"] == 120
        assert ecrin("unlock", "--timeout", "soon").exit_code == 1

    def test_lock(self, ecrin):
        ecrin("unlock", "--passphrase-stdin", input=PASSPHRASE + "\n")
        assert agent.fetch_keys(ecrin.home) is not None
        locked = ecrin("lock", "--json")
        assert locked.json() == {"locked": True, "was_unlocked": True}
        assert agent.fetch_keys(ecrin.home) is None
        needs = ecrin("patient", "list")
        assert needs.exit_code == 1 and "no passphrase" in needs.stderr

    def test_logout_locks(self, ecrin):
        ecrin("unlock", "--passphrase-stdin", input=PASSPHRASE + "\n")
        assert ecrin("logout").exit_code == 0
        assert agent.fetch_keys(ecrin.home) is None

    def test_passphrase_change_locks(self, ecrin):
        ecrin("unlock", "--passphrase-stdin", input=PASSPHRASE + "\n")
        changed = ecrin("passphrase", "change", "--passphrase-stdin",
                        input=f"{PASSPHRASE}\n{NEW_PASSPHRASE}\n")
        assert changed.exit_code == 0, changed.stderr
        assert agent.fetch_keys(ecrin.home) is None

    def test_keys_of_another_identity_are_not_used(self, ecrin, monkeypatch):
        """An agent holding keys that do not match this profile's pin (replaced meanwhile,
        or another account's) is locked and the passphrase asked for."""
        settings = json.loads((ecrin.home / "profile.json").read_text())
        agent.start_agent(ecrin.home, account_id=settings["account_id"], server_url=URL,
                          fingerprint="", keys=secrets.token_bytes(64), idle=60)
        result = ecrin("patient", "list")
        assert result.exit_code == 1 and "no passphrase" in result.stderr
        assert agent.fetch_keys(ecrin.home) is None

    def test_no_key_bytes_in_the_profile_or_agent_folders(self, ecrin, agent_dir, tmp_path):
        ecrin("unlock", "--passphrase-stdin", input=PASSPHRASE + "\n")
        held = agent.fetch_keys(ecrin.home)
        assert held is not None
        ecrin("patient", "create", "--name", "Léa Dupont", "--birth-date", "2001-05-04")
        for path in files_under(ecrin.home, agent_dir):
            if stat.S_ISSOCK(path.lstat().st_mode):
                continue
            data = path.read_bytes()
            assert not any(form in data for form in key_forms(held.keys)), path
