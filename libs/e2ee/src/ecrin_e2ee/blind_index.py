"""Blind indexes: keyed tokens that let a practitioner find a patient without the server
learning the name or the INS.

``token = BLAKE2b(key=search_key, person=<field context>, normalised value)`` truncated to
12 bytes, base64url. Truncation makes collisions possible by design (the client filters
the candidate files it decrypts), which limits what equal tokens reveal.

The search key: :meth:`SearchKey.for_owner` derives it from the owner's identity keys
(``BLAKE2b(key=ed25519_seed, person="ecrin-search-key")``), so one practitioner's tokens
are stable across all their patient files and devices and unrelated to any other
practitioner's. A practice that wants shared search generates one :class:`SearchKey` and
distributes it to members like a scope key.

Normalisation of names: NFKD, combining marks removed, casefolded, every run of spaces,
hyphens, apostrophes, dots and underscores collapsed to one space, trimmed; the letters
``œ æ ø ł đ ı`` (which NFKD keeps) are transliterated to ``oe ae o l d i`` first. So
``"Jean-Éloïse  D'Arc"`` and ``"jean eloise d arc"`` give the same token.

INS (NIR): 13 characters (digits; ``2A``/``2B`` allowed for Corsica) and a 2-digit key
``97 - (n mod 97)`` (with 2A -> 19, 2B -> 18 for the computation). Spaces, dots and hyphens
are ignored; the key is checked and not part of the token.
"""

from __future__ import annotations

import re
import unicodedata
from typing import ClassVar, Self

import nacl.hashlib

from ecrin_e2ee._secret import SecretKey
from ecrin_e2ee._wire import b64e, derive_key
from ecrin_e2ee.errors import FormatError
from ecrin_e2ee.identity import IdentityKeys

__all__ = ["SearchKey", "normalise_ins", "normalise_name"]

_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015'\u2019._]+")
_NAME_CONTEXT = b"ecrin-bi-name"
_INS_CONTEXT = b"ecrin-bi-ins"
_BIRTH_CONTEXT = b"ecrin-bi-birth"
_OWNER_CONTEXT = b"ecrin-search-key"


# Letters NFKD does not decompose but a French keyboard user would type without the mark.
_TRANSLITERATE = str.maketrans(
    {
        "œ": "oe",
        "Œ": "oe",
        "æ": "ae",
        "Æ": "ae",
        "ø": "o",
        "Ø": "o",
        "ł": "l",
        "Ł": "l",
        "đ": "d",
        "Đ": "d",
        "ı": "i",
    }
)


def normalise_name(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name).translate(_TRANSLITERATE)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SEPARATORS.sub(" ", stripped.casefold()).strip()


def normalise_ins(ins: str) -> str:
    """Return the 13-character NIR (without key); raises :class:`FormatError`."""
    cleaned = re.sub(r"[\s.\-]", "", ins).upper()
    if not re.fullmatch(r"[12378]\d{4}(?:\d{2}|2A|2B)\d{6}\d{2}", cleaned):
        raise FormatError("INS must be 13 characters and a 2-digit key")
    body, key = cleaned[:13], int(cleaned[13:])
    numeric = int(body.replace("2A", "19").replace("2B", "18"))
    if 97 - numeric % 97 != key:
        raise FormatError("INS key does not match")
    return body


class SearchKey(SecretKey):
    """The key behind a set of blind-index tokens."""

    TOKEN_SIZE: ClassVar[int] = 12

    @classmethod
    def for_owner(cls, owner: IdentityKeys) -> Self:
        return cls(derive_key(bytes(owner.signing_key), _OWNER_CONTEXT))

    def _token(self, context: bytes, value: str) -> str:
        h = nacl.hashlib.blake2b(
            value.encode("utf-8"),
            digest_size=self.TOKEN_SIZE,
            key=self._key,
            person=context.ljust(16, b"\0"),
        )
        return b64e(h.digest())

    def name_token(self, name: str) -> str:
        """Token of a family or given name (normalised first)."""
        normalised = normalise_name(name)
        if not normalised:
            raise FormatError("name is empty after normalisation")
        return self._token(_NAME_CONTEXT, normalised)

    def ins_token(self, ins: str) -> str:
        """Token of an INS number (validated and normalised first)."""
        return self._token(_INS_CONTEXT, normalise_ins(ins))

    def birth_date_token(self, iso_date: str) -> str:
        """Token of a birth date given as ``YYYY-MM-DD``."""
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", iso_date.strip()):
            raise FormatError("birth date must be YYYY-MM-DD")
        return self._token(_BIRTH_CONTEXT, iso_date.strip())
