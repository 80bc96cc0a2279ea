"""Who may write what, through the real services: one patient file with a member of every
relationship, and every write route of the records API tried by each of them.

The matrix is ``docs/records.md`` (*Who may write what*): any write needs ``append`` on the
record's scope; a grantee adds records and versions of its own; only the owner and a
care-team colleague version others' records and re-key; only the owner deletes them.
Each member writes in a scope its grant may append to (its "home" scope).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ecrin_e2ee import RecordDecryptor, RecordHeader, Scope, ScopeKey, encrypt_record
from ecrin_e2ee.record_header import unwrap_dek
from tests.adversarial.world import StoredRecord, add_record, share
from tests.support.users import HTTP, ApiUser, b64, sign_up, unb64

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

#: relationship -> (the grant's scopes, the scope its member writes in)
GRANTS: dict[str, tuple[dict[str, str], str]] = {
    "care_team": ({"clinical": "append", "shared": "append", "administrative": "append"},
                  "clinical"),
    "replacement": ({"clinical": "append", "shared": "append", "administrative": "append"},
                    "clinical"),
    "secretary": ({"administrative": "append"}, "administrative"),
    "patient": ({"shared": "append", "administrative": "read"}, "shared"),
    "parent": ({"shared": "append", "administrative": "read"}, "shared"),
    "guardian": ({"shared": "append", "administrative": "read"}, "shared"),
}
ENDS = frozenset({"replacement", "parent"})
ACCOUNT_ROLE = {"care_team": "practitioner", "replacement": "practitioner",
                "secretary": "staff", "patient": "patient", "parent": "representative",
                "guardian": "representative"}
RELATIONSHIPS = ["owner", *GRANTS]
ROUTES = ["create", "version_own", "version_owners", "delete_own", "delete_owners", "rekey"]
CURATORS = {"owner", "care_team"}

#: The expected answer of each (relationship, route): docs/records.md.
EXPECTED: dict[tuple[str, str], int] = {}
for _relationship in RELATIONSHIPS:
    EXPECTED[(_relationship, "create")] = 201
    EXPECTED[(_relationship, "version_own")] = 201
    EXPECTED[(_relationship, "delete_own")] = 204
    EXPECTED[(_relationship, "version_owners")] = 201 if _relationship in CURATORS else 403
    EXPECTED[(_relationship, "delete_owners")] = 204 if _relationship == "owner" else 403
    EXPECTED[(_relationship, "rekey")] = 200 if _relationship in CURATORS else 403


@dataclass
class Team:
    owner: ApiUser
    members: dict[str, ApiUser]
    file_id: uuid.UUID
    keys: dict[Scope, ScopeKey]

    def user(self, relationship: str) -> ApiUser:
        return self.owner if relationship == "owner" else self.members[relationship]

    @staticmethod
    def scope(relationship: str) -> str:
        return "clinical" if relationship == "owner" else GRANTS[relationship][1]


@pytest.fixture(scope="module")
def team(stack) -> Team:
    gateway = stack.url("gateway")
    owner = sign_up(gateway)
    file_id, keys = owner.create_file("Lefèvre")
    until = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    members = {}
    for relationship, (scopes, _home) in GRANTS.items():
        member = sign_up(gateway, ACCOUNT_ROLE[relationship])
        share(owner, member, file_id, keys, relationship, scopes,
              valid_until=until if relationship in ENDS else None)
        members[relationship] = member
    return Team(owner, members, file_id, keys)


def delete(user: ApiUser, record_id: uuid.UUID) -> httpx.Response:
    return HTTP.delete(f"{user.gateway}/v1/records/{record_id}",
                       headers={**user.headers, "If-Match": '"v1"'})


def new_version(user: ApiUser, team: Team, record: StoredRecord) -> httpx.Response:
    encrypted = encrypt_record(b"version 2", {"kind": "bilan", "title": "v2"},
                               file_id=team.file_id, record_id=record.record_id,
                               record_version=2, scope_key=team.keys[Scope(record.scope)],
                               author=user.identity)
    content = b"".join(encrypted.chunks)
    return HTTP.post(f"{user.gateway}/v1/records/{record.record_id}/versions",
                     headers={**user.headers, "If-Match": '"v1"'},
                       json={"header": b64(encrypted.header.to_bytes()),
                            "metadata_ciphertext": b64(encrypted.metadata_ciphertext),
                            "content_length": len(content), "content": b64(content)})


def rewrapped(user: ApiUser, team: Team, record: StoredRecord) -> bytes:
    """The record's own DEK, wrapped again under the scope's current key and signed by
    ``user``: a well-formed re-key that opens."""
    header = RecordHeader.from_bytes(unb64(record.header_b64))
    key = team.keys[Scope(record.scope)]
    return header.with_wrap(key, unwrap_dek(header, key), user.identity).to_bytes()


def rekey(user: ApiUser, record: StoredRecord, header: bytes) -> httpx.Response:
    return user.post("/v1/records/rekey", json={"items": [
        {"record_id": str(record.record_id), "version": 1, "header": b64(header)}]})


def opens(team: Team, record: StoredRecord, wrapper: ApiUser) -> bytes:
    """What the owner reads of the record's version 1 now (author: the owner)."""
    got = team.owner.get(f"/v1/records/{record.record_id}/versions/1")
    assert got.status_code == 200, got.text
    content = team.owner.get(f"/v1/records/{record.record_id}/versions/1/content").content
    step = 65536 + 17
    decryptor = RecordDecryptor(unb64(got.json()["header"]), unb64(record.metadata_b64),
                                scope_key=team.keys[Scope(record.scope)],
                                author=team.owner.identity.public_identity(),
                                wrapper=wrapper.identity.public_identity())
    return b"".join(decryptor.decrypt([content[i:i + step]
                                       for i in range(0, len(content), step)]))


