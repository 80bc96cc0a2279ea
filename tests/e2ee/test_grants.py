from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from ecrin_e2ee import (
    DecryptionError,
    GrantTerms,
    IdentityKeys,
    IdentityMismatchError,
    Member,
    Permission,
    RecordDecryptor,
    RecordHeader,
    Relationship,
    Scope,
    ScopeKey,
    encrypt_record,
    grant_scope_keys,
    open_entry,
    open_record,
    rekey_record_header,
    rotate_scope,
)

NOW = datetime(2026, 3, 1, tzinfo=UTC)
CARE = GrantTerms(Relationship.CARE_TEAM, frozenset({Permission.READ, Permission.APPEND}))


class TestGrant:
    def test_grantee_opens_every_scope(
        self, alice: IdentityKeys, bob: IdentityKeys, file_id: uuid.UUID
    ) -> None:
        keys = [ScopeKey.generate(file_id, s, 1) for s in Scope]
        grantee = bob.public_identity()
        entries = grant_scope_keys(
            keys, grantee, CARE, granter=alice, pinned_fingerprint=grantee.fingerprint()
        )
        opened = [open_entry(e, bob, alice.public_identity(), at=NOW) for e in entries]
        assert opened == keys

    def test_refuses_an_unpinned_substitute(
        self, alice: IdentityKeys, bob: IdentityKeys, mallory: IdentityKeys, clinical_key: ScopeKey
    ) -> None:
        pinned = bob.public_identity().fingerprint()
        with pytest.raises(IdentityMismatchError):
            grant_scope_keys(
                [clinical_key],
                mallory.public_identity(),
                CARE,
                granter=alice,
                pinned_fingerprint=pinned,
            )


class TestRotation:
    def test_removed_member_gets_nothing(
        self, alice: IdentityKeys, bob: IdentityKeys, mallory: IdentityKeys, clinical_key: ScopeKey
    ) -> None:
        members = [
            Member(alice.public_identity(), GrantTerms(Relationship.OWNER, frozenset(Permission))),
            Member(bob.public_identity(), CARE),
        ]
        rotation = rotate_scope(clinical_key, members, granter=alice)
        assert rotation.scope_key.version == 2
        assert rotation.scope_key.to_bytes() != clinical_key.to_bytes()
        assert {e.member_id for e in rotation.entries} == {alice.account_id, bob.account_id}
        for keys in (alice, bob):
            (entry,) = [e for e in rotation.entries if e.member_id == keys.account_id]
            assert open_entry(entry, keys, alice.public_identity(), at=NOW) == rotation.scope_key
        for entry in rotation.entries:
            with pytest.raises(DecryptionError):
                open_entry(entry, mallory, alice.public_identity(), at=NOW)
        assert "secret" in repr(rotation) and clinical_key.to_bytes().hex() not in repr(rotation)


class TestRekey:
    def _setup(self, alice: IdentityKeys, key: ScopeKey) -> tuple[bytes, object]:
        content = b"bilan " * 20_000
        record = encrypt_record(
            content,
            {"title": "t"},
            file_id=key.file_id,
            record_id=uuid.uuid4(),
            record_version=1,
            scope_key=key,
            author=alice,
        )
        return content, record

    def test_rekey_keeps_content_and_needs_the_new_key(
        self, alice: IdentityKeys, bob: IdentityKeys, clinical_key: ScopeKey
    ) -> None:
        content, record = self._setup(alice, clinical_key)
        new_key = ScopeKey.generate(clinical_key.file_id, Scope.CLINICAL, 2)
        header = rekey_record_header(record.header, clinical_key, new_key, bob)  # type: ignore[attr-defined]
        assert header.core_bytes() == record.header.core_bytes()  # type: ignore[attr-defined]
        assert header.author_signature == record.header.author_signature  # type: ignore[attr-defined]
        assert (header.key_version, header.wrapper_id) == (2, bob.account_id)
        dec = RecordDecryptor(
            RecordHeader.from_bytes(header.to_bytes()),
            record.metadata_ciphertext,  # type: ignore[attr-defined]
            scope_key=new_key,
            author=alice.public_identity(),
            wrapper=bob.public_identity(),
        )
        assert b"".join(dec.decrypt(record.chunks)) == content  # type: ignore[attr-defined]
        # the old key no longer opens the re-keyed header
        with pytest.raises(DecryptionError):
            RecordDecryptor(
                header,
                record.metadata_ciphertext,  # type: ignore[attr-defined]
                scope_key=clinical_key,
                author=alice.public_identity(),
                wrapper=bob.public_identity(),
            )

    def test_reader_checks_the_wrapper(
        self, alice: IdentityKeys, bob: IdentityKeys, mallory: IdentityKeys, clinical_key: ScopeKey
    ) -> None:
        _, record = self._setup(alice, clinical_key)
        new_key = ScopeKey.generate(clinical_key.file_id, Scope.CLINICAL, 2)
        header = rekey_record_header(record.header, clinical_key, new_key, bob)  # type: ignore[attr-defined]
        import dataclasses

        for wrapper in (None, mallory.public_identity()):
            with pytest.raises(DecryptionError):
                RecordDecryptor(
                    header,
                    record.metadata_ciphertext,  # type: ignore[attr-defined]
                    scope_key=new_key,
                    author=alice.public_identity(),
                    wrapper=wrapper,
                )
        # mallory re-signs bob's wrap as herself: the wrap id no longer matches bob's
        forged = dataclasses.replace(header, wrapper_id=mallory.account_id)
        forged = dataclasses.replace(forged, wrap_signature=mallory.sign(forged.wrap_message()))
        opened = open_record(
            dataclasses.replace(record, header=forged),  # type: ignore[type-var]
            scope_key=new_key,
            author=alice.public_identity(),
            wrapper=mallory.public_identity(),
        )
        # a re-keying member can move the record (it held the key) but not change it
        assert opened.content == b"bilan " * 20_000

    def test_rewrapping_a_different_dek_is_caught(
        self, alice: IdentityKeys, bob: IdentityKeys, clinical_key: ScopeKey
    ) -> None:
        """A rogue re-keyer that wraps some other DEK fails the author's commitment."""
        _, record = self._setup(alice, clinical_key)
        new_key = ScopeKey.generate(clinical_key.file_id, Scope.CLINICAL, 2)
        rogue = record.header.with_wrap(new_key, bytes(32), bob)  # type: ignore[attr-defined]
        with pytest.raises(DecryptionError):
            RecordDecryptor(
                rogue,
                record.metadata_ciphertext,  # type: ignore[attr-defined]
                scope_key=new_key,
                author=alice.public_identity(),
                wrapper=bob.public_identity(),
            )

    def test_rekey_with_the_wrong_old_key(
        self, alice: IdentityKeys, bob: IdentityKeys, clinical_key: ScopeKey
    ) -> None:
        _, record = self._setup(alice, clinical_key)
        new_key = ScopeKey.generate(clinical_key.file_id, Scope.CLINICAL, 2)
        with pytest.raises(DecryptionError):
            rekey_record_header(
                record.header,
                new_key,
                ScopeKey.generate(clinical_key.file_id, Scope.CLINICAL, 3),
                bob,
            )  # type: ignore[attr-defined]
        with pytest.raises(ValueError):
            rekey_record_header(record.header, clinical_key, clinical_key, bob)  # type: ignore[attr-defined]
