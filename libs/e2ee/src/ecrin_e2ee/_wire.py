"""Encodings at the edge: base64url, UUID fields, and the canonical field encoding.

The canonical encoding is what every signature and every associated-data string covers::

    canonical(label, f1, ..., fn) = u8 len(label) || label || (u32be len(fi) || fi)*

It is injective, so two different field tuples never sign or bind the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import struct
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import nacl.hashlib

from ecrin_e2ee.errors import FormatError


def b64e(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str, *, size: int | None = None, what: str = "value") -> bytes:
    """Strict base64url decoding (padding optional); raises FormatError."""
    if not isinstance(text, str):
        raise FormatError(f"{what}: expected a base64url string")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise FormatError(f"{what}: invalid base64url") from None
    if b64e(raw) != text.rstrip("="):
        raise FormatError(f"{what}: non-canonical base64url")
    if size is not None and len(raw) != size:
        raise FormatError(f"{what}: expected {size} bytes")
    return raw


def parse_uuid(value: Any, *, what: str = "id") -> uuid.UUID:
    """Accept a UUID or its string form."""
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        raise FormatError(f"{what}: expected a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise FormatError(f"{what}: invalid UUID") from None


def field(obj: Mapping[str, Any], name: str) -> Any:
    """Fetch a required JSON field."""
    if not isinstance(obj, Mapping):
        raise FormatError("expected a JSON object")
    if name not in obj:
        raise FormatError(f"missing field {name!r}")
    return obj[name]


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def u64(value: int) -> bytes:
    return struct.pack(">Q", value)


def canonical(label: bytes, *fields: bytes) -> bytes:
    """Injective encoding of a domain label and byte fields (see module docstring)."""
    if len(label) > 255:
        raise ValueError("label too long")
    parts = [bytes([len(label)]), label]
    for f in fields:
        parts.append(struct.pack(">I", len(f)))
        parts.append(f)
    return b"".join(parts)


def derive_key(key: bytes, context: bytes, size: int = 32) -> bytes:
    """BLAKE2b keyed KDF: ``BLAKE2b(out=size, key=key, person=context padded to 16, msg="")``."""
    if len(context) > 16:
        raise ValueError("context longer than 16 bytes")
    h = nacl.hashlib.blake2b(b"", digest_size=size, key=key, person=context.ljust(16, b"\0"))
    return h.digest()


def digest(data: bytes, context: bytes, size: int = 32) -> bytes:
    """Unkeyed BLAKE2b with a 16-byte personalisation."""
    h = nacl.hashlib.blake2b(data, digest_size=size, person=context.ljust(16, b"\0"))
    return h.digest()


def timestamp(value: datetime | None) -> int:
    """Seconds since the epoch for a timezone-aware datetime; 0 encodes "unbounded"."""
    if value is None:
        return 0
    if value.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return int(value.timestamp())


def from_timestamp(value: int) -> datetime | None:
    return None if value == 0 else datetime.fromtimestamp(value, UTC)
