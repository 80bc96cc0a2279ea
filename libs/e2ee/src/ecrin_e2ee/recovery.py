"""The recovery key: 32 random bytes the user keeps on paper.

Printed form: ``ecrin-rk-`` followed by 52 Crockford-base32 digits (the key as a 256-bit
big-endian integer) in 13 groups of 4, each group ending in a Damm check character, e.g.
``ecrin-rk-0ABCD-EFGH7-...``. See :mod:`ecrin_e2ee.codes`.
"""

from __future__ import annotations

from typing import ClassVar, Self

from nacl.signing import SigningKey

from ecrin_e2ee._secret import SecretKey
from ecrin_e2ee._wire import derive_key
from ecrin_e2ee.codes import decode_groups, encode_groups
from ecrin_e2ee.errors import InvalidCode

__all__ = ["RecoveryKey"]

_LOGIN_CONTEXT = b"ecrin-rk-login"


class RecoveryKey(SecretKey):
    """A 32-byte recovery key with a typeable, checksummed text form."""

    SIZE: ClassVar[int] = 32
    PREFIX: ClassVar[str] = "ecrin-rk-"
    TEXT_DIGITS: ClassVar[int] = 52

    def to_text(self) -> str:
        """The printable form, shown to the user exactly once."""
        return self.PREFIX + encode_groups(self._key, self.TEXT_DIGITS)

    @classmethod
    def from_text(cls, text: str) -> Self:
        """Parse the printable form; raises :class:`InvalidCode` on any typo."""
        if not isinstance(text, str):
            raise InvalidCode("recovery key must be text")
        stripped = text.strip()
        if not stripped.lower().startswith(cls.PREFIX):
            raise InvalidCode(f"recovery key must start with {cls.PREFIX!r}")
        return cls(decode_groups(stripped[len(cls.PREFIX) :], cls.TEXT_DIGITS, cls.SIZE))

    def login_signing_key(self) -> SigningKey:
        """The Ed25519 key that proves possession of the recovery key to the gateway.

        Seed = ``BLAKE2b(key=recovery_key, person="ecrin-rk-login")``: the gateway stores
        only its public half, which reveals nothing about the recovery key itself.
        """
        return SigningKey(derive_key(self._key, _LOGIN_CONTEXT))

    @property
    def login_public_key(self) -> bytes:
        return bytes(self.login_signing_key().verify_key)
