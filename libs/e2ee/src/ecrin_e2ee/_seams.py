"""Deterministic seams: the only sources of randomness and time in the library.

Production code calls :func:`random_bytes` and :func:`now`. Tests (and the known-answer
vector generator) monkeypatch the private hooks ``_random_bytes`` and ``_clock`` to make
every output reproducible. Nothing else in the library may call a random source directly.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import nacl.utils


def _system_clock() -> datetime:
    return datetime.now(UTC)


_random_bytes: Callable[[int], bytes] = nacl.utils.random
_clock: Callable[[], datetime] = _system_clock


def random_bytes(size: int) -> bytes:
    """Return ``size`` bytes from the CSPRNG (libsodium ``randombytes_buf``)."""
    out = _random_bytes(size)
    if len(out) != size:  # a broken test hook must not silently shorten a key
        raise RuntimeError("random source returned the wrong length")
    return out


def now() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return _clock()
