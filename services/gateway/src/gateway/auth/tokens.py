"""Access tokens: EdDSA JWTs for the gateway itself, at most 15 minutes, bound to a session."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ecrin_platform.tokens import key_id

ISSUER = "ecrin-gateway-auth"
AUDIENCE = "ecrin-gateway"
ALGORITHM = "EdDSA"


class InvalidAccessToken(Exception):
    pass


@dataclass(frozen=True)
class AccessClaims:
    account_id: uuid.UUID
    session_id: uuid.UUID
    role: str


class AccessTokens:
    def __init__(self, private_pem: bytes, ttl_s: int) -> None:
        key = serialization.load_pem_private_key(private_pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the access token key must be Ed25519")
        self._key = key
        self._public = key.public_key()
        public_pem = self._public.public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = key_id(public_pem)
        self.ttl_s = ttl_s

    def issue(self, account_id: uuid.UUID, session_id: uuid.UUID, role: str) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": str(account_id), "sid": str(session_id),
                  "role": role, "iat": now, "nbf": now, "exp": now + self.ttl_s,
                  "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})

    def verify(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != ALGORITHM or header.get("kid") != self.kid:
                raise InvalidAccessToken("unexpected algorithm or key id")
            claims = jwt.decode(token, self._public, algorithms=[ALGORITHM], audience=AUDIENCE,
                                issuer=ISSUER, leeway=5,
                                options={"require": ["exp", "iat", "nbf", "sub", "sid", "aud",
                                                     "iss"]})
            return AccessClaims(uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"]),
                                str(claims.get("role", "")))
        except (jwt.PyJWTError, ValueError, KeyError) as exc:
            raise InvalidAccessToken(type(exc).__name__) from None

    def secret_for(self, purpose: bytes) -> bytes:
        """A stable server secret for one purpose (fake salts), derived from the signing key."""
        raw = self._key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                      serialization.NoEncryption())
        return hashlib.blake2b(purpose, key=raw, digest_size=32).digest()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
