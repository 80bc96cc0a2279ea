"""Internal tokens: the gateway signs, every service verifies.

EdDSA (Ed25519) JWTs, audience = the target service, at most 60 s of life. They carry
the request id and, once a user is authenticated, the principal.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ISSUER = "ecrin-gateway"
ALGORITHM = "EdDSA"
MAX_LIFETIME_S = 60
HEADER = "x-ecrin-internal-token"
SERVICES = ("records-api", "kms", "sharing", "gateway")


class InvalidInternalToken(Exception):
    """The token is missing, malformed, forged, expired or for another service."""


@dataclass(frozen=True)
class Principal:
    """Who a request acts for, as the gateway authenticated them."""

    account_id: str
    role: str
    session_id: str | None = None
    second_factor: bool = False
    #: "normal", or "recovery" for a session that may only reset the passphrase.
    session_kind: str = "normal"


@dataclass(frozen=True)
class InternalClaims:
    audience: str
    request_id: str | None
    principal: Principal | None
    token_id: str
    extra: dict[str, Any] = field(default_factory=dict)


def generate_keypair_pem() -> tuple[bytes, bytes]:
    """A fresh Ed25519 key pair as (private PEM, public PEM), for development and tests."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return private_pem, public_pem


def key_id(public_pem: bytes) -> str:
    public = serialization.load_pem_public_key(public_pem)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    import hashlib

    return hashlib.sha256(raw).hexdigest()[:16]


class InternalTokenIssuer:
    def __init__(self, private_pem: bytes, lifetime_s: int = 30) -> None:
        if not 0 < lifetime_s <= MAX_LIFETIME_S:
            raise ValueError("internal token lifetime must be within 60 s")
        key = serialization.load_pem_private_key(private_pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the internal token key must be Ed25519")
        self._key = key
        public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        self._kid = key_id(public_pem)
        self._lifetime = lifetime_s

    def issue(self, audience: str, *, request_id: str | None = None,
              principal: Principal | None = None, **extra: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER, "aud": audience, "iat": now, "nbf": now - 1,
            "exp": now + self._lifetime, "jti": uuid.uuid4().hex,
        }
        if request_id:
            claims["rid"] = request_id
        if principal is not None:
            claims["sub"] = principal.account_id
            claims["role"] = principal.role
            claims["amr2"] = principal.second_factor
            if principal.session_id:
                claims["sid"] = principal.session_id
            if principal.session_kind != "normal":
                claims["skd"] = principal.session_kind
        claims.update(extra)
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self._kid})


def split_pem_bundle(pem: bytes) -> list[bytes]:
    """Each ``-----BEGIN ...-----`` block of a PEM file, in order."""
    blocks, current = [], []
    for line in pem.splitlines(keepends=True):
        if line.startswith(b"-----BEGIN "):
            current = [line]
        elif current:
            current.append(line)
            if line.startswith(b"-----END "):
                blocks.append(b"".join(current))
                current = []
    return blocks


class InternalTokenVerifier:
    """Verifies with one public key or, during a rotation, several: ``public_pem`` may hold
    the new key and the previous one, one PEM block each (docs/deploy.md, rotation). A token
    names its key by ``kid``; a token whose key is not in the bundle is refused."""

    def __init__(self, public_pem: bytes, audience: str) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        for block in split_pem_bundle(public_pem) or [public_pem]:
            key = serialization.load_pem_public_key(block)
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError("the internal token key must be Ed25519")
            self._keys[key_id(block)] = key
        self.audience = audience

    def verify(self, token: str, *, audiences: frozenset[str] | None = None) -> InternalClaims:
        """Checks signature, issuer, lifetime and audience (``self.audience``, or one of
        ``audiences`` on the few routes that accept a token forwarded by another service)."""
        accepted = sorted(audiences) if audiences else self.audience
        checks: dict[str, Any] = {
            "algorithms": [ALGORITHM], "audience": accepted, "issuer": ISSUER, "leeway": 2,
            "options": {"require": ["exp", "iat", "nbf", "aud", "iss", "jti"]}}
        try:
            if len(self._keys) == 1:
                # One key (outside a rotation): the token is parsed once, and its key id
                # checked after the signature. PyJWT checks every character of every
                # segment on each parse, about a third of a verification.
                [(kid, key)] = self._keys.items()
                decoded = jwt.decode_complete(token, key, **checks)
                if decoded["header"].get("kid") != kid:
                    raise InvalidInternalToken("unexpected key id")
                claims = decoded["payload"]
            else:
                header = jwt.get_unverified_header(token)
                named = self._keys.get(str(header.get("kid")))
                if header.get("alg") != ALGORITHM or named is None:
                    raise InvalidInternalToken("unexpected algorithm or key id")
                claims = jwt.decode(token, named, **checks)
        except jwt.PyJWTError as exc:
            raise InvalidInternalToken(type(exc).__name__) from None
        if claims["exp"] - claims["iat"] > MAX_LIFETIME_S:
            raise InvalidInternalToken("lifetime too long")
        principal = None
        if "sub" in claims:
            principal = Principal(account_id=str(claims["sub"]), role=str(claims.get("role", "")),
                                  session_id=claims.get("sid"),
                                  second_factor=bool(claims.get("amr2", False)),
                                  session_kind=str(claims.get("skd", "normal")))
        known = {"iss", "aud", "iat", "nbf", "exp", "jti", "rid", "sub", "role", "sid", "amr2",
                 "skd"}
        return InternalClaims(audience=str(claims["aud"]), request_id=claims.get("rid"),
                              principal=principal, token_id=claims["jti"],
                              extra={k: v for k, v in claims.items() if k not in known})
