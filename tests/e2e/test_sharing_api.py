"""Sharing through the real services: grants, revocation, rotation, invitations, expiry."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ecrin_e2ee import (
    GrantTerms,
    InvitationCode,
    InvitationPayload,
    KdfParams,
    Member,
    Permission,
    PublicIdentity,
    Relationship,
    Scope,
    create_invitation,
    grant_scope_keys,
    redeem_invitation,
    rotate_scope,
)
from ecrin_e2ee._wire import b64e
from tests.support.users import HTTP, ApiUser, sign_up

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

READ = frozenset({Permission.READ})
APPEND = frozenset({Permission.READ, Permission.APPEND})


def whole_seconds(when: datetime) -> datetime:
    return when.replace(microsecond=0)


def share(owner: ApiUser, grantee: ApiUser, file_id, keys, relationship: str,
          scopes: dict[str, str], valid_until: datetime | None = None) -> str:
    grant_id = str(uuid.uuid4())
    body = {"grant_id": grant_id, "file_id": str(file_id), "grantee_id": str(grantee.account_id),
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
        entries += grant_scope_keys([keys[Scope(scope)]], identity, terms,
                                    granter=owner.identity)
    stored = owner.post(f"/v1/keyrings/{file_id}/grants/{grant_id}",
                        json={"entries": [e.to_json() for e in entries]})
    assert stored.status_code == 201, stored.text
    return grant_id


@pytest.fixture
def clock(stack):
    """Moves the sharing service's clock; always put back."""
    path = stack.state / "clock-offset"

    def move(seconds: float) -> None:
        path.write_text(str(seconds))
        time.sleep(1.2)  # the service re-reads the offset at most once a second

    yield move
    path.write_text("0")
    time.sleep(1.2)  # the next test must not see the moved clock


