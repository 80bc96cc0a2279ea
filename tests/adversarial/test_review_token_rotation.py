"""Attacker's review (h11): the gateway's access-token key rotation has no window in code.

``AccessTokens(private_pem, ttl_s, previous_public_pem)`` accepts every token signed by the
previous key for as long as the operator leaves ``ACCESS_TOKEN_PREVIOUS_PUBLIC_KEY_FILE``
set (docs/deploy.md: "after 15 min, unset the previous key and roll" — a manual step). The
legitimate tokens of the old key were all issued before the gateway started with the new
one, so none can be valid later than start + ttl. A key is rotated because it may have
leaked: whoever holds the old private key keeps minting fresh tokens (for a session whose id
they saw) long after the window, until someone remembers to remove the file.
"""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ecrin_platform.tokens import key_id
from gateway.auth.tokens import ALGORITHM, AUDIENCE, ISSUER, AccessTokens, InvalidAccessToken


def _pems() -> tuple[bytes, bytes]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def test_a_token_minted_with_the_previous_key_after_its_window_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    old_private, old_public = _pems()
    new_private, _ = _pems()
    ttl = 900
    started = time.time() - 2 * 3600  # the gateway rolled to the new key two hours ago
    monkeypatch.setattr(time, "time", lambda: started)
    tokens = AccessTokens(new_private, ttl, previous_public_pem=old_public)
    monkeypatch.undo()

    # Now: the attacker holds the leaked old private key and mints a fresh token.
    now = int(time.time())
    forged = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": str(uuid.uuid4()),
                         "sid": str(uuid.uuid4()), "role": "practitioner", "iat": now,
                         "nbf": now, "exp": now + ttl, "jti": uuid.uuid4().hex},
                        serialization.load_pem_private_key(old_private, password=None),
                        algorithm=ALGORITHM, headers={"kid": key_id(old_public)})
    with pytest.raises(InvalidAccessToken):
        tokens.verify(forged)
