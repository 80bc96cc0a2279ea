"""Server-side secrets at rest: sealed small secrets and slow one-time code hashes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecrin_e2ee import AtRestKey, AtRestKeyring, DecryptionError, OneTimeCodeHash

ACCOUNT = b"\x01" * 16


URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class TestAtRestKey:
    @settings(max_examples=25, deadline=None)
    @given(st.binary(max_size=256))
    def test_round_trip(self, plaintext: bytes) -> None:
        key = AtRestKey.generate()
        assert key.open(key.seal(plaintext, ACCOUNT), ACCOUNT) == plaintext

    def test_the_sealed_text_names_its_key_and_hides_the_secret(self) -> None:
        key = AtRestKey.generate()
        sealed = key.seal(b"JBSWY3DPEHPK3PXP", ACCOUNT)
        assert sealed.startswith(f"ecrin-ar1.{key.key_id}.")
        assert "JBSWY3DPEHPK3PXP" not in sealed
        assert key.seal(b"JBSWY3DPEHPK3PXP", ACCOUNT) != sealed  # random nonce

    def test_another_account_does_not_open_it(self) -> None:
        key = AtRestKey.generate()
        with pytest.raises(DecryptionError):
            key.open(key.seal(b"seed", ACCOUNT), b"\x02" * 16)

    def test_another_key_does_not_open_it(self) -> None:
        with pytest.raises(DecryptionError):
            AtRestKey.generate().open(AtRestKey.generate().seal(b"seed", ACCOUNT), ACCOUNT)

    @pytest.mark.parametrize("part", [0, 1, 2])
    def test_every_part_is_tamper_evident(self, part: int) -> None:
        key = AtRestKey.generate()
        pieces = key.seal(b"seed", ACCOUNT).split(".")
        # The last character's top bit always counts (its low bits may be padding, and a
        # change there alone decodes to the same bytes): flip that one.
        last = URLSAFE.index(pieces[part][-1])
        pieces[part] = pieces[part][:-1] + URLSAFE[last ^ 32]
        with pytest.raises(DecryptionError):
            key.open(".".join(pieces), ACCOUNT)

    def test_text_form_round_trips_and_never_prints(self) -> None:
        key = AtRestKey.generate()
        assert AtRestKey.from_text(key.to_text()) == key
        assert key.to_text() not in repr(key)
        with pytest.raises(ValueError):
            AtRestKey.from_text("too-short")


class TestRotation:
    def test_old_keys_open_and_only_the_current_one_seals(self) -> None:
        old, new = AtRestKey.generate(), AtRestKey.generate()
        sealed_before = old.seal(b"seed", ACCOUNT)
        ring = AtRestKeyring(new, [old])
        assert ring.open(sealed_before, ACCOUNT) == b"seed"
        assert not ring.is_current(sealed_before)
        assert ring.is_current(ring.seal(b"seed", ACCOUNT))

    def test_a_key_dropped_from_the_ring_opens_nothing(self) -> None:
        sealed = AtRestKey.generate().seal(b"seed", ACCOUNT)
        with pytest.raises(DecryptionError):
            AtRestKeyring(AtRestKey.generate()).open(sealed, ACCOUNT)


class TestOneTimeCodeHash:
    def test_salted_and_verifiable(self) -> None:
        first, second = OneTimeCodeHash.hash(b"code"), OneTimeCodeHash.hash(b"code")
        assert first != second and first.startswith("$argon2id$")
        assert OneTimeCodeHash.verify(first, b"code")
        assert not OneTimeCodeHash.verify(first, b"other")

    def test_a_malformed_hash_verifies_nothing(self) -> None:
        assert not OneTimeCodeHash.verify("0" * 64, b"code")
