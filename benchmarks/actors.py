"""Accounts, files and records for the benchmarks, made through the real gateway with
ecrin_e2ee (``tests/support/users.py``), and internal tokens minted like the gateway's."""

from __future__ import annotations

import base64
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt

from ecrin_e2ee import (
    EncryptedRecord,
    GrantTerms,
    Permission,
    PublicIdentity,
    Relationship,
    Scope,
    ScopeKey,
    encrypt_record,
    grant_scope_keys,
)
from ecrin_platform.tokens import HEADER as INTERNAL_HEADER
from ecrin_platform.tokens import InternalTokenIssuer, Principal
from tests.support.users import ApiUser, b64, sign_up, unb64

__all__ = ["ApiUser", "Practitioner", "TokenMinter", "b64", "unb64"]

METADATA = {"kind": "session-note", "title": "Séance 4 — rééducation épaule droite",
            "content_type": "text/plain", "created_at": "2026-11-28T10:00:00Z"}


@dataclass
class Practitioner:
    """A signed-up account with one patient file and its scope keys."""

    user: ApiUser
    file_id: uuid.UUID
    keys: dict[Scope, ScopeKey]

    @classmethod
    def sign_up(cls, gateway: str, role: str = "practitioner",
                name: str = "Dupont") -> Practitioner:
        """Set-up, not measured: a 503 (a service briefly overloaded, with Retry-After) is
        retried a few times."""
        for attempt in range(4):
            try:
                user = sign_up(gateway, role, totp=False)
                file_id, keys = (user.create_file(name) if role == "practitioner"
                                 else (uuid.uuid4(), {}))
                return cls(user, file_id, keys)
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 503 or attempt == 3:
                    raise
                time.sleep(2)
        raise AssertionError("unreachable")

    @property
    def headers(self) -> dict[str, str]:
        return self.user.headers

    @property
    def session_id(self) -> str:
        claims = jwt.decode(self.user.tokens["access_token"], options={"verify_signature": False})
        return str(claims["sid"])

    def encrypt(self, size: int, scope: Scope = Scope.CLINICAL,
                content: bytes | None = None) -> tuple[uuid.UUID, EncryptedRecord]:
        record_id = uuid.uuid4()
        return record_id, encrypt_record(
            content if content is not None else os.urandom(size), METADATA,
            file_id=self.file_id, record_id=record_id, record_version=1,
            scope_key=self.keys[scope], author=self.user.identity)

    def share(self, grantee: ApiUser, relationship: str, scopes: dict[str, str],
              valid_until: datetime | None = None) -> str:
        """A direct grant and its sealed scope keys (as in tests/e2e/test_sharing_api.py)."""
        grant_id = str(uuid.uuid4())
        body: dict[str, Any] = {"grant_id": grant_id, "file_id": str(self.file_id),
                                "grantee_id": str(grantee.account_id),
                                "relationship": relationship, "scopes": scopes}
        if valid_until is not None:
            body["valid_until"] = valid_until.isoformat()
        self.user.post("/v1/grants", json=body).raise_for_status()
        identity = PublicIdentity.from_json(
            self.user.get(f"/v1/directory/{grantee.account_id}").json()["identity"])
        entries = []
        for scope, access in scopes.items():
            perms = {Permission.READ} | ({Permission.APPEND} if access == "append" else set())
            terms = GrantTerms(Relationship(relationship), frozenset(perms),
                               valid_until=valid_until)
            entries += grant_scope_keys([self.keys[Scope(scope)]], identity, terms,
                                        granter=self.user.identity)
        self.user.post(f"/v1/keyrings/{self.file_id}/grants/{grant_id}",
                       json={"entries": [e.to_json() for e in entries]}).raise_for_status()
        return grant_id


def create_body(file_id: uuid.UUID, record_id: uuid.UUID, record: EncryptedRecord,
                scope: str = "clinical") -> tuple[dict[str, Any], bytes]:
    """The POST /v1/records body and the content bytes of an encrypted record."""
    content = b"".join(record.chunks)
    return ({"record_id": str(record_id), "file_id": str(file_id), "scope": scope,
             "header": b64(record.header.to_bytes()),
             "metadata_ciphertext": b64(record.metadata_ciphertext),
             "content_length": len(content)}, content)


async def upload(http: httpx.AsyncClient, base: str, headers: dict[str, str],
                 file_id: uuid.UUID, record_id: uuid.UUID, record: EncryptedRecord) -> None:
    body, content = create_body(file_id, record_id, record)
    created = await http.post(f"{base}/v1/records", json=body,
                              headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
    if created.status_code != 201:
        raise RuntimeError(f"create: HTTP {created.status_code}: {created.text[:120]}")
    put = await http.put(f"{base}/v1/records/{record_id}/versions/1/content", content=content,
                         headers={**headers, "Content-Type": "application/octet-stream"})
    if put.status_code != 204:
        raise RuntimeError(f"content: HTTP {put.status_code}: {put.text[:120]}")


class TokenMinter:
    """Internal tokens as the gateway issues them, from the stack's own signing key, for
    requests sent straight to a service."""

    def __init__(self, private_pem: bytes, practitioner: Practitioner) -> None:
        self.issuer = InternalTokenIssuer(private_pem)
        self.principal = Principal(account_id=str(practitioner.user.account_id),
                                   role=practitioner.user.role,
                                   session_id=practitioner.session_id, second_factor=True)

    def headers(self, audience: str) -> dict[str, str]:
        request_id = uuid.uuid4().hex
        return {INTERNAL_HEADER: self.issuer.issue(audience, request_id=request_id,
                                                   principal=self.principal),
                "x-request-id": request_id}


def spread(count: int, end: datetime | None = None) -> list[datetime]:
    """``count`` creation times, oldest first, a few minutes apart, ending now."""
    end = end or datetime.now(UTC)
    return [end - timedelta(seconds=(count - i) * 137) for i in range(count)]


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
