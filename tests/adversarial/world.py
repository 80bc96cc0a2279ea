"""A populated stack for the adversarial tests: two practices, their files and records, and
every kind of outsider the threat model names (DESIGN.md, threat 3).

Practice A owns file FA with one committed record per scope, a patient, a secretary, a
revoked patient, an expired replacement and an expired parent, a grant and an open
invitation. Practice B owns file FB with its own patient. Everything is made through the
gateway with ``ecrin_e2ee``, exactly as a client would.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ecrin_e2ee import (
    GrantTerms,
    InvitationCode,
    KdfParams,
    Permission,
    PublicIdentity,
    Relationship,
    Scope,
    ScopeKey,
    create_invitation,
    encrypt_record,
    grant_scope_keys,
)
from tests.support.users import HTTP, ApiUser, b64, sign_up

READ = frozenset({Permission.READ})
APPEND = frozenset({Permission.READ, Permission.APPEND})


def share(owner: ApiUser, grantee: ApiUser, file_id: uuid.UUID, keys: dict[Scope, ScopeKey],
          relationship: str, scopes: dict[str, str], valid_until: datetime | None = None) -> str:
    """A grant row at the sharing service plus the signed keyring entries at the kms."""
    grant_id = str(uuid.uuid4())
    body: dict[str, Any] = {"grant_id": grant_id, "file_id": str(file_id),
                            "grantee_id": str(grantee.account_id),
                            "relationship": relationship, "scopes": scopes}
    if valid_until is not None:
        body["valid_until"] = valid_until.isoformat()
    response = owner.post("/v1/grants", json=body)
    assert response.status_code == 201, response.text
    identity = PublicIdentity.from_json(
        owner.get(f"/v1/directory/{grantee.account_id}").json()["identity"])
    entries = []
    for scope, access in scopes.items():
        terms = GrantTerms(Relationship(relationship), APPEND if access == "append" else READ,
                           valid_until=valid_until)
        entries += grant_scope_keys([keys[Scope(scope)]], identity, terms, granter=owner.identity)
    stored = owner.post(f"/v1/keyrings/{file_id}/grants/{grant_id}",
                        json={"entries": [e.to_json() for e in entries]})
    assert stored.status_code == 201, stored.text
    return grant_id


@dataclass
class StoredRecord:
    record_id: uuid.UUID
    scope: str
    header_b64: str
    metadata_b64: str
    content: bytes


def add_record(owner: ApiUser, file_id: uuid.UUID, keys: dict[Scope, ScopeKey], scope: str,
               text: bytes = b"bilan initial") -> StoredRecord:
    record_id = uuid.uuid4()
    encrypted = encrypt_record(text, {"kind": "bilan", "title": "bilan"}, file_id=file_id,
                               record_id=record_id, record_version=1,
                               scope_key=keys[Scope(scope)], author=owner.identity)
    content = b"".join(encrypted.chunks)
    body = {"record_id": str(record_id), "file_id": str(file_id), "scope": scope,
            "header": b64(encrypted.header.to_bytes()),
            "metadata_ciphertext": b64(encrypted.metadata_ciphertext),
            "content_length": len(content)}
    created = HTTP.post(f"{owner.gateway}/v1/records", json=body,
                        headers={**owner.headers, "Idempotency-Key": uuid.uuid4().hex})
    assert created.status_code == 201, created.text
    uploaded = HTTP.put(f"{owner.gateway}/v1/records/{record_id}/versions/1/content",
                        content=content, headers={**owner.headers,
                                                  "Content-Type": "application/octet-stream"})
    assert uploaded.status_code == 204, uploaded.text
    return StoredRecord(record_id, scope, body["header"], body["metadata_ciphertext"], content)


@dataclass
class World:
    gateway: str
    kine_a: ApiUser
    kine_b: ApiUser
    patient_a: ApiUser
    patient_b: ApiUser
    secretary_a: ApiUser
    revoked: ApiUser
    expired_replacement: ApiUser
    expired_parent: ApiUser
    file_a: uuid.UUID
    file_b: uuid.UUID
    keys_a: dict[Scope, ScopeKey]
    keys_b: dict[Scope, ScopeKey]
    records_a: dict[str, StoredRecord]
    record_b: StoredRecord
    grant_patient_a: str
    grant_secretary_a: str
    grant_revoked: str
    grant_expired: str
    invitation_a: str
    invitation_code_a: InvitationCode
    kine_a_salt: str
    kine_a_session: str
    search_token_a: str
    extra_secrets: set[str] = field(default_factory=set)

    @property
    def outsiders(self) -> dict[str, ApiUser]:
        """Accounts with nothing on file A (any more)."""
        return {"other-practice": self.kine_b, "other-patient": self.patient_b,
                "revoked-grantee": self.revoked,
                "expired-replacement": self.expired_replacement,
                "expired-parent": self.expired_parent}

    @property
    def non_clinical_members(self) -> dict[str, ApiUser]:
        """Members of file A who must never touch its clinical scope."""
        return {"secretary": self.secretary_a, "patient": self.patient_a}

    def secrets(self) -> set[str]:
        """Strings of practice A that no outsider may ever read."""
        found = {str(self.file_a), str(self.kine_a.account_id), self.grant_patient_a,
                 self.grant_secretary_a, self.grant_revoked, self.grant_expired,
                 self.invitation_a, self.kine_a_session, self.search_token_a}
        for record in self.records_a.values():
            found |= {str(record.record_id), record.header_b64[40:80],
                      record.metadata_b64[40:80]}
        return found | self.extra_secrets

    def clinical_secrets(self) -> set[str]:
        record = self.records_a["clinical"]
        return {str(record.record_id), record.header_b64[40:80], record.metadata_b64[40:80]}


def build_world(gateway: str) -> World:
    kine_a, kine_b = sign_up(gateway), sign_up(gateway)
    patient_a, patient_b = sign_up(gateway, "patient"), sign_up(gateway, "patient")
    secretary_a, revoked = sign_up(gateway, "staff"), sign_up(gateway, "patient")
    expired_replacement = sign_up(gateway)
    expired_parent = sign_up(gateway, "representative")
    file_a, keys_a = kine_a.create_file("Martin")
    file_b, keys_b = kine_b.create_file("Bernard")
    records_a = {scope: add_record(kine_a, file_a, keys_a, scope)
                 for scope in ("clinical", "shared", "administrative")}
    record_b = add_record(kine_b, file_b, keys_b, "clinical")

    grant_patient_a = share(kine_a, patient_a, file_a, keys_a, "patient",
                            {"shared": "append", "administrative": "read"})
    grant_secretary_a = share(kine_a, secretary_a, file_a, keys_a, "secretary",
                              {"administrative": "append"})
    share(kine_b, patient_b, file_b, keys_b, "patient", {"shared": "read"})
    grant_revoked = share(kine_a, revoked, file_a, keys_a, "patient", {"shared": "read"})
    soon = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    grant_expired = share(kine_a, expired_replacement, file_a, keys_a, "replacement",
                          {"clinical": "append", "shared": "append"}, valid_until=soon)
    share(kine_a, expired_parent, file_a, keys_a, "parent", {"shared": "append"},
          valid_until=soon)
    assert revoked.get(f"/v1/keyrings/{file_a}/entries").status_code == 200
    assert HTTP.delete(f"{gateway}/v1/grants/{grant_revoked}",
                       headers=kine_a.headers).status_code == 200

    code, payload, verifier = create_invitation([keys_a[Scope.SHARED]], inviter=kine_a.identity,
                                                params=KdfParams.insecure_for_tests())
    invitation_a = str(uuid.uuid4())
    invited = kine_a.post("/v1/invitations", json={
        "invitation_id": invitation_a, "file_id": str(file_a), "lookup_id": code.lookup_id(),
        "relationship": "guardian", "scopes": {"shared": "read"},
        "payload": payload.to_json(), "verifier": verifier.to_json()})
    assert invited.status_code == 201, invited.text

    challenge = HTTP.post(f"{gateway}/v1/auth/challenge", json={"email": kine_a.email}).json()
    search_token = kine_a.get(f"/v1/files/{file_a}").json()
    world = World(gateway, kine_a, kine_b, patient_a, patient_b, secretary_a, revoked,
                  expired_replacement, expired_parent, file_a, file_b, keys_a, keys_b,
                  records_a, record_b, grant_patient_a, grant_secretary_a, grant_revoked,
                  grant_expired, invitation_a, code, challenge["kdf"]["salt"],
                  kine_a.tokens["session_id"], _search_token(kine_a, search_token))
    # Let both end dates pass, and the records-api's access cache (<= 4 s) forget them.
    time.sleep(max(0.0, soon.timestamp() - time.time()) + 4.5)
    return world


def _search_token(owner: ApiUser, _file: dict[str, Any]) -> str:
    from ecrin_e2ee import SearchKey

    return SearchKey.for_owner(owner.identity).name_token("Martin")
