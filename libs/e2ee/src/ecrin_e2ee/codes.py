"""Typeable codes: Crockford base32 in groups, each group ending in a Damm check character.

Alphabet ``0123456789ABCDEFGHJKMNPQRSTVWXYZ`` (no I, L, O, U). Parsing is forgiving:
case-insensitive, ``O`` reads as ``0``, ``I``/``L`` as ``1``, spaces and hyphens ignored.
Every group of ``GROUP_DATA`` data characters is followed by one check character computed
with the Damm algorithm over GF(32) (x^5 + x^2 + 1) with the quasigroup
``x * y = 2x + y``: it detects every single-character substitution and every adjacent
transposition inside a group (including the check character itself). The output uses only
characters of the QR-code alphanumeric set (digits, uppercase, ``-``).
"""

from __future__ import annotations

from ecrin_e2ee.errors import InvalidCode

__all__ = ["ALPHABET", "GROUP_DATA", "decode_groups", "encode_groups"]

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
GROUP_DATA = 4
_VALUES = {c: i for i, c in enumerate(ALPHABET)}
_VALUES.update({"O": 0, "I": 1, "L": 1})


def _gf32_double(x: int) -> int:
    x <<= 1
    if x & 0x20:
        x ^= 0x25  # reduce by x^5 + x^2 + 1
    return x


def _damm(values: list[int]) -> int:
    interim = 0
    for v in values:
        interim = _gf32_double(interim) ^ v
    return interim


def check_value(values: list[int]) -> int:
    """The check symbol c such that running the Damm fold over values + [c] gives 0."""
    return _gf32_double(_damm(values))


def encode_groups(data: bytes, n_chars: int) -> str:
    """Encode ``data`` (big-endian integer) as ``n_chars`` base32 digits, grouped with checks."""
    number = int.from_bytes(data, "big")
    if number >> (5 * n_chars):
        raise ValueError("data does not fit")
    digits = [(number >> (5 * (n_chars - 1 - i))) & 31 for i in range(n_chars)]
    groups = []
    for start in range(0, n_chars, GROUP_DATA):
        chunk = digits[start : start + GROUP_DATA]
        chunk.append(check_value(chunk))
        groups.append("".join(ALPHABET[v] for v in chunk))
    return "-".join(groups)


def decode_groups(text: str, n_chars: int, n_bytes: int) -> bytes:
    """Inverse of :func:`encode_groups`; raises :class:`InvalidCode`."""
    if not isinstance(text, str):
        raise InvalidCode("code must be text")
    cleaned = "".join(text.split()).replace("-", "").upper()
    n_groups = -(-n_chars // GROUP_DATA)
    if len(cleaned) != n_chars + n_groups:
        raise InvalidCode(f"code must have {n_chars + n_groups} characters")
    try:
        values = [_VALUES[c] for c in cleaned]
    except KeyError:
        raise InvalidCode("code contains a character outside the alphabet") from None
    digits: list[int] = []
    pos = 0
    for g in range(n_groups):
        size = min(GROUP_DATA, n_chars - g * GROUP_DATA)
        group = values[pos : pos + size + 1]
        pos += size + 1
        if _damm(group) != 0:
            raise InvalidCode(f"checksum mismatch in group {g + 1}")
        digits.extend(group[:-1])
    number = 0
    for d in digits:
        number = (number << 5) | d
    if number >> (8 * n_bytes):
        raise InvalidCode("code is out of range")
    return number.to_bytes(n_bytes, "big")
