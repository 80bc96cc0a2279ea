"""base64url without padding, the contract's encoding for bytes (docs/accounts.md)."""

from __future__ import annotations

import base64
import binascii

from ecrin_client.errors import ServerError


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str, *, what: str = "value") -> bytes:
    """Decode what a server sent; a malformed value is a :class:`ServerError`."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise ServerError(f"the server sent an invalid {what}") from None