def attempt(team: Team, relationship: str, route: str) -> tuple[httpx.Response, StoredRecord]:
    user, scope = team.user(relationship), Team.scope(relationship)
    if route == "create":
        record_id = uuid.uuid4()
        encrypted = encrypt_record(b"mine", {"kind": "note"}, file_id=team.file_id,
                                   record_id=record_id, record_version=1,
                                   scope_key=team.keys[Scope(scope)], author=user.identity)
        content = b"".join(encrypted.chunks)
        response = HTTP.post(f"{user.gateway}/v1/records", headers={
            **user.headers, "Idempotency-Key": uuid.uuid4().hex}, json={
            "record_id": str(record_id), "file_id": str(team.file_id), "scope": scope,
            "header": b64(encrypted.header.to_bytes()),
            "metadata_ciphertext": b64(encrypted.metadata_ciphertext),
            "content_length": len(content), "content": b64(content)})
        return response, StoredRecord(record_id, scope, b64(encrypted.header.to_bytes()),
                                      b64(encrypted.metadata_ciphertext), content)
    own = route.endswith("_own")
    record = add_record(user if own else team.owner, team.file_id, team.keys, scope,
                        b"written by " + (relationship.encode() if own else b"the owner"))
    if route.startswith("version"):
        return new_version(user, team, record), record
    if route.startswith("delete"):
        return delete(user, record.record_id), record
    return rekey(user, record, rewrapped(user, team, record)), record


class TestWriteMatrix:
    @pytest.mark.parametrize("route", ROUTES)
    @pytest.mark.parametrize("relationship", RELATIONSHIPS)
    def test_every_write_route_for_every_relationship(self, team, relationship, route):
        response, record = attempt(team, relationship, route)
        expected = EXPECTED[(relationship, route)]
        assert response.status_code == expected, (relationship, route, response.text)
        if expected >= 400:
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["type"].endswith("/write-not-permitted"), response.text
            # Refused: the owner's record is exactly as it was, and still opens.
            got = team.owner.get(f"/v1/records/{record.record_id}")
            assert got.status_code == 200, got.text
            assert got.json()["current_version"] == 1
            assert got.json()["version"]["header"] == record.header_b64
            assert opens(team, record, team.owner).startswith(b"written by the owner")
        elif route == "rekey":
            assert response.json()["items"][0]["changed"] is True
            assert opens(team, record, team.user(relationship)).startswith(b"written by")
        elif route.startswith("delete"):
            assert team.owner.get(f"/v1/records/{record.record_id}").status_code == 404

    def test_the_matrix_is_complete(self):
        assert len(EXPECTED) == len(RELATIONSHIPS) * len(ROUTES) == 42
