"""Pinned fingerprints: what the user verified in person, refused loudly if it changes."""

from __future__ import annotations

import uuid

from ecrin_client.errors import IdentityMismatch, InvalidInput
from ecrin_client.profile import Profile
from ecrin_e2ee import IdentityMismatchError, PublicIdentity


def account_uuid(value: str, what: str = "account id") -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise InvalidInput(f"{what} must be a UUID") from None


def compact(fingerprint: str) -> str:
    return "".join(fingerprint.split()).lower()


def grouped(hex_digits: str) -> str:
    return " ".join(hex_digits[i : i + 4] for i in range(0, len(hex_digits), 4))


def check_pin(identity: PublicIdentity, pinned: str) -> None:
    """Raise :class:`IdentityMismatch` unless ``identity`` has the pinned fingerprint."""
    try:
        identity.verify_fingerprint(pinned)
    except IdentityMismatchError:
        raise IdentityMismatch(
            f"the public key of account {identity.account_id} CHANGED since you verified it: "
            "refusing to use it. Compare safety numbers in person again before trusting "
            "it") from None


def pin(profile: Profile, account_id: str, fingerprint: str) -> None:
    """Remember a verified fingerprint; pinning another key over it is refused."""
    account_id = account_uuid(account_id)
    digits = compact(fingerprint)
    if len(digits) != 2 * PublicIdentity.FINGERPRINT_SIZE or any(
            c not in "0123456789abcdef" for c in digits):
        raise InvalidInput("a fingerprint is 64 hex digits")
    pinned = profile.pinned(account_id)
    if pinned is not None and compact(pinned) != digits:
        raise IdentityMismatch(f"account {account_id} is already pinned to another key")
    profile.pin(account_id, grouped(digits))
