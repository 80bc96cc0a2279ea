"""Key-change statements: the only way an account's public identity may be replaced.

A :class:`KeyChange` is signed by the **old** identity's Ed25519 key over
``canonical("ecrin/key-change/v1", account_id(16), old_fingerprint(32), new_fingerprint(32),
changed_at(u64be))``, ``changed_at`` in Unix seconds. A peer who pinned the old identity can
check that the new one was vouched for by the key it verified; a server, which holds no
identity private key, cannot make one. A statement never makes the new key trusted by
itself: the peer still compares safety numbers again (``docs/protocol.md`` §4.1).
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

from nacl.exceptions import BadSignatureError

from ecrin_e2ee import _seams
from ecrin_e2ee._wire import (
    b64d,
    b64e,
    canonical,
    field,
    from_timestamp,
    parse_uuid,
    timestamp,
    u64,
)
from ecrin_e2ee.errors import FormatError, IdentityMismatchError
from ecrin_e2ee.identity import IdentityKeys, PublicIdentity

__all__ = ["KeyChange", "key_change_links"]

_LABEL = b"ecrin/key-change/v1"
#: 9999-12-31T23:59:59Z, the last second a datetime holds.
_LAST_SECOND = 253_402_300_799


def _statement(account_id: uuid.UUID, old_fingerprint: bytes, new_fingerprint: bytes,
               changed_at: datetime) -> bytes:
    return canonical(_LABEL, account_id.bytes, old_fingerprint, new_fingerprint,
                     u64(timestamp(changed_at)))


@dataclass(frozen=True, slots=True)
class KeyChange:
    """"Account X replaces the identity with fingerprint A by the one with fingerprint B",
    signed by A's key."""

    account_id: uuid.UUID
    old_fingerprint: bytes
    new_fingerprint: bytes
    changed_at: datetime
    signature: bytes

    FORMAT_VERSION: ClassVar[int] = 1
    FINGERPRINT_SIZE: ClassVar[int] = PublicIdentity.FINGERPRINT_SIZE
    SIGNATURE_SIZE: ClassVar[int] = 64

    def __post_init__(self) -> None:
        if (len(self.old_fingerprint) != self.FINGERPRINT_SIZE
                or len(self.new_fingerprint) != self.FINGERPRINT_SIZE):
            raise FormatError("fingerprints must be 32 bytes")
        if len(self.signature) != self.SIGNATURE_SIZE:
            raise FormatError("signature must be 64 bytes")
        if self.changed_at.tzinfo is None or timestamp(self.changed_at) <= 0:
            raise FormatError("changed_at must be a timezone-aware time after 1970")
        if hmac.compare_digest(self.old_fingerprint, self.new_fingerprint):
            raise FormatError("a key change names two different identities")

    def signed_bytes(self) -> bytes:
        return _statement(self.account_id, self.old_fingerprint, self.new_fingerprint,
                          self.changed_at)

    @classmethod
    def sign(cls, old: IdentityKeys, new: PublicIdentity) -> Self:
        """The statement that ``old`` hands the account over to ``new`` (time: now)."""
        if new.account_id != old.account_id:
            raise ValueError("a key change stays within one account")
        changed_at = from_timestamp(max(1, timestamp(_seams.now())))
        assert changed_at is not None
        old_fingerprint = old.public_identity().fingerprint()
        signature = old.sign(_statement(old.account_id, old_fingerprint, new.fingerprint(),
                                        changed_at))
        return cls(old.account_id, old_fingerprint, new.fingerprint(), changed_at, signature)

    def verify(self, old: PublicIdentity, new: PublicIdentity) -> None:
        """Check that ``old`` signed the change of this account from ``old`` to ``new``.

        Raises :class:`IdentityMismatchError` (never saying which check failed)."""
        ok = (old.account_id == self.account_id == new.account_id
              and hmac.compare_digest(old.fingerprint(), self.old_fingerprint)
              and hmac.compare_digest(new.fingerprint(), self.new_fingerprint))
        if ok:
            try:
                old.verify_key.verify(self.signed_bytes(), self.signature)
            except (BadSignatureError, ValueError):
                ok = False
        if not ok:
            raise IdentityMismatchError("the key change is not signed by the old identity")

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.FORMAT_VERSION,
            "account_id": str(self.account_id),
            "old_fingerprint": b64e(self.old_fingerprint),
            "new_fingerprint": b64e(self.new_fingerprint),
            "changed_at": timestamp(self.changed_at),
            "signature": b64e(self.signature),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Self:
        """Parse (no verification: that needs both identities, :meth:`verify`)."""
        if field(obj, "format") != cls.FORMAT_VERSION:
            raise FormatError("unsupported key change format")
        changed_at = field(obj, "changed_at")
        if not isinstance(changed_at, int) or isinstance(changed_at, bool) or not (
                0 < changed_at <= _LAST_SECOND):
            raise FormatError("changed_at must be a positive integer")
        when = from_timestamp(changed_at)
        assert when is not None
        return cls(
            account_id=parse_uuid(field(obj, "account_id")),
            old_fingerprint=b64d(field(obj, "old_fingerprint"), size=32, what="old_fingerprint"),
            new_fingerprint=b64d(field(obj, "new_fingerprint"), size=32, what="new_fingerprint"),
            changed_at=when,
            signature=b64d(field(obj, "signature"), size=64, what="signature"),
        )


def key_change_links(pinned: bytes, history: Sequence[tuple[PublicIdentity, KeyChange]],
                     current: PublicIdentity) -> bool:
    """True when ``history`` (oldest first: each replaced identity with the statement that
    replaced it) leads from the identity with fingerprint ``pinned`` to ``current``, every
    step signed by the key it replaced. Any gap, reordering or bad signature gives False."""
    chain = [previous for previous, _ in history] + [current]
    starts = [i for i, identity in enumerate(chain[:-1])
              if hmac.compare_digest(identity.fingerprint(), pinned)]
    if not starts:
        return False
    try:
        for i in range(starts[-1], len(history)):
            history[i][1].verify(chain[i], chain[i + 1])
    except IdentityMismatchError:
        return False
    return True
