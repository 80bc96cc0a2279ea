"""Who may do what: every relationship × scope × action, on the own file and on another
practice's file, through the gateway and the real services.

The world is built once per module: a practitioner's file with one committed record per
scope, and one account per relationship (owner, care team, replacement, secretary, patient,
parent, guardian, a revoked patient, an expired replacement, a stranger who owns a file in
another practice). The expected outcome of each cell is derived from the ``HOLDS`` table
below (what each relationship's grant holds); a test lists every cell that differs.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ecrin_e2ee import Scope, ScopeKey, encrypt_record
from tests.e2e.test_sharing_api import share, whole_seconds
from tests.support.users import HTTP, ApiUser, b64, sign_up

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

SCOPES = ("clinical", "shared", "administrative")
#: What each relationship holds on the practitioner's file (scope -> read | append).
HOLDS: dict[str, dict[str, str]] = {
    "owner": {"clinical": "append", "shared": "append", "administrative": "append"},
    "care_team": {"clinical": "append", "shared": "append", "administrative": "append"},
    "replacement": {"clinical": "append", "shared": "append", "administrative": "read"},
    "secretary": {"administrative": "append"},
    "patient": {"shared": "append", "administrative": "read"},
    "parent": {"shared": "append", "administrative": "read"},
    "guardian": {"shared": "append", "administrative": "read"},
    "revoked": {},
    "expired": {},
    "stranger": {},
}
ROLES = {"owner": "practitioner", "care_team": "practitioner", "replacement": "practitioner",
         "secretary": "staff", "patient": "patient", "parent": "representative",
         "guardian": "representative", "revoked": "patient", "expired": "practitioner",
         "stranger": "practitioner"}
#: Who reads a file's audit chains (sharing, kms, records-api), besides nobody else.
AUDIT_READERS = {"owner", "patient", "parent", "guardian"}
#: A grant each scope's owner cell makes (a relationship that may hold append there).
GRANT_AS = {"clinical": "care_team", "shared": "patient", "administrative": "secretary"}
SCOPED_ACTIONS = ("list", "read", "download", "keys", "append", "grant")


@dataclass
class PracticeFile:
    owner: ApiUser
    file_id: uuid.UUID
    keys: dict[Scope, ScopeKey]
    records: dict[str, str] = field(default_factory=dict)  # scope -> record id
    #: per actor: a pending grant (to a bystander) that the actor tries to revoke
    revoke_targets: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    actors: dict[str, ApiUser]
    own: PracticeFile
    other: PracticeFile
    bystander: ApiUser


def put_record(user: ApiUser, file_id: uuid.UUID, key: ScopeKey, content: bytes
               ) -> tuple[int, str]:
    record_id = uuid.uuid4()
    sealed = encrypt_record(content, {"kind": "document", "title": "t"}, file_id=file_id,
                            record_id=record_id, record_version=1, scope_key=key,
                            author=user.identity)
    body = b"".join(sealed.chunks)
    created = HTTP.post(f"{user.gateway}/v1/records",
                        headers={**user.headers, "Idempotency-Key": uuid.uuid4().hex},
                        json={"record_id": str(record_id), "file_id": str(file_id),
                              "scope": key.scope.value, "header": b64(sealed.header.to_bytes()),
                              "metadata_ciphertext": b64(sealed.metadata_ciphertext),
                              "content_length": len(body)})
    if created.status_code != 201:
        if created.status_code == 409 and str(created.json().get("type", "")).endswith(
                "/rotation-pending"):
            return 409, "rotation-pending"
        return created.status_code, str(record_id)
    uploaded = HTTP.put(f"{user.gateway}/v1/records/{record_id}/versions/1/content",
                        headers={**user.headers, "content-type": "application/octet-stream"},
                        content=body)
    assert uploaded.status_code in (200, 204), uploaded.text
    return 201, str(record_id)


def practice_file(owner: ApiUser) -> PracticeFile:
    file_id, keys = owner.create_file()
    made = PracticeFile(owner, file_id, keys)
    for scope in SCOPES:
        status, record_id = put_record(owner, file_id, keys[Scope(scope)],
                                       f"{scope} content".encode())
        assert status == 201
        made.records[scope] = record_id
    return made


@pytest.fixture(scope="module")
def world(stack) -> World:
    gateway = stack.url("gateway")
    actors = {name: sign_up(gateway, role) for name, role in ROLES.items() if name != "owner"}
    actors["owner"] = sign_up(gateway)
    bystander = sign_up(gateway, "patient")
    own, other = practice_file(actors["owner"]), practice_file(actors["stranger"])
    soon = whole_seconds(datetime.now(UTC) + timedelta(days=2))
    later = whole_seconds(datetime.now(UTC) + timedelta(days=30))
    years = whole_seconds(datetime.now(UTC) + timedelta(days=5 * 365))
    for name in ("care_team", "secretary", "patient", "guardian"):
        share(actors["owner"], actors[name], own.file_id, own.keys, name, HOLDS[name])
    share(actors["owner"], actors["replacement"], own.file_id, own.keys, "replacement",
          HOLDS["replacement"], valid_until=later)
    share(actors["owner"], actors["parent"], own.file_id, own.keys, "parent",
          HOLDS["parent"], valid_until=years)
    revoked = share(actors["owner"], actors["revoked"], own.file_id, own.keys, "patient",
                    HOLDS["patient"])
    share(actors["owner"], actors["expired"], own.file_id, own.keys, "replacement",
          HOLDS["replacement"], valid_until=soon)
    assert HTTP.delete(f"{gateway}/v1/grants/{revoked}",
                       headers=actors["owner"].headers).status_code == 200
    for practice in (own, other):
        for name in actors:
            grant_id = str(uuid.uuid4())
            response = practice.owner.post("/v1/grants", json={
                "grant_id": grant_id, "file_id": str(practice.file_id),
                "grantee_id": str(bystander.account_id), "relationship": "patient",
                "scopes": {"shared": "read"}})
            assert response.status_code in (200, 201), response.text
            practice.revoke_targets[name] = grant_id
    # Three days on: the short replacement has expired; the others still run.
    clock_file = stack.state / "clock-offset"
    clock_file.write_text(str(3 * 24 * 3600))
    time.sleep(1.2)
    yield World(actors, own, other, bystander)
    clock_file.write_text("0")
    time.sleep(1.2)  # the service re-reads the offset at most once a second


def attempt(world: World, actor: ApiUser, practice: PracticeFile, scope: str,
            action: str) -> str:
    """One cell: 'ok', or what stopped it ('404', '403', 'hidden')."""
    fid, record = practice.file_id, practice.records[scope]
    if action == "list":
        response = actor.get("/v1/records", params={"file_id": str(fid), "scope": scope})
        if response.status_code == 200:
            return "ok" if record in response.text else "hidden"
        assert record not in response.text
        return str(response.status_code)
    if action == "read":
        return _status(actor.get(f"/v1/records/{record}"))
    if action == "download":
        return _status(actor.get(f"/v1/records/{record}/versions/1/content"))
    if action == "keys":
        response = actor.get(f"/v1/keyrings/{fid}/entries", params={"scope": scope})
        assert response.status_code == 200 or "sealed_key" not in response.text
        return _status(response)
    if action == "append":
        status, why = put_record(actor, fid, ScopeKey.generate(fid, Scope(scope)), b"appended")
        # The revoked patient and the expired replacement left rotations pending: a writer
        # who may rotate (owner, care team) is authorised, and told to rotate first.
        return "ok" if status == 201 or why == "rotation-pending" else str(status)
    if action == "grant":
        response = actor.post("/v1/grants", json={
            "grant_id": str(uuid.uuid4()), "file_id": str(fid),
            "grantee_id": str(world.bystander.account_id),
            "relationship": GRANT_AS[scope], "scopes": {scope: "read"}})
        return "ok" if response.status_code in (200, 201) else str(response.status_code)
    raise AssertionError(action)


def _status(response: httpx.Response) -> str:
    return "ok" if response.status_code == 200 else str(response.status_code)


def expected(name: str, holds: dict[str, str], scope: str, action: str) -> str:
    access = holds.get(scope)
    member = bool(holds)
    if action in ("list",):
        return "ok" if access else ("hidden" if member else "404")
    if action in ("read", "download", "keys"):
        return "ok" if access else "404"
    if action == "append":
        return "ok" if access == "append" else ("403" if access == "read" else "404")
    if action == "grant":
        return "ok" if name == "owner" else ("403" if member else "404")
    raise AssertionError(action)


def equivalent(got: str, want: str) -> bool:
    # A listing of a scope one may not read may answer 404 or an empty page: both hide it.
    return got == want or {got, want} == {"hidden", "404"}


@pytest.mark.parametrize("practice_name", ["own", "other"])
@pytest.mark.parametrize("name", list(ROLES))
def test_matrix(world: World, name: str, practice_name: str) -> None:
    actor = world.actors[name]
    practice = world.own if practice_name == "own" else world.other
    # On the other practice's file only its owner (the stranger) holds anything.
    if practice_name == "own":
        holds = HOLDS[name]
        role = name
    else:
        holds = HOLDS["owner"] if name == "stranger" else {}
        role = "owner" if name == "stranger" else "outsider"
    wrong = []
    for scope in SCOPES:
        for action in SCOPED_ACTIONS:
            want = expected(role, holds, scope, action)
            got = attempt(world, actor, practice, scope, action)
            if not equivalent(got, want):
                wrong.append(f"{scope}/{action}: got {got}, expected {want}")
    revoke = HTTP.delete(f"{actor.gateway}/v1/grants/{practice.revoke_targets[name]}",
                         headers=actor.headers).status_code
    if (revoke == 200) != (role == "owner"):
        wrong.append(f"revoke: got {revoke}")
    for path in (f"/v1/files/{practice.file_id}/audit",
                 f"/v1/keyrings/{practice.file_id}/audit"):
        status = actor.get(path).status_code
        may = role in AUDIT_READERS and bool(holds)
        if (status == 200) != may:
            wrong.append(f"audit {path.split('/')[2]}: got {status}")
    # The kms and the records-api keep a chain per scope: read by those who read the
    # audit, each only for the scopes they may read.
    for scope in SCOPES:
        for path, params in ((f"/v1/keyrings/{practice.file_id}/audit", {"scope": scope}),
                             ("/v1/records/audit", {"file_id": str(practice.file_id),
                                                    "scope": scope})):
            status = actor.get(path, params=params).status_code
            may = role in AUDIT_READERS and scope in holds
            if (status == 200) != may:
                wrong.append(f"audit {path.split('/')[2]} {scope}: got {status}")
    assert not wrong, f"{name} on the {practice_name} file:\n" + "\n".join(wrong)


def test_parents_cannot_list_clinical_record_ids(world: World) -> None:
    parent = world.actors["parent"]
    clinical = world.own.records["clinical"]
    for params in ({"file_id": str(world.own.file_id)},
                   {"file_id": str(world.own.file_id), "scope": "clinical"}):
        assert clinical not in parent.get("/v1/records", params=params).text


@pytest.mark.parametrize("name", ["revoked", "expired", "stranger"])
def test_revoked_expired_and_strangers_get_no_keys_and_no_ciphertext(world: World,
                                                                     name: str) -> None:
    actor = world.actors[name]
    fid = world.own.file_id
    assert actor.get(f"/v1/keyrings/{fid}/entries").status_code == 404
    for scope, record in world.own.records.items():
        for path in (f"/v1/records/{record}", f"/v1/records/{record}/versions/1",
                     f"/v1/records/{record}/versions/1/content"):
            response = actor.get(path)
            assert response.status_code == 404, (scope, path)
            assert "header" not in response.text
    assert actor.get(f"/v1/files/{fid}").status_code == 404
