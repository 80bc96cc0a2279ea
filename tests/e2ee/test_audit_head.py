"""Signed audit-chain heads: sign, verify, and refuse every altered field."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecrin_e2ee import AuditHead, AuditSigningKey, DecryptionError, FormatError, SignedAuditHead
from ecrin_e2ee._wire import b64d, b64e

HASH = hashlib.sha256(b"event 3").hexdigest()


@pytest.fixture
def key() -> AuditSigningKey:
    return AuditSigningKey.generate()


@pytest.fixture
def signed(key: AuditSigningKey) -> SignedAuditHead:
    return key.sign(service="kms", chain="file:0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0", seq=3,
                    hash=HASH)


class TestSignAndVerify:
    def test_a_signed_head_verifies_under_its_key_after_a_json_round_trip(self, key, signed):
        again = SignedAuditHead.from_json(signed.to_json())
        assert again == signed
        again.verify(key.public_key)
        assert signed.head.time.microsecond == 0 and signed.head.time.tzinfo is not None

    def test_an_empty_chain_has_a_head_too(self, key):
        empty = key.sign(service="sharing", chain="file:x", seq=0, hash=AuditHead.GENESIS)
        empty.verify(key.public_key)

    def test_another_key_does_not_verify(self, signed):
        with pytest.raises(DecryptionError):
            signed.verify(AuditSigningKey.generate().public_key)

    def test_a_key_that_is_not_a_key_does_not_verify(self, signed):
        with pytest.raises(DecryptionError):
            signed.verify(b"short")

    def test_the_signing_key_never_prints(self, key):
        assert b64e(key.to_bytes()) not in repr(key) + str(key)
        assert repr(key) == "AuditSigningKey(<secret>)"


TAMPERED = {
    "service": "records-api",
    "chain": "file:00000000-0000-4000-8000-000000000000",
    "seq": 4,
    "hash": hashlib.sha256(b"another event").hexdigest(),
    "time": "2031-01-01T00:00:00Z",
}


class TestTamper:
    @pytest.mark.parametrize("name", sorted(TAMPERED))
    def test_each_head_field_altered_is_refused(self, key, signed, name):
        obj = signed.to_json()
        obj["head"][name] = TAMPERED[name]
        with pytest.raises(DecryptionError):
            SignedAuditHead.from_json(obj).verify(key.public_key)

    @pytest.mark.parametrize("byte", [0, 31, 63])
    def test_a_flipped_signature_bit_is_refused(self, key, signed, byte):
        raw = bytearray(signed.signature)
        raw[byte] ^= 0x01
        obj = {**signed.to_json(), "signature": b64e(bytes(raw))}
        with pytest.raises(DecryptionError):
            SignedAuditHead.from_json(obj).verify(key.public_key)

    def test_a_head_signed_by_another_key_is_refused(self, key, signed):
        forged = AuditSigningKey.generate().sign(
            service=signed.head.service, chain=signed.head.chain, seq=signed.head.seq,
            hash=signed.head.hash)
        with pytest.raises(DecryptionError):
            forged.verify(key.public_key)


class TestShape:
    @pytest.mark.parametrize(("name", "value"), [
        ("service", ""), ("service", 7), ("chain", "x" * 256), ("seq", -1), ("seq", True),
        ("seq", "3"), ("seq", 1 << 63), ("hash", HASH.upper()), ("hash", HASH[:-1]),
        ("time", "2026-03-01T09:30:00+00:00"),
        ("time", "2026-3-01T09:30:00Z"), ("time", "2026-03-01T09:30:00.5Z"), ("time", 1),
    ])
    def test_a_malformed_head_is_a_format_error(self, signed, name, value):
        obj = signed.to_json()
        obj["head"][name] = value
        with pytest.raises(FormatError):
            SignedAuditHead.from_json(obj)

    def test_an_empty_chain_must_name_the_genesis_hash(self):
        with pytest.raises(FormatError):
            AuditHead("kms", "file:x", 0, HASH, datetime(2026, 3, 1, tzinfo=UTC))

    @pytest.mark.parametrize("missing", ["head", "signature"])
    def test_a_missing_part_is_a_format_error(self, signed, missing):
        obj = signed.to_json()
        del obj[missing]
        with pytest.raises(FormatError):
            SignedAuditHead.from_json(obj)

    def test_a_short_signature_is_a_format_error(self, signed):
        obj = {**signed.to_json(), "signature": b64e(b64d(signed.to_json()["signature"])[:63])}
        with pytest.raises(FormatError):
            SignedAuditHead.from_json(obj)


@given(service=st.text(min_size=1, max_size=40), chain=st.text(min_size=1, max_size=80),
       seq=st.integers(min_value=1, max_value=(1 << 63) - 1), digest=st.binary(min_size=32,
                                                                               max_size=32))
def test_any_head_round_trips_and_verifies(service, chain, seq, digest):
    key = AuditSigningKey(bytes(32))
    signed = key.sign(service=service, chain=chain, seq=seq, hash=digest.hex())
    again = SignedAuditHead.from_json(signed.to_json())
    assert again == signed
    again.verify(key.public_key)
