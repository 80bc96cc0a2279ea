"""Talking to the agent from a command: start one, fetch its keys, ask its status, lock it.

The directory is checked before every connection and the agent's uid after it, so that
another user can neither stand in for the agent nor read from it. What comes back is only
trusted after the caller checks it against its profile (account id, pinned fingerprint).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecrin_client.agent.paths import (
    UnsafeDirectory,
    agent_disabled,
    private_dir,
    socket_path,
)
from ecrin_client.agent.server import KEY_SIZE, MAX_LINE, peer_uid

START_TIMEOUT = 10.0
REQUEST_TIMEOUT = 3.0


class AgentError(RuntimeError):
    """The agent could not be started or reached safely."""


@dataclass(frozen=True, slots=True)
class HeldKeys:
    """What an agent holds: whose keys, for which server, and the 64 key bytes."""

    account_id: str
    server_url: str
    fingerprint: str
    expires_in: int
    keys: bytes


def _request(profile_home: Path, op: str) -> tuple[dict[str, Any], bytearray] | None:
    """Send ``op``; the answer and the bytes after its line, or None if no agent runs."""
    if agent_disabled():
        return None
    path = socket_path(profile_home)
    try:
        private_dir(create=False)
    except UnsafeDirectory:
        if path.parent.exists() or path.parent.is_symlink():
            raise AgentError(f"{path.parent} is not private: not using the agent") from None
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(REQUEST_TIMEOUT)
        try:
            conn.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return None  # none running (or a stale socket left by a killed agent)
        except OSError as exc:
            raise AgentError(f"cannot reach the agent: {exc.strerror}") from None
        uid = peer_uid(conn)
        if uid is not None and uid != os.getuid():
            raise AgentError("the agent socket belongs to another user: not using it")
        data = bytearray()
        try:
            conn.sendall(json.dumps({"op": op}).encode() + b"\n")
            while len(data) <= MAX_LINE + KEY_SIZE:  # the agent closes after its answer
                chunk = conn.recv(MAX_LINE + KEY_SIZE)
                if not chunk:
                    break
                data += chunk
        except OSError:
            return None  # the agent stopped while we asked (its idle time ran out)
    end = data.find(b"\n")
    line, tail = bytes(data[:max(end, 0)]), bytearray(data[end + 1:] if end >= 0 else b"")
    data[:] = bytes(len(data))
    try:
        answer = json.loads(line or b"null")
    except ValueError:
        return None
    if not isinstance(answer, dict) or not answer.get("ok"):
        return None
    return answer, tail


def fetch_keys(profile_home: Path) -> HeldKeys | None:
    """The keys the profile's agent holds (resetting its idle time), or None."""
    reply = _request(profile_home, "keys")
    if reply is None:
        return None
    answer, tail = reply
    try:
        if len(tail) != KEY_SIZE:
            return None
        return HeldKeys(account_id=str(answer["account_id"]),
                        server_url=str(answer.get("server_url") or ""),
                        fingerprint=str(answer.get("fingerprint") or ""),
                        expires_in=int(answer.get("expires_in") or 0), keys=bytes(tail))
    finally:
        tail[:] = bytes(len(tail))


def agent_status(profile_home: Path) -> dict[str, Any] | None:
    """Whose keys the agent holds and for how long still; None if no agent runs."""
    reply = _request(profile_home, "status")
    if reply is None:
        return None
    answer, _ = reply
    return {k: answer[k] for k in ("account_id", "server_url", "fingerprint", "expires_in",
                                   "idle", "pid") if k in answer}


def lock(profile_home: Path) -> bool:
    """Make the profile's agent forget its keys and stop. -> whether one was running."""
    reply = _request(profile_home, "lock")
    if reply is None:
        return False
    return True


def start_agent(profile_home: Path, *, account_id: str, server_url: str, fingerprint: str,
                keys: bytes, idle: int) -> int:
    """Start an agent holding ``keys`` (replacing a running one). -> its pid

    The keys go through a pipe to the new process, never through argv, the environment or
    a file.
    """
    if len(keys) != KEY_SIZE:
        raise ValueError("the agent holds exactly 64 bytes of identity keys")
    try:
        private_dir(create=True)
    except UnsafeDirectory as exc:
        raise AgentError(str(exc)) from None
    lock(profile_home)
    path = socket_path(profile_home)
    header = json.dumps({"account_id": account_id, "server_url": server_url,
                         "fingerprint": fingerprint, "idle": idle}).encode() + b"\n"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ECRIN_PASSPHRASE", "ECRIN_NEW_PASSPHRASE",
                                "ECRIN_RECOVERY_KEY"))}
    # Our own interpreter and module; the only variable argument is our socket path. `-P`
    # and cwd "/": the working directory (a shared folder, a cloned repository) is never
    # on the agent's import path, so no planted `ecrin_client` package receives the keys.
    with subprocess.Popen(  # noqa: S603 (our interpreter and module, argv list, no shell)
            [sys.executable, "-P", "-m", "ecrin_client.agent", "--socket", str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd="/", close_fds=True, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(header + keys, timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AgentError("the agent did not start in time") from None
    words = out.decode(errors="replace").split()
    if proc.returncode != 0 or len(words) != 2 or words[0] != "ready":
        reason = err.decode(errors="replace").strip().splitlines()[-1:] or ["no reason"]
        raise AgentError(f"the agent did not start: {reason[0]}")
    return int(words[1])
