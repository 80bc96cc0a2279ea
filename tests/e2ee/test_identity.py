from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecrin_e2ee import FormatError, IdentityKeys, IdentityMismatchError, PublicIdentity
from ecrin_e2ee._wire import b64e


class TestPublicIdentity:
    def test_json_round_trip(self, alice: IdentityKeys) -> None:
        pub = alice.public_identity()
        assert PublicIdentity.from_json(pub.to_json()) == pub

    @pytest.mark.parametrize("field", ["account_id", "enc_public", "sign_public", "self_signature"])
    def test_tampered_identity_is_rejected(self, alice: IdentityKeys, field: str) -> None:
        obj = alice.public_identity().to_json()
        if field == "account_id":
            obj[field] = str(uuid.uuid4())
        else:
            raw = bytearray(getattr(alice.public_identity(), field))
            raw[5] ^= 0x10
            obj[field] = b64e(bytes(raw))
        with pytest.raises(IdentityMismatchError):
            PublicIdentity.from_json(obj)

    def test_substituted_keys_are_rejected(
        self, alice: IdentityKeys, mallory: IdentityKeys
    ) -> None:
        obj = alice.public_identity().to_json()
        obj["enc_public"] = mallory.public_identity().to_json()["enc_public"]
        with pytest.raises(IdentityMismatchError):
            PublicIdentity.from_json(obj)

    def test_malformed_json(self) -> None:
        with pytest.raises(FormatError):
            PublicIdentity.from_json({"account_id": "nope"})

    def test_pinned_fingerprint(self, alice: IdentityKeys, mallory: IdentityKeys) -> None:
        pub = alice.public_identity()
        pub.verify_fingerprint(pub.fingerprint())
        pub.verify_fingerprint(pub.fingerprint_hex())
        with pytest.raises(IdentityMismatchError):
            pub.verify_fingerprint(mallory.public_identity().fingerprint())
        with pytest.raises(IdentityMismatchError):
            pub.verify_fingerprint("not hex")

    def test_fingerprint_changes_with_any_key(self, alice: IdentityKeys) -> None:
        other = IdentityKeys(
            alice.account_id,
            IdentityKeys.generate(alice.account_id).encryption_key,
            alice.signing_key,
        )
        assert other.public_identity().fingerprint() != alice.public_identity().fingerprint()


class TestSafetyNumber:
    def test_symmetric_and_grouped(self, alice: IdentityKeys, bob: IdentityKeys) -> None:
        a, b = alice.public_identity(), bob.public_identity()
        number = a.safety_number(b)
        assert number == b.safety_number(a)
        groups = number.split(" ")
        assert len(groups) == 12 and all(len(g) == 5 and g.isdigit() for g in groups)

    def test_differs_when_a_key_is_substituted(
        self, alice: IdentityKeys, bob: IdentityKeys, mallory: IdentityKeys
    ) -> None:
        a = alice.public_identity()
        assert a.safety_number(bob.public_identity()) != a.safety_number(mallory.public_identity())


class TestIdentityKeys:
    @given(st.binary(min_size=64, max_size=64))
    def test_bytes_round_trip(self, raw: bytes) -> None:
        keys = IdentityKeys.from_bytes(uuid.UUID(int=1), raw)
        assert keys.to_bytes() == raw
        public = keys.public_identity()
        assert PublicIdentity.from_json(public.to_json()) == public
