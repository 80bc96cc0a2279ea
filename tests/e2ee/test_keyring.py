from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecrin_e2ee import (
    DecryptionError,
    FormatError,
    GrantTerms,
    IdentityKeys,
    KeyringEntry,
    Permission,
    Relationship,
    Scope,
    ScopeKey,
    grant_scope_keys,
    open_entry,
    seal_entry,
)
from ecrin_e2ee._wire import b64d, b64e
from ecrin_e2ee.keyring import seal

NOW = datetime(2026, 3, 1, tzinfo=UTC)
READ = frozenset({Permission.READ})


def _entry(key: ScopeKey, member: IdentityKeys, granter: IdentityKeys, **kw: Any) -> KeyringEntry:
    return seal_entry(
        key,
        member.public_identity(),
        relationship=kw.pop("relationship", Relationship.CARE_TEAM),
        permissions=kw.pop("permissions", READ),
        granter=granter,
        **kw,
    )


class TestSealedBox:
    def test_interoperates_with_libsodium_crypto_box_seal(self, bob: IdentityKeys) -> None:
        from nacl.public import SealedBox

        sealed = seal(b"hello", bytes(bob.encryption_key.public_key))
        assert SealedBox(bob.encryption_key).decrypt(sealed) == b"hello"


class TestKeyringEntry:
    def test_open(self, alice: IdentityKeys, bob: IdentityKeys, clinical_key: ScopeKey) -> None:
        entry = KeyringEntry.from_json(_entry(clinical_key, bob, alice).to_json())
        assert open_entry(entry, bob, alice.public_identity(), at=NOW) == clinical_key

    def test_wrong_member(
        self, alice: IdentityKeys, bob: IdentityKeys, mallory: IdentityKeys, clinical_key: ScopeKey
    ) -> None:
        entry = _entry(clinical_key, bob, alice)
        with pytest.raises(DecryptionError):
            open_entry(entry, mallory, alice.public_identity(), at=NOW)

    def test_wrong_granter(
        self, alice: IdentityKeys, bob: IdentityKeys, mallory: IdentityKeys, clinical_key: ScopeKey
    ) -> None:
        forged = _entry(clinical_key, bob, mallory)
        with pytest.raises(DecryptionError):
            open_entry(forged, bob, alice.public_identity(), at=NOW)
        # a forger that claims alice's id still fails the signature
        obj = forged.to_json()
        obj["granter_id"] = str(alice.account_id)
        with pytest.raises(DecryptionError):
            open_entry(KeyringEntry.from_json(obj), bob, alice.public_identity(), at=NOW)

    def test_validity_window(
        self, alice: IdentityKeys, bob: IdentityKeys, clinical_key: ScopeKey
    ) -> None:
        entry = _entry(
            clinical_key, bob, alice, valid_from=NOW, valid_until=NOW + timedelta(days=30)
        )
        granter = alice.public_identity()
        open_entry(entry, bob, granter, at=NOW + timedelta(days=1))
        for when in (NOW - timedelta(seconds=1), NOW + timedelta(days=30)):
            with pytest.raises(DecryptionError):
                open_entry(entry, bob, granter, at=when)

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("file_id", lambda e: str(uuid.uuid4())),
            ("scope", lambda e: "shared"),
            ("version", lambda e: e["version"] + 1),
            ("member_id", lambda e: str(uuid.uuid4())),
            ("member_fingerprint", lambda e: b64e(bytes(32))),
            ("relationship", lambda e: "owner"),
            ("permissions", lambda e: ["append", "read"]),
            ("valid_from", lambda e: 1),
            ("valid_until", lambda e: 4_000_000_000),
            ("granter_id", lambda e: str(uuid.uuid4())),
            ("sealed_key", lambda e: _flip(e["sealed_key"], 60)),
            ("signature", lambda e: _flip(e["signature"], 3)),
        ],
    )
    def test_every_field_is_signed(
        self,
        alice: IdentityKeys,
        bob: IdentityKeys,
        clinical_key: ScopeKey,
        field: str,
        value: Any,
    ) -> None:
        obj = _entry(clinical_key, bob, alice).to_json()
        obj[field] = value(obj)
        with pytest.raises(DecryptionError):
            open_entry(KeyringEntry.from_json(obj), bob, alice.public_identity(), at=NOW)

    def test_sealed_key_swapped_between_entries(
        self, alice: IdentityKeys, bob: IdentityKeys, file_id: uuid.UUID
    ) -> None:
        """A validly signed entry whose sealed key belongs to another scope/version fails."""
        clinical = ScopeKey.generate(file_id, Scope.CLINICAL, 1)
        shared = ScopeKey.generate(file_id, Scope.SHARED, 1)
        e1 = _entry(clinical, bob, alice)
        e2 = _entry(shared, bob, alice)
        # re-sign e1's terms around e2's sealed key, as a malicious granter device could
        import dataclasses

        mixed = dataclasses.replace(e1, sealed_key=e2.sealed_key)
        mixed = dataclasses.replace(mixed, signature=alice.sign(mixed.signed_bytes()))
        with pytest.raises(DecryptionError):
            open_entry(mixed, bob, alice.public_identity(), at=NOW)

    def test_malformed_json(
        self, alice: IdentityKeys, bob: IdentityKeys, clinical_key: ScopeKey
    ) -> None:
        obj = _entry(clinical_key, bob, alice).to_json()
        obj["scope"] = "billing"
        with pytest.raises(FormatError):
            KeyringEntry.from_json(obj)

    @settings(max_examples=20, deadline=None)
    @given(
        scope=st.sampled_from(list(Scope)),
        version=st.integers(1, 2**32 - 1),
        relationship=st.sampled_from(list(Relationship)),
        permissions=st.sets(st.sampled_from(list(Permission)), min_size=1),
        start=st.integers(1, 2_000_000_000),
    )
    def test_hypothesis_round_trip(
        self,
        scope: Scope,
        version: int,
        relationship: Relationship,
        permissions: set[Permission],
        start: int,
    ) -> None:
        granter, member = IdentityKeys.generate(uuid.uuid4()), IdentityKeys.generate(uuid.uuid4())
        key = ScopeKey.generate(uuid.uuid4(), scope, version)
        valid_from = datetime.fromtimestamp(start, UTC)
        (entry,) = grant_scope_keys(
            [key],
            member.public_identity(),
            GrantTerms(relationship, frozenset(permissions), valid_from, None),
            granter=granter,
        )
        parsed = KeyringEntry.from_json(entry.to_json())
        assert parsed == entry
        assert open_entry(parsed, member, granter.public_identity(), at=valid_from) == key


def _flip(text: str, index: int) -> str:
    raw = bytearray(b64d(text))
    raw[index] ^= 0x01
    return b64e(bytes(raw))
