"""Signed heads of the services' audit chains.

Each service signs the head of every audit chain it serves with an Ed25519 key of its own
(:class:`AuditSigningKey`): which service, which chain, the ``seq`` of the last event
served (0 for an empty chain), that event's SHA-256 hash (64 zeros for an empty chain)
and when the head was signed (whole seconds). The signature covers::

    canonical("ecrin/audit-head/v1", service (utf-8), chain (utf-8), u64 seq, hash (32),
              u64 time)

A device that verified a head keeps it: the service cannot later show that device a chain
that does not extend it without contradicting its own signature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from ecrin_e2ee import _seams
from ecrin_e2ee._secret import SecretKey
from ecrin_e2ee._wire import b64d, b64e, canonical, field, u64
from ecrin_e2ee.errors import DecryptionError, FormatError

__all__ = ["AuditHead", "AuditSigningKey", "SignedAuditHead"]

_LABEL = b"ecrin/audit-head/v1"
_HASH = re.compile(r"[0-9a-f]{64}")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_MAX_SEQ = (1 << 63) - 1


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value.encode("utf-8")) <= 255:
        raise FormatError(f"{what}: expected a string of 1 to 255 bytes")
    return value


def _time_text(value: datetime) -> str:
    return value.astimezone(UTC).strftime(_TIME_FORMAT)


@dataclass(frozen=True, slots=True)
class AuditHead:
    """The last event of a chain as a service served it. Construction checks the shape."""

    service: str
    chain: str
    seq: int
    hash: str
    time: datetime

    GENESIS: ClassVar[str] = "0" * 64

    def __post_init__(self) -> None:
        _name(self.service, "service")
        _name(self.chain, "chain")
        if type(self.seq) is not int or not 0 <= self.seq <= _MAX_SEQ:
            raise FormatError("seq: expected an integer from 0")
        if not isinstance(self.hash, str) or not _HASH.fullmatch(self.hash):
            raise FormatError("hash: expected 64 lowercase hex digits")
        if (not isinstance(self.time, datetime) or self.time.tzinfo is None
                or self.time.microsecond or self.time.timestamp() < 0):
            raise FormatError("time: expected a timezone-aware time in whole seconds")
        if self.seq == 0 and self.hash != self.GENESIS:
            raise FormatError("hash: the head of an empty chain is 64 zeros")

    def signed_bytes(self) -> bytes:
        return canonical(_LABEL, self.service.encode("utf-8"), self.chain.encode("utf-8"),
                         u64(self.seq), bytes.fromhex(self.hash),
                         u64(int(self.time.timestamp())))

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "chain": self.chain, "seq": self.seq,
                "hash": self.hash, "time": _time_text(self.time)}

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        text = field(obj, "time")
        try:
            time = datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)
        except (TypeError, ValueError):
            raise FormatError("time: expected YYYY-MM-DDTHH:MM:SSZ") from None
        if _time_text(time) != text:  # one text per signed time: no malleable spellings
            raise FormatError("time: non-canonical")
        return cls(field(obj, "service"), field(obj, "chain"), field(obj, "seq"),
                   field(obj, "hash"), time)


@dataclass(frozen=True, slots=True)
class SignedAuditHead:
    """A head and the service's Ed25519 signature over :meth:`AuditHead.signed_bytes`."""

    head: AuditHead
    signature: bytes

    SIGNATURE_SIZE: ClassVar[int] = 64

    def __post_init__(self) -> None:
        if not isinstance(self.signature, bytes) or len(self.signature) != self.SIGNATURE_SIZE:
            raise FormatError("signature must be 64 bytes")

    def verify(self, public_key: bytes) -> None:
        """Raises :class:`DecryptionError` unless ``public_key`` signed this head."""
        try:
            VerifyKey(public_key).verify(self.head.signed_bytes(), self.signature)
        except (BadSignatureError, ValueError, TypeError):
            raise DecryptionError() from None

    def to_json(self) -> dict[str, Any]:
        return {"head": self.head.to_json(), "signature": b64e(self.signature)}

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        return cls(AuditHead.from_json(field(obj, "head")),
                   b64d(field(obj, "signature"), size=cls.SIGNATURE_SIZE, what="signature"))


class AuditSigningKey(SecretKey):
    """A service's Ed25519 seed (32 bytes) that signs the heads of its audit chains."""

    SIZE: ClassVar[int] = 32
    PUBLIC_KEY_SIZE: ClassVar[int] = 32
    __slots__ = ()

    @property
    def public_key(self) -> bytes:
        return bytes(SigningKey(self._key).verify_key)

    def sign(self, *, service: str, chain: str, seq: int, hash: str) -> SignedAuditHead:
        """Signs the head ``(service, chain, seq, hash)`` as of now."""
        head = AuditHead(service, chain, seq, hash, _seams.now().replace(microsecond=0))
        return SignedAuditHead(head, SigningKey(self._key).sign(head.signed_bytes()).signature)
