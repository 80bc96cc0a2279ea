"""A base class for fixed-size secret keys that never print their bytes."""

from __future__ import annotations

import hmac
from typing import ClassVar, Self

from ecrin_e2ee import _seams


class SecretKey:
    """Holds ``SIZE`` secret bytes; ``repr``/``str`` show only the class name."""

    SIZE: ClassVar[int] = 32
    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray) or len(key) != self.SIZE:
            raise ValueError(f"{type(self).__name__} must be {self.SIZE} bytes")
        self._key = bytes(key)

    @classmethod
    def generate(cls) -> Self:
        """A fresh random key."""
        return cls(_seams.random_bytes(cls.SIZE))

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls(data)

    def to_bytes(self) -> bytes:
        """The raw key. Handle with care: never log or persist it unwrapped."""
        return self._key

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<secret>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, SecretKey)
        return hmac.compare_digest(self._key, other._key)

    __hash__ = None  # type: ignore[assignment]