def wait_until(predicate, timeout: float = 5.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


class TestGrants:
    def test_patient_gets_shared_and_administrative_but_never_clinical(self, stack):
        gateway = stack.url("gateway")
        kine, patient = sign_up(gateway), sign_up(gateway, "patient")
        file_id, keys = kine.create_file()
        share(kine, patient, file_id, keys, "patient",
              {"shared": "append", "administrative": "read"})
        listed = patient.get("/v1/files").json()["items"]
        assert [(f["id"], f["relationship"]) for f in listed] == [(str(file_id), "patient")]
        body = patient.get(f"/v1/keyrings/{file_id}/entries").json()
        opened = {k.scope: k.to_bound_bytes() for k in open_entries_from(kine, patient, body)}
        assert set(opened) == {Scope.SHARED, Scope.ADMINISTRATIVE}
        assert opened[Scope.SHARED] == keys[Scope.SHARED].to_bound_bytes()
        assert patient.get(f"/v1/keyrings/{file_id}/entries",
                           params={"scope": "clinical"}).status_code == 404

    def test_bounds_per_relationship(self, stack):
        gateway = stack.url("gateway")
        kine, other = sign_up(gateway), sign_up(gateway, "staff")
        file_id, _ = kine.create_file()

        def attempt(relationship, scopes, **extra):
            return kine.post("/v1/grants", json={
                "grant_id": str(uuid.uuid4()), "file_id": str(file_id),
                "grantee_id": str(other.account_id), "relationship": relationship,
                "scopes": scopes, **extra}).status_code

        assert attempt("secretary", {"clinical": "read"}) == 422
        assert attempt("patient", {"clinical": "read"}) == 422
        assert attempt("parent", {"shared": "read"}) == 422  # needs an end date
        assert attempt("replacement", {"clinical": "append"}) == 422  # needs an end date
        until = (datetime.now(UTC) + timedelta(days=7)).isoformat()
        assert attempt("replacement", {"clinical": "append"}, valid_until=until) == 201
        assert attempt("secretary", {"administrative": "append"}) == 201

    def test_only_the_owner_shares(self, stack):
        gateway = stack.url("gateway")
        kine, patient, stranger = sign_up(gateway), sign_up(gateway, "patient"), \
            sign_up(gateway, "patient")
        file_id, keys = kine.create_file()
        share(kine, patient, file_id, keys, "patient", {"shared": "read"})
        response = patient.post("/v1/grants", json={
            "grant_id": str(uuid.uuid4()), "file_id": str(file_id),
            "grantee_id": str(stranger.account_id), "relationship": "patient",
            "scopes": {"shared": "read"}})
        assert response.status_code == 403

    def test_entries_that_do_not_match_the_grant_are_refused(self, stack):
        gateway = stack.url("gateway")
        kine, patient = sign_up(gateway), sign_up(gateway, "patient")
        file_id, keys = kine.create_file()
        grant_id = str(uuid.uuid4())
        kine.post("/v1/grants", json={"grant_id": grant_id, "file_id": str(file_id),
                                      "grantee_id": str(patient.account_id),
                                      "relationship": "patient", "scopes": {"shared": "read"}})
        identity = PublicIdentity.from_json(
            kine.get(f"/v1/directory/{patient.account_id}").json()["identity"])
        # The granter tries to slip the clinical key into a shared-only grant.
        smuggled = grant_scope_keys([keys[Scope.CLINICAL]], identity,
                                    GrantTerms(Relationship.PATIENT, READ), granter=kine.identity)
        response = kine.post(f"/v1/keyrings/{file_id}/grants/{grant_id}",
                             json={"entries": [e.to_json() for e in smuggled]})
        assert response.status_code == 422
        assert patient.get(f"/v1/keyrings/{file_id}/entries").status_code == 404


def open_entries_from(granter: ApiUser, member: ApiUser, body: dict) -> list:
    from ecrin_e2ee import KeyringEntry, open_entry

    return [open_entry(KeyringEntry.from_json(e), member.identity,
                       granter.identity.public_identity()) for e in body["entries"]]


class TestRevocation:
    def test_revocation_stops_key_release_within_5_seconds_and_queues_rotation(self, stack):
        gateway = stack.url("gateway")
        kine, patient = sign_up(gateway), sign_up(gateway, "patient")
        colleague = sign_up(gateway)
        file_id, keys = kine.create_file()
        grant_id = share(kine, patient, file_id, keys, "patient", {"shared": "read"})
        share(kine, colleague, file_id, keys, "care_team",
              {"clinical": "append", "shared": "append", "administrative": "append"})
        assert patient.get(f"/v1/keyrings/{file_id}/entries").status_code == 200
        assert HTTP.delete(f"{gateway}/v1/grants/{grant_id}",
                           headers=kine.headers).status_code == 200
        elapsed = wait_until(
            lambda: patient.get(f"/v1/keyrings/{file_id}/entries").status_code == 404)
        print(f"revocation to denied key release: {elapsed:.2f} s")
        assert elapsed < 5
        assert patient.get(f"/v1/files/{file_id}").status_code == 404
        pending = kine.get("/v1/rotations", params={"file_id": str(file_id)}).json()
        assert [(r["scope"], r["reason"]) for r in pending] == [("shared", "revoked")]

        # The owner's device rotates `shared` for the remaining members.
        members = kine.get(f"/v1/files/{file_id}/members").json()
        assert {m["account_id"] for m in members} == {str(kine.account_id),
                                                      str(colleague.account_id)}
        remaining = []
        for m in members:
            identity = PublicIdentity.from_json(
                kine.get(f"/v1/directory/{m['account_id']}").json()["identity"])
            remaining.append(Member(identity, GrantTerms(Relationship(m["relationship"]),
                                                         APPEND)))
        rotation = rotate_scope(keys[Scope.SHARED], remaining, granter=kine.identity)
        stored = kine.post(f"/v1/keyrings/{file_id}/entries",
                           json={"entries": [e.to_json() for e in rotation.entries]})
        assert stored.status_code == 201, stored.text
        # Stored, not done: the rotation waits for the records to be re-keyed to version 2.
        [waiting] = kine.get("/v1/rotations", params={"file_id": str(file_id)}).json()
        assert waiting["rotated_version"] == 2
        # (No record to re-key here.) Done is said at the current version only.
        assert kine.post(f"/v1/rotations/{file_id}/shared/done",
                         json={"version": 3}).status_code == 409
        assert kine.post(f"/v1/rotations/{file_id}/shared/done",
                         json={"version": 2}).json() == {"done": 1}
        assert kine.get("/v1/rotations", params={"file_id": str(file_id)}).json() == []
        colleague_body = colleague.get(f"/v1/keyrings/{file_id}/entries",
                                       params={"scope": "shared", "version": 2}).json()
        new_key = open_entries_from(kine, colleague, colleague_body)[0]
        assert new_key.to_bound_bytes() == rotation.scope_key.to_bound_bytes()
        # The revoked patient never receives version 2.
        assert patient.get(f"/v1/keyrings/{file_id}/entries",
                           params={"version": 2}).status_code == 404

    def test_a_non_member_cannot_rotate(self, stack):
        gateway = stack.url("gateway")
        kine, patient = sign_up(gateway), sign_up(gateway, "patient")
        file_id, keys = kine.create_file()
        share(kine, patient, file_id, keys, "patient", {"shared": "append"})
        identity = patient.identity.public_identity()
        rotation = rotate_scope(keys[Scope.SHARED],
                                [Member(identity, GrantTerms(Relationship.PATIENT, APPEND))],
                                granter=patient.identity)
        response = patient.post(f"/v1/keyrings/{file_id}/entries",
                                json={"entries": [e.to_json() for e in rotation.entries]})
        assert response.status_code == 403


class TestExpiry:
    def test_replacement_stops_at_its_end_and_queues_rotation(self, stack, clock):
        gateway = stack.url("gateway")
        kine, replacement = sign_up(gateway), sign_up(gateway)
        file_id, keys = kine.create_file()
        end = whole_seconds(datetime.now(UTC) + timedelta(days=7))
        share(kine, replacement, file_id, keys, "replacement",
              {"clinical": "append", "shared": "append", "administrative": "read"},
              valid_until=end)
        assert replacement.get(f"/v1/keyrings/{file_id}/entries").status_code == 200
        clock(8 * 24 * 3600)
        wait_until(lambda: replacement.get(f"/v1/keyrings/{file_id}/entries").status_code == 404)
        assert replacement.get(f"/v1/files/{file_id}").status_code == 404
        scopes = {r["scope"] for r in kine.get("/v1/rotations",
                                                params={"file_id": str(file_id)}).json()}
        assert scopes == {"clinical", "shared", "administrative"}


#: A well-formed redemption proof: the sharing service cannot check one (only the inviter's
#: devices can), so these tests of the server's own rules need not make a real one.
ANY_PROOF = "A" * 43


def invite(owner: ApiUser, file_id, keys, relationship="parent", scopes=None,
           valid_until=None) -> tuple[InvitationCode, str]:
    scopes = scopes or {"shared": "append", "administrative": "read"}
    valid_until = valid_until or whole_seconds(datetime.now(UTC) + timedelta(days=6 * 365))
    code, payload, verifier = create_invitation([keys[Scope(s)] for s in scopes],
                                                inviter=owner.identity,
                                                params=KdfParams.insecure_for_tests())
    invitation_id = str(uuid.uuid4())
    response = owner.post("/v1/invitations", json={
        "invitation_id": invitation_id, "file_id": str(file_id), "lookup_id": code.lookup_id(),
        "relationship": relationship, "scopes": scopes, "valid_until": valid_until.isoformat(),
        "payload": payload.to_json(), "verifier": verifier.to_json()})
    assert response.status_code == 201, response.text
    return code, invitation_id


def accept(user: ApiUser, code: InvitationCode) -> httpx.Response:
    found = user.get(f"/v1/invitations/lookup/{code.lookup_id()}")
    if found.status_code != 200:
        return found
    invitation = found.json()
    redeemed = redeem_invitation(code, InvitationPayload.from_json(invitation["payload"]),
                                 user.identity.public_identity())
    scope_keys = redeemed.scope_keys
    grant = user.post(f"/v1/invitations/{invitation['id']}/redeem",
                      json={"lookup_id": code.lookup_id(), "proof": b64e(redeemed.proof)})
    if grant.status_code != 200:
        return grant
    grant_body = grant.json()
    valid_until = (datetime.fromisoformat(grant_body["valid_until"])
                   if grant_body["valid_until"] else None)
    entries = []
    for key in scope_keys:
        access = invitation["scopes"][key.scope.value]
        terms = GrantTerms(Relationship(invitation["relationship"]),
                           APPEND if access == "append" else READ, valid_until=valid_until)
        entries += grant_scope_keys([key], user.identity.public_identity(), terms,
                                    granter=user.identity)
    return user.post(f"/v1/keyrings/{invitation['file_id']}/grants/{grant_body['id']}",
                     json={"entries": [e.to_json() for e in entries]})


class TestInvitations:
    def test_redeemed_invitation_gives_the_parent_the_shared_keys(self, stack):
        gateway = stack.url("gateway")
        kine, parent = sign_up(gateway), sign_up(gateway, "representative")
        file_id, keys = kine.create_file()
        code, invitation_id = invite(kine, file_id, keys)
        assert accept(parent, InvitationCode.from_text(code.to_text())).status_code == 201
        body = parent.get(f"/v1/keyrings/{file_id}/entries").json()
        from ecrin_e2ee import KeyringEntry, open_entry

        opened = {open_entry(KeyringEntry.from_json(e), parent.identity,
                             parent.identity.public_identity()).scope for e in body["entries"]}
        assert opened == {Scope.SHARED, Scope.ADMINISTRATIVE}
        listed = kine.get("/v1/invitations", params={"file_id": str(file_id)}).json()
        assert listed[0]["status"] == "redeemed"
        assert listed[0]["redeemed_by"] == str(parent.account_id)

    def test_wrong_code_reveals_nothing(self, stack):
        gateway = stack.url("gateway")
        kine, parent = sign_up(gateway), sign_up(gateway, "representative")
        file_id, keys = kine.create_file()
        invite(kine, file_id, keys)
        wrong = InvitationCode.generate()
        response = parent.get(f"/v1/invitations/lookup/{wrong.lookup_id()}")
        assert response.status_code == 404
        assert "payload" not in response.text

    def test_code_works_once(self, stack):
        gateway = stack.url("gateway")
        kine = sign_up(gateway)
        first, second = sign_up(gateway, "representative"), sign_up(gateway, "representative")
        file_id, keys = kine.create_file()
        code, _ = invite(kine, file_id, keys)
        assert accept(first, code).status_code == 201
        assert accept(second, code).status_code == 404

    def test_two_concurrent_redemptions_exactly_one_wins(self, stack):
        gateway = stack.url("gateway")
        kine = sign_up(gateway)
        racers = [sign_up(gateway, "representative") for _ in range(2)]
        file_id, keys = kine.create_file()
        code, invitation_id = invite(kine, file_id, keys)
        barrier = threading.Barrier(2)
        results: list[int] = []

        def redeem(user: ApiUser) -> None:
            barrier.wait()
            results.append(user.post(f"/v1/invitations/{invitation_id}/redeem",
                                     json={"lookup_id": code.lookup_id(),
                                           "proof": ANY_PROOF}).status_code)

        threads = [threading.Thread(target=redeem, args=(u,)) for u in racers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [200, 404]

    def test_expired_invitation_is_gone(self, stack, clock):
        gateway = stack.url("gateway")
        kine, parent = sign_up(gateway), sign_up(gateway, "representative")
        file_id, keys = kine.create_file()
        code, _ = invite(kine, file_id, keys)
        clock(15 * 24 * 3600)
        assert parent.get(f"/v1/invitations/lookup/{code.lookup_id()}").status_code == 404


class TestAudit:
    def test_file_history_is_a_verifiable_chain(self, stack):
        from ecrin_platform.audit import verify_chain

        gateway = stack.url("gateway")
        kine, patient = sign_up(gateway), sign_up(gateway, "patient")
        file_id, keys = kine.create_file()
        grant_id = share(kine, patient, file_id, keys, "patient", {"shared": "read"})
        patient.get(f"/v1/keyrings/{file_id}/entries")
        # Grants in the file's chain, key releases in the chain of the scope released.
        kms = patient.get(f"/v1/keyrings/{file_id}/audit").json()["events"]
        assert verify_chain(kms)
        assert {e["action"] for e in kms} == {"keys.grant"}
        released = patient.get(f"/v1/keyrings/{file_id}/audit",
                               params={"scope": "shared"}).json()
        assert released["chain"] == f"file:{file_id}:shared"
        assert verify_chain(released["events"])
        assert [(e["actor"], e["action"], e["target"]) for e in released["events"]] == [
            (str(patient.account_id), "keys.release", "shared:v1")]
        assert patient.get(f"/v1/keyrings/{file_id}/audit",
                           params={"scope": "clinical"}).status_code == 404
        sharing = kine.get(f"/v1/files/{file_id}/audit").json()["events"]
        assert verify_chain(sharing)
        assert [e["action"] for e in sharing][:2] == ["grant.create", "grant.activate"]
        assert grant_id in {e["target"] for e in sharing}
        tampered = [dict(e) for e in kms]
        tampered[0]["actor"] = str(uuid.uuid4())
        assert not verify_chain(tampered)


class TestInvitationRateLimit:
    def test_lookups_are_rate_limited_per_account(self, stack):
        gateway = stack.url("gateway")
        guesser = sign_up(gateway, "representative")
        statuses = [guesser.get(f"/v1/invitations/lookup/{InvitationCode.generate().lookup_id()}"
                                ).status_code for _ in range(11)]
        assert statuses[:10] == [404] * 10
        assert statuses[10] == 429


class TestStaleInvitation:
    def test_invitation_older_than_a_rotation_is_refused_and_not_consumed(self, stack):
        gateway = stack.url("gateway")
        kine, patient = sign_up(gateway), sign_up(gateway, "patient")
        parent = sign_up(gateway, "representative")
        file_id, keys = kine.create_file()
        code, invitation_id = invite(kine, file_id, keys)
        grant_id = share(kine, patient, file_id, keys, "patient", {"shared": "read"})
        assert HTTP.delete(f"{gateway}/v1/grants/{grant_id}",
                           headers=kine.headers).status_code == 200
        identity = kine.identity.public_identity()
        rotation = rotate_scope(keys[Scope.SHARED],
                                [Member(identity, GrantTerms(Relationship.OWNER, APPEND))],
                                granter=kine.identity)
        assert kine.post(f"/v1/keyrings/{file_id}/entries",
                         json={"entries": [e.to_json() for e in rotation.entries]}
                         ).status_code == 201
        response = parent.post(f"/v1/invitations/{invitation_id}/redeem",
                               json={"lookup_id": code.lookup_id(), "proof": ANY_PROOF})
        assert response.status_code == 409
        assert response.json()["type"].endswith("/invitation-stale")
        listed = kine.get("/v1/invitations", params={"file_id": str(file_id)}).json()
        assert listed[0]["status"] == "pending"


class TestRotationRecipients:
    def test_a_rotation_cannot_hand_the_key_to_someone_without_a_grant(self, stack):
        gateway = stack.url("gateway")
        kine, outsider = sign_up(gateway), sign_up(gateway, "patient")
        file_id, keys = kine.create_file()
        members = [Member(kine.identity.public_identity(), GrantTerms(Relationship.OWNER, APPEND)),
                   Member(outsider.identity.public_identity(),
                          GrantTerms(Relationship.PATIENT, READ))]
        rotation = rotate_scope(keys[Scope.SHARED], members, granter=kine.identity)
        response = kine.post(f"/v1/keyrings/{file_id}/entries",
                             json={"entries": [e.to_json() for e in rotation.entries]})
        assert response.status_code == 422
        assert outsider.get(f"/v1/keyrings/{file_id}/entries").status_code == 404

    def test_a_member_only_receives_the_scopes_of_their_grant(self, stack):
        gateway = stack.url("gateway")
        kine, patient = sign_up(gateway), sign_up(gateway, "patient")
        file_id, keys = kine.create_file()
        share(kine, patient, file_id, keys, "patient", {"shared": "read"})
        members = [Member(kine.identity.public_identity(), GrantTerms(Relationship.OWNER, APPEND)),
                   Member(patient.identity.public_identity(),
                          GrantTerms(Relationship.PATIENT, READ))]
        rotation = rotate_scope(keys[Scope.CLINICAL], members, granter=kine.identity)
        response = kine.post(f"/v1/keyrings/{file_id}/entries",
                             json={"entries": [e.to_json() for e in rotation.entries]})
        assert response.status_code == 422
