"""Device-local secrets of an account (contact names): sealed for its own devices only."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecrin_e2ee import DecryptionError, IdentityKeys, local_open, local_seal
from ecrin_e2ee._wire import b64d, b64e
from ecrin_e2ee.local_seal import local_key

DATA = json.loads((Path(__file__).parent / "data" / "local_seal.json").read_text("utf-8"))
ALICE = IdentityKeys.from_bytes(uuid.UUID(DATA["account_id"]), b64d(DATA["identity_keys"]))


class TestVector:
    def test_the_key_is_crypto_kdf_of_the_signing_seed_and_the_vector_opens(self):
        assert local_key(ALICE, "contacts") == b64d(DATA["key"])
        assert local_open(ALICE, "contacts", DATA["sealed"]) == b64d(DATA["plaintext"])


class TestRoundTrip:
    @given(st.binary(max_size=2000))
    def test_what_is_sealed_opens(self, plaintext: bytes):
        assert local_open(ALICE, "contacts", local_seal(ALICE, "contacts", plaintext)) == plaintext

    def test_two_seals_differ(self):
        assert local_seal(ALICE, "contacts", b"x") != local_seal(ALICE, "contacts", b"x")


class TestRefusals:
    def test_another_account_even_with_the_same_keys_does_not_open(self):
        other_id = IdentityKeys.from_bytes(uuid.uuid4(), b64d(DATA["identity_keys"]))
        with pytest.raises(DecryptionError):
            local_open(other_id, "contacts", DATA["sealed"])

    def test_other_keys_do_not_open(self):
        with pytest.raises(DecryptionError):
            local_open(IdentityKeys.generate(ALICE.account_id), "contacts", DATA["sealed"])

    def test_an_unknown_purpose_does_not_open(self):
        with pytest.raises(DecryptionError):
            local_open(ALICE, "elsewhere", DATA["sealed"])

    @pytest.mark.parametrize("position", [0, 10, 23, 24, 40, -1])
    def test_every_flipped_byte_is_refused(self, position: int):
        raw = bytearray(b64d(DATA["sealed"].split(".")[1]))
        raw[position] ^= 1
        with pytest.raises(DecryptionError):
            local_open(ALICE, "contacts", f"ecrin-ls1.{b64e(bytes(raw))}")

    @pytest.mark.parametrize("sealed", ["", "ecrin-ls1.", "ecrin-ls2." + "A" * 60,
                                        "ecrin-ls1.AAAA", "ecrin-ls1.a.b", "ecrin-ls1.!!"])
    def test_malformed_text_is_the_same_opaque_error(self, sealed: str):
        with pytest.raises(DecryptionError):
            local_open(ALICE, "contacts", sealed)
