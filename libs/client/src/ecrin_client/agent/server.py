"""The agent process: ``python -m ecrin_client.agent --socket PATH``.

It reads one header line (account id, server, fingerprint, idle time; no secret) and then
exactly 64 bytes of identity keys from its stdin pipe, binds the socket (0600, in the
private directory), forks into the background and answers one request per connection:
one JSON line in, one JSON line out, followed by the 64 key bytes for ``keys``.

Memory: the keys sit in one ``bytearray`` that is zeroed when the agent stops (idle time
reached, ``lock``, SIGTERM/SIGHUP/SIGINT, or its socket deleted or replaced). The process
marks itself non-dumpable (no core file, no ptrace by other processes of the user on Linux)
as ssh-agent does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

KEY_SIZE = 64
MAX_LINE = 4096
CONNECTION_TIMEOUT = 2.0
#: How often an idle agent checks that its socket is still its own: one whose socket was
#: deleted (its folder removed) or replaced can no longer be reached or locked, so it stops.
SOCKET_CHECK_S = 2.0


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process at the other end (Linux ``SO_PEERCRED``); None elsewhere."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    creds = conn.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def read_line(conn: socket.socket) -> bytes:
    """One newline-terminated line, at most MAX_LINE bytes (a connection, not a stream)."""
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = conn.recv(MAX_LINE - len(data))
        if not chunk:
            break
        data += chunk
        if len(data) >= MAX_LINE:
            break
    return bytes(data)


def _harden() -> None:
    """No core dumps, no ptrace attach (Linux PR_SET_DUMPABLE = 0), best effort."""
    with contextlib.suppress(Exception):
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE


class _Stop(Exception):
    pass


def _on_signal(_signum: int, _frame: object) -> None:
    raise _Stop()


class Agent:
    """Holds one account's keys until idle for ``idle`` seconds or locked."""

    def __init__(self, header: dict[str, Any], keys: bytearray, listener: socket.socket,
                 path: Path) -> None:
        self.account_id = str(header["account_id"])
        self.server_url = str(header.get("server_url") or "")
        self.fingerprint = str(header.get("fingerprint") or "")
        self.idle = float(header["idle"])
        self.keys = keys
        self.listener = listener
        self.path = path
        # Whose socket file to remove at the end: a newer agent may have replaced it.
        self.inode = os.stat(path).st_ino
        self.deadline = time.monotonic() + self.idle

    def _status(self) -> dict[str, Any]:
        return {"ok": True, "account_id": self.account_id, "server_url": self.server_url,
                "fingerprint": self.fingerprint, "pid": os.getpid(),
                "expires_in": max(0, round(self.deadline - time.monotonic())),
                "idle": self.idle}

    def _answer(self, conn: socket.socket) -> bool:
        """Serve one request; False once the agent must stop (``lock``)."""
        uid = peer_uid(conn)
        if uid is not None and uid != os.getuid():
            return True  # another user: no answer at all
        try:
            request = json.loads(read_line(conn))
            op = request.get("op") if isinstance(request, dict) else None
        except ValueError:
            op = None
        if op == "keys":
            self.deadline = time.monotonic() + self.idle
            conn.sendall(json.dumps(self._status()).encode() + b"\n")
            conn.sendall(memoryview(self.keys))
        elif op == "status":
            conn.sendall(json.dumps(self._status()).encode() + b"\n")
        elif op == "lock":
            conn.sendall(b'{"ok": true, "locked": true}\n')
            return False
        else:
            conn.sendall(b'{"ok": false, "error": "unknown request"}\n')
        return True

    def serve(self) -> None:
        try:
            while True:
                remaining = self.deadline - time.monotonic()
                if remaining <= 0 or not self._reachable():
                    return
                self.listener.settimeout(min(remaining, SOCKET_CHECK_S))
                try:
                    conn, _ = self.listener.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.settimeout(CONNECTION_TIMEOUT)
                    try:
                        if not self._answer(conn):
                            return
                    except OSError:
                        continue
        except _Stop:
            return
        finally:
            self.stop()

    def _reachable(self) -> bool:
        try:
            return os.stat(self.path).st_ino == self.inode
        except OSError:
            return False

    def stop(self) -> None:
        self.keys[:] = bytes(len(self.keys))
        with contextlib.suppress(OSError):
            self.listener.close()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self.inode:
                self.path.unlink()


def _read_handoff(stream: Any) -> tuple[dict[str, Any], bytearray]:
    header = json.loads(stream.readline(MAX_LINE))
    keys = bytearray(KEY_SIZE)
    view = memoryview(keys)
    got = 0
    while got < KEY_SIZE:
        n = stream.readinto(view[got:])
        if not n:
            raise ValueError("the agent was given fewer than 64 key bytes")
        got += n
    return header, keys


def _bind(path: Path) -> socket.socket:
    old_umask = os.umask(0o177)
    try:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket of a previous agent (the directory is ours)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    listener.listen(16)
    return listener


def main(argv: list[str] | None = None) -> None:
    import argparse

    from ecrin_client.agent.paths import private_dir

    parser = argparse.ArgumentParser(prog="ecrin-agent")
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--foreground", action="store_true",
                        help="do not fork (tests, debugging)")
    args = parser.parse_args(argv)
    _harden()
    # The unbuffered file: a buffered reader would keep a second, never-zeroed copy of the keys.
    stdin = open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)
    header, keys = _read_handoff(stdin)
    if args.socket.parent != private_dir(create=True):
        raise SystemExit("the socket must be in the agent directory")
    listener = _bind(args.socket)
    agent = Agent(header, keys, listener, args.socket)
    if not args.foreground:
        child = os.fork()
        if child:
            keys[:] = bytes(KEY_SIZE)
            sys.stdout.write(f"ready {child}\n")
            sys.stdout.flush()
            os._exit(0)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
    else:
        sys.stdout.write(f"ready {os.getpid()}\n")
        sys.stdout.flush()
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _on_signal)
    agent.serve()
