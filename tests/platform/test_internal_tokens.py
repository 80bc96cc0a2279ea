"""The internal token: only the gateway's key, for this service, within 60 s."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from ecrin_platform.tokens import (
    InternalTokenIssuer,
    InternalTokenVerifier,
    InvalidInternalToken,
    Principal,
    generate_keypair_pem,
    key_id,
)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _signed(private_pem: bytes, headers: dict, *, issued: int = 0, life: int = 30) -> str:
    """An EdDSA token for the kms signed with ``private_pem``, issued ``issued`` seconds
    from now, living ``life`` seconds, with the JOSE ``headers`` given (a kid or none)."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    now = int(time.time()) + issued
    return jwt.encode({"iss": "ecrin-gateway", "aud": "kms", "iat": now, "nbf": now,
                       "exp": now + life, "jti": "x"}, key, algorithm="EdDSA", headers=headers)


@pytest.fixture
def keys() -> tuple[bytes, bytes]:
    return generate_keypair_pem()


class TestInternalToken:
    def test_round_trip_carries_principal_and_request_id(self, keys):
        token = InternalTokenIssuer(keys[0]).issue(
            "kms", request_id="req-12345678",
            principal=Principal("acc-1", "practitioner", session_id="s1", second_factor=True))
        claims = InternalTokenVerifier(keys[1], "kms").verify(token)
        assert claims.request_id == "req-12345678"
        assert claims.principal == Principal("acc-1", "practitioner", "s1", True)

    def test_wrong_audience_is_rejected(self, keys):
        token = InternalTokenIssuer(keys[0]).issue("records-api")
        with pytest.raises(InvalidInternalToken):
            InternalTokenVerifier(keys[1], "kms").verify(token)

    def test_forged_by_another_key_is_rejected(self, keys):
        other_private, _ = generate_keypair_pem()
        token = InternalTokenIssuer(other_private).issue("kms")
        with pytest.raises(InvalidInternalToken):
            InternalTokenVerifier(keys[1], "kms").verify(token)

    def test_forged_with_our_kid_but_another_key_is_rejected(self, keys):
        other_private, _ = generate_keypair_pem()
        token = _signed(other_private, {"kid": key_id(keys[1])})
        with pytest.raises(InvalidInternalToken):
            InternalTokenVerifier(keys[1], "kms").verify(token)

    def test_expired_is_rejected(self, keys):
        token = _signed(keys[0], {"kid": key_id(keys[1])}, issued=-120)
        with pytest.raises(InvalidInternalToken):
            InternalTokenVerifier(keys[1], "kms").verify(token)

    def test_lifetime_over_60_seconds_is_rejected(self, keys):
        token = _signed(keys[0], {"kid": key_id(keys[1])}, life=3600)
        with pytest.raises(InvalidInternalToken):
            InternalTokenVerifier(keys[1], "kms").verify(token)

    def test_issuer_refuses_long_lifetimes(self, keys):
        with pytest.raises(ValueError):
            InternalTokenIssuer(keys[0], lifetime_s=61)

    def test_unsigned_alg_none_is_rejected(self, keys):
        now = int(time.time())
        header = _b64({"alg": "none", "typ": "JWT", "kid": key_id(keys[1])})
        body = _b64({"iss": "ecrin-gateway", "aud": "kms", "iat": now, "nbf": now,
                     "exp": now + 30, "jti": "x"})
        with pytest.raises(InvalidInternalToken):
            InternalTokenVerifier(keys[1], "kms").verify(f"{header}.{body}.")

    def test_hs256_keyed_with_the_public_key_is_rejected(self, keys):
        now = int(time.time())
        header = _b64({"alg": "HS256", "typ": "JWT", "kid": key_id(keys[1])})
        body = _b64({"iss": "ecrin-gateway", "aud": "kms", "iat": now, "nbf": now,
                     "exp": now + 30, "jti": "x"})
        import hashlib
        import hmac

        sig = hmac.new(keys[1], f"{header}.{body}".encode(), hashlib.sha256).digest()
        token = f"{header}.{body}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"
        with pytest.raises(InvalidInternalToken):
            InternalTokenVerifier(keys[1], "kms").verify(token)

    def test_garbage_is_rejected(self, keys):
        for token in ("", "a.b.c", "not a token", "...."):
            with pytest.raises(InvalidInternalToken):
                InternalTokenVerifier(keys[1], "kms").verify(token)

    def test_our_signature_under_another_or_no_key_id_is_rejected(self, keys):
        # With one key the token is verified before its key id is read: the id is still
        # checked (a token must name the key it was signed with).
        for headers in ({"kid": "0" * 16}, {}):
            with pytest.raises(InvalidInternalToken):
                InternalTokenVerifier(keys[1], "kms").verify(_signed(keys[0], headers))


class TestKeyBundle:
    """During a rotation a service verifies with the new key and the previous one."""

    def test_either_key_verifies_its_own_tokens_only(self, keys):
        old_private, old_public = generate_keypair_pem()
        verifier = InternalTokenVerifier(keys[1] + old_public, "kms")
        for private in (keys[0], old_private):  # both keys' honest tokens pass
            assert verifier.verify(InternalTokenIssuer(private).issue("kms")).audience == "kms"
        with pytest.raises(InvalidInternalToken):  # signed with the old key, naming the new
            verifier.verify(_signed(old_private, {"kid": key_id(keys[1])}))
        stranger, _ = generate_keypair_pem()
        with pytest.raises(InvalidInternalToken):
            verifier.verify(InternalTokenIssuer(stranger).issue("kms"))
