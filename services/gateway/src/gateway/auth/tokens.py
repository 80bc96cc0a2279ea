"""Access tokens: EdDSA JWTs for the gateway itself, at most 15 minutes, bound to a session."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

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
    """Signs with one key; verifies with it and, during a rotation, with the previous key's
    public half (``previous_public_pem``) until the last token it signed has expired
    (docs/deploy.md, rotation)."""

    def __init__(self, private_pem: bytes, ttl_s: int,
                 previous_public_pem: bytes | None = None) -> None:
        key = serialization.load_pem_private_key(private_pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the access token key must be Ed25519")
        self._key = key
        self._public = key.public_key()
        public_pem = self._public.public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = key_id(public_pem)
        self.ttl_s = ttl_s
        self._verifying: dict[str, Ed25519PublicKey] = {self.kid: self._public}
        self._previous: str | None = None
        self._previous_until = 0.0
        if previous_public_pem:
            previous = serialization.load_pem_public_key(previous_public_pem)
            if not isinstance(previous, Ed25519PublicKey):
                raise ValueError("the previous access token key must be Ed25519")
            self._verifying.setdefault(key_id(previous_public_pem), previous)
            # Every honest token of the previous key was issued before this process began
            # signing with the new one, so none is valid past start + ttl: after that the
            # previous key verifies nothing, even if the operator forgets to remove it.
            self._previous = key_id(previous_public_pem)
            self._previous_until = time.time() + ttl_s

    def issue(self, account_id: uuid.UUID, session_id: uuid.UUID, role: str) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": str(account_id), "sid": str(session_id),
                  "role": role, "iat": now, "nbf": now, "exp": now + self.ttl_s,
                  "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})

    def verify(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
            public = self._verifying.get(str(header.get("kid")))
            if header.get("alg") != ALGORITHM or public is None:
                raise InvalidAccessToken("unexpected algorithm or key id")
            if header.get("kid") == self._previous and time.time() > self._previous_until:
                raise InvalidAccessToken("the previous key's window has ended")
            claims = jwt.decode(token, public, algorithms=[ALGORITHM], audience=AUDIENCE,
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
