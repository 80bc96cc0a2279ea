"""Re-encryption grants, scope rotation and record re-keying.

* :func:`grant_scope_keys`: the granter's device seals the scope keys it holds to a grantee
  identity it has verified, and signs each entry. Servers store and serve the entries; they
  cannot make one.
* :func:`rotate_scope`: after a revocation or an expiry, a fresh scope key version is sealed
  to each remaining member.
* :func:`rekey_record_header`: re-wraps a record's DEK under the new scope key version
  without touching content or metadata ciphertexts.

Who signs a re-keyed header: the author's signature over the header core (ids, stream
header, sizes, digests, DEK commitment) is kept unchanged; the member who re-keys writes
its account id into ``wrapper_id`` and signs the new wrap (which covers the core and the
author signature). A reader verifies the author signature against the author's pinned
identity, the wrap signature against the wrapper's pinned identity, and, after unwrapping,
that the DEK matches the author's commitment — so a re-keying member can move a record to a
new key version but cannot change what the author wrote.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ecrin_e2ee.identity import IdentityKeys, PublicIdentity
from ecrin_e2ee.keyring import (
    KeyringEntry,
    Permission,
    Relationship,
    ScopeKey,
    seal_entry,
)
from ecrin_e2ee.record_header import RecordHeader, unwrap_dek

__all__ = [
    "GrantTerms",
    "Member",
    "Rotation",
    "grant_scope_keys",
    "rekey_record_header",
    "rotate_scope",
]


@dataclass(frozen=True, slots=True)
class GrantTerms:
    """What a grant says besides the key: relationship, permissions, validity window."""

    relationship: Relationship
    permissions: frozenset[Permission]
    valid_from: datetime | None = None
    valid_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Member:
    """A keyring member: a verified identity and the terms of its grant."""

    identity: PublicIdentity
    terms: GrantTerms


@dataclass(frozen=True, slots=True, repr=False)
class Rotation:
    """A new scope key version and its entries for every remaining member."""

    scope_key: ScopeKey
    entries: tuple[KeyringEntry, ...]

    def __repr__(self) -> str:
        return f"Rotation({self.scope_key!r}, entries={len(self.entries)})"


def grant_scope_keys(
    scope_keys: Iterable[ScopeKey],
    grantee: PublicIdentity,
    terms: GrantTerms,
    *,
    granter: IdentityKeys,
    pinned_fingerprint: bytes | str | None = None,
) -> list[KeyringEntry]:
    """Seal each scope key to ``grantee`` and sign as ``granter``.

    The grantee's self-signature is always checked; pass the fingerprint the granter pinned
    (compared in person, or from a previous verification) to check that too. Raises
    :class:`IdentityMismatchError` if either fails.
    """
    grantee.verify()
    if pinned_fingerprint is not None:
        grantee.verify_fingerprint(pinned_fingerprint)
    return [
        seal_entry(
            key,
            grantee,
            relationship=terms.relationship,
            permissions=terms.permissions,
            granter=granter,
            valid_from=terms.valid_from,
            valid_until=terms.valid_until,
        )
        for key in scope_keys
    ]


def rotate_scope(
    current: ScopeKey, members: Sequence[Member], *, granter: IdentityKeys
) -> Rotation:
    """Make version ``current.version + 1`` and seal it to every remaining member.

    Include the granter itself in ``members`` if it should keep access (it normally does).
    """
    new_key = ScopeKey.generate(current.file_id, current.scope, current.version + 1)
    entries = tuple(
        entry
        for member in members
        for entry in grant_scope_keys([new_key], member.identity, member.terms, granter=granter)
    )
    return Rotation(new_key, entries)


def rekey_record_header(
    header: RecordHeader,
    old_scope_key: ScopeKey,
    new_scope_key: ScopeKey,
    signer: IdentityKeys,
) -> RecordHeader:
    """Re-wrap the DEK under ``new_scope_key``; the wrap is signed by ``signer``.

    Unwrapping with ``old_scope_key`` checks the DEK against the author's commitment
    (:class:`DecryptionError` otherwise). Content and metadata ciphertexts are unchanged.
    """
    if new_scope_key.version <= old_scope_key.version:
        raise ValueError("the new scope key must be a later version")
    dek = unwrap_dek(header, old_scope_key)
    return header.with_wrap(new_scope_key, dek, signer)
