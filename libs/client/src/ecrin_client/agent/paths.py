"""Where the agent's socket lives, and the checks that make that place the user's own.

One agent per profile folder: the socket is named after a digest of the profile's resolved
path, inside a directory that must be a real directory (not a symlink), owned by the user
and closed to everyone else (0700). ``$XDG_RUNTIME_DIR`` (a per-user tmpfs on systemd
hosts, emptied at logout) is preferred; else ``/tmp/ecrin-agent-<uid>``.
``ECRIN_AGENT_DIR`` overrides both (tests).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from pathlib import Path

ENV_DIR = "ECRIN_AGENT_DIR"
ENV_IDLE = "ECRIN_AGENT_TIMEOUT"
ENV_SWITCH = "ECRIN_AGENT"
DEFAULT_IDLE_SECONDS = 15 * 60
MAX_IDLE_SECONDS = 24 * 3600


class UnsafeDirectory(OSError):
    """The agent directory is not a private directory of this user."""


def agent_disabled() -> bool:
    """``ECRIN_AGENT=off`` (or 0/no/false): never start nor ask an agent."""
    return os.environ.get(ENV_SWITCH, "").strip().lower() in ("off", "0", "no", "false")


def parse_duration(text: str) -> int:
    """Seconds from ``900``, ``90s``, ``15m``, ``2h`` (what ``--timeout`` accepts)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smh]?)\s*", text.lower())
    if not match:
        raise ValueError(f"not a duration: {text!r} (examples: 900, 90s, 15m, 2h)")
    seconds = int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if not 1 <= seconds <= MAX_IDLE_SECONDS:
        raise ValueError("the agent's idle time must be between 1 s and 24 h")
    return seconds


def idle_seconds() -> int:
    """The idle time from ``ECRIN_AGENT_TIMEOUT``, else 15 minutes."""
    raw = os.environ.get(ENV_IDLE)
    return parse_duration(raw) if raw else DEFAULT_IDLE_SECONDS


def agent_dir() -> Path:
    override = os.environ.get(ENV_DIR)
    if override:
        return Path(override)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and _owned_private(Path(runtime)):
        return Path(runtime) / "ecrin"
    return Path(tempfile.gettempdir()) / f"ecrin-agent-{os.getuid()}"


def _owned_private(path: Path) -> bool:
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
            and not info.st_mode & 0o077)


def private_dir(*, create: bool) -> Path:
    """The agent directory, checked (and created 0700 if ``create``).

    Raises :class:`UnsafeDirectory` if it is a symlink, another user's, or open to others:
    someone else could then replace the socket with their own.
    """
    path = agent_dir()
    if create:
        try:
            path.mkdir(mode=0o700, parents=False)
        except FileExistsError:
            pass
    if not _owned_private(path):
        raise UnsafeDirectory(f"{path} is not a private directory of this user (0700, "
                              "not a symlink): refusing to use it for the agent")
    return path


def socket_path(profile_home: Path) -> Path:
    """The socket of the agent serving ``profile_home`` (not checked; see private_dir)."""
    digest = hashlib.sha256(str(Path(profile_home).expanduser().resolve()).encode())
    return agent_dir() / f"agent-{digest.hexdigest()[:16]}.sock"
