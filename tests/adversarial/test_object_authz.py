"""Object-level authorisation sweep over every route (threat 3 of DESIGN.md).

The route list comes from the gateway's merged OpenAPI document and from each service's
app object; ``COVERAGE`` says, for each route, how to fill its ids with practice A's
objects and who must be refused. A route with no entry fails the sweep ("no coverage for
..."), so a route added later cannot slip through untested.

Refused means: 403 or 404, ``application/problem+json``, and no identifier, ciphertext or
wrapped key of practice A in the body other than what the caller itself sent.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from ecrin_e2ee import Permission, Relationship, Scope, ScopeKey, encrypt_record
from ecrin_e2ee.keyring import seal_entry
from ecrin_platform.tokens import HEADER, InternalTokenIssuer, Principal
from tests.adversarial.routes import every_route
from tests.adversarial.world import World
from tests.support.users import HTTP, ApiUser, b64

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

OUTSIDERS = "outsiders"          # other practice, other patient, revoked, expired x2
MEMBERS = "non-clinical members"  # secretary and patient of file A, on clinical data
EVERYONE = "outsiders and non-clinical members"


@dataclass(frozen=True)
class Probe:
    """Call the route as each attacker with practice A's ids; expect a refusal."""

    fill: Callable[[World], dict[str, str]]
    who: str = OUTSIDERS
    query: Callable[[World], dict[str, str]] | None = None
    body: Callable[[World, ApiUser], Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: Callable[[World], bytes] | None = None
    #: Beside 403/404: 409 for a create that reuses a taken client-made id (no content).
    also: frozenset[int] = frozenset()
    #: Checked after every attacker: the object is intact for its owner.
    intact: Callable[[World], None] | None = None
    #: A control call that the legitimate owner must pass with these same ids.
    control: Callable[[World], httpx.Response] | None = None


@dataclass(frozen=True)
class Internal:
    """A service route that the gateway never forwards: called straight at the service
    with a genuine internal token carrying an attacker's principal (what a replayed or
    stolen forwarding token would give)."""

    service: str
    fill: Callable[[World], dict[str, str]]
    audiences: tuple[str, ...]
    body: Callable[[World], Any] | None = None
    intact: Callable[[World], None] | None = None


@dataclass(frozen=True)
class ListProbe:
    """A listing or a self-scoped route: every attacker calls it for itself; nothing of
    practice A may appear (for members: nothing clinical)."""

    query: Callable[[World, ApiUser], dict[str, str]] | None = None
    path: str | None = None


@dataclass(frozen=True)
class SelfScoped:
    """The id names an object inside the caller's own namespace (``/keys/me/...``): using a
    victim's id may succeed, but only on the caller's own data. The victim's must be intact."""

    fill: Callable[[World], dict[str, str]]
    body: Callable[[World, ApiUser], Any] | None = None
    intact: Callable[[World], None] | None = None


@dataclass(frozen=True)
class Exempt:
    reason: str


# -- bodies an attacker would send -------------------------------------------------------------


def forged_entries(world: World, attacker: ApiUser, scope: Scope = Scope.CLINICAL) -> dict:
    """Validly signed entries (by the attacker) of a key the attacker made for file A."""
    key = ScopeKey.generate(world.file_a, scope)
    entry = seal_entry(key, attacker.identity.public_identity(), relationship=Relationship.OWNER,
                       permissions={Permission.READ, Permission.APPEND},
                       granter=attacker.identity)
    return {"entries": [entry.to_json()]}


def forged_record(world: World, attacker: ApiUser) -> dict:
    record_id = uuid.uuid4()
    key = ScopeKey.generate(world.file_a, Scope.CLINICAL)
    enc = encrypt_record(b"injected", {"kind": "note"}, file_id=world.file_a,
                         record_id=record_id, record_version=1, scope_key=key,
                         author=attacker.identity)
    return {"record_id": str(record_id), "file_id": str(world.file_a), "scope": "clinical",
            "header": b64(enc.header.to_bytes()),
            "metadata_ciphertext": b64(enc.metadata_ciphertext),
            "content_length": sum(len(c) for c in enc.chunks)}


def clinical(world: World) -> dict[str, str]:
    return {"record_id": str(world.records_a["clinical"].record_id), "version": "1"}


def file_a(world: World) -> dict[str, str]:
    return {"file_id": str(world.file_a)}


def records_intact(world: World) -> None:
    for record in world.records_a.values():
        got = world.kine_a.get(f"/v1/records/{record.record_id}")
        assert got.status_code == 200, got.text
        assert got.json()["current_version"] == 1
        content = world.kine_a.get(f"/v1/records/{record.record_id}/versions/1/content")
        assert content.content == record.content


_SESSIONS: dict[int, tuple[str, str]] = {}


def pending_upload(world: World) -> dict[str, str]:
    """A clinical record of practice A whose content is not uploaded yet, and the resumable
    upload session its owner opened for it (made once per world)."""
    if id(world) not in _SESSIONS:
        record_id = uuid.uuid4()
        encrypted = encrypt_record(b"bilan en cours d'envoi", {"kind": "bilan"},
                                   file_id=world.file_a, record_id=record_id,
                                   record_version=1, scope_key=world.keys_a[Scope.CLINICAL],
                                   author=world.kine_a.identity)
        body = {"record_id": str(record_id), "file_id": str(world.file_a), "scope": "clinical",
                "header": b64(encrypted.header.to_bytes()),
                "metadata_ciphertext": b64(encrypted.metadata_ciphertext),
                "content_length": sum(len(c) for c in encrypted.chunks)}
        created = HTTP.post(f"{world.gateway}/v1/records", json=body,
                            headers={**world.kine_a.headers,
                                     "Idempotency-Key": uuid.uuid4().hex})
        assert created.status_code == 201, created.text
        opened = world.kine_a.post(f"/v1/records/{record_id}/versions/1/content/uploads")
        assert opened.status_code == 201, opened.text
        _SESSIONS[id(world)] = (str(record_id), opened.headers["location"].rsplit("/", 1)[1])
    record_id, upload_id = _SESSIONS[id(world)]
    return {"record_id": record_id, "version": "1", "upload_id": upload_id}


def upload_session_intact(world: World) -> None:
    ids = pending_upload(world)
    got = HTTP.head(f"{world.gateway}/v1/records/{ids['record_id']}/versions/1/content/"
                    f"uploads/{ids['upload_id']}", headers=world.kine_a.headers)
    assert got.status_code == 204, got.text
    assert got.headers["upload-offset"] == "0" and got.headers["upload-complete"] == "?0"


def pending_version(world: World) -> dict[str, str]:
    ids = pending_upload(world)
    return {"record_id": ids["record_id"], "version": "1"}


def secretary_still_member(world: World) -> None:
    assert world.secretary_a.get(f"/v1/files/{world.file_a}").status_code == 200
    got = world.kine_a.get(f"/v1/grants/{world.grant_secretary_a}")
    assert got.json()["status"] == "active"


def invitation_still_open(world: World) -> None:
    listed = world.kine_a.get("/v1/invitations", params={"file_id": str(world.file_a)}).json()
    mine = {i["id"]: i for i in listed}[world.invitation_a]
    assert (mine["status"], mine["redeemed_by"]) == ("pending", None), mine


def keyring_intact(world: World) -> None:
    entries = world.kine_a.get(f"/v1/keyrings/{world.file_a}/entries").json()["entries"]
    assert {e["member_id"] for e in entries} == {str(world.kine_a.account_id)}
    assert len(entries) == 3


def directory_intact(world: World) -> None:
    got = world.kine_a.get(f"/v1/directory/{world.kine_a.account_id}").json()
    assert got["identity"] == world.kine_a.identity.public_identity().to_json()


def kine_a_wrap_intact(world: World) -> None:
    got = world.kine_a.get(f"/v1/keys/me/wraps/passphrase/{world.kine_a_salt}")
    assert got.status_code == 200, got.text
    assert got.json()["account_id"] == str(world.kine_a.account_id)


def kine_a_account_intact(world: World) -> None:
    kine_a_wrap_intact(world)
    assert world.kine_a.get("/v1/keys/me/wraps/recovery").status_code == 200
    assert world.kine_a.get("/v1/auth/me").status_code == 200


def own_wrap(world: World, attacker: ApiUser) -> dict:
    from ecrin_e2ee import WrappedIdentity  # noqa: F401  (the shape the kms expects)

    challenge = HTTP.post(f"{world.gateway}/v1/auth/challenge",
                          json={"email": attacker.email}).json()
    return attacker.get(f"/v1/keys/me/wraps/passphrase/{challenge['kdf']['salt']}").json()


# -- the table --------------------------------------------------------------------------------

COVERAGE: dict[tuple[str, str], Probe | Internal | ListProbe | SelfScoped | Exempt] = {
    # gateway: accounts and sessions
    ("POST", "/v1/auth/signup"): Exempt("creates the caller's own account; a taken account id "
                                        "or email is tests/e2e/test_auth_api.py::TestSignupSaga"),
    ("POST", "/v1/auth/challenge"): Exempt("before authentication; enumeration is "
                                           "tests/e2e/test_auth_api.py::TestEnumeration"),
    ("POST", "/v1/auth/login"): Exempt("before authentication; a challenge id works once "
                                       "(tests/e2e/test_auth_api.py::TestLogin)"),
    ("POST", "/v1/auth/recover"): Exempt("before authentication, same challenge rules as login"),
    ("POST", "/v1/auth/refresh"): Exempt("the refresh token is the capability "
                                         "(tests/e2e/test_auth_api.py::TestRefreshAndSessions)"),
    ("POST", "/v1/auth/logout"): Exempt("acts on the caller's own session only"),
    ("GET", "/v1/auth/me"): ListProbe(),
    ("GET", "/v1/auth/audit"): ListProbe(),
    ("GET", "/v1/auth/sessions"): ListProbe(),
    ("DELETE", "/v1/auth/sessions/{session_id}"): Probe(
        fill=lambda w: {"session_id": w.kine_a_session},
        intact=lambda w: w.kine_a.get("/v1/auth/me").raise_for_status() and None),
    ("POST", "/v1/auth/sessions/{session_id}/revoke"): Probe(
        fill=lambda w: {"session_id": w.kine_a_session},
        body=lambda w, a: {"challenge_id": "00000000-0000-4000-8000-000000000000",
                           "signature": "A" * 86},
        intact=lambda w: w.kine_a.get("/v1/auth/me").raise_for_status() and None),
    ("POST", "/v1/auth/2fa/totp"): Exempt("enrols the caller's own second factor"),
    ("POST", "/v1/auth/2fa/totp/confirm"): Exempt("the caller's own second factor"),
    ("POST", "/v1/auth/passphrase"): Exempt("the caller's own account, signed by its login key"),
    ("POST", "/v1/auth/identity"): Exempt(
        "the caller's own account: a fresh challenge signed by its login key and a statement "
        "signed by its published identity (tests/adversarial/test_identity_swap.py)"),
    # records-api
    ("GET", "/v1/records/service-info"): Exempt("no id, no data: limits and version"),
    ("POST", "/v1/records"): Probe(fill=lambda w: {}, who=EVERYONE, body=forged_record,
                                   headers={"Idempotency-Key": "sweep-create-0001"},
                                   intact=records_intact),
    ("GET", "/v1/records"): Probe(fill=lambda w: {}, who=EVERYONE,
                                  query=lambda w: {"file_id": str(w.file_a), "scope": "clinical"},
                                  control=lambda w: w.kine_a.get(
                                      "/v1/records", params={"file_id": str(w.file_a)})),
    ("GET", "/v1/records/headers"): Probe(
        fill=lambda w: {}, who=EVERYONE,
        query=lambda w: {"file_id": str(w.file_a), "scope": "clinical"},
        control=lambda w: w.kine_a.get("/v1/records/headers", params={
            "file_id": str(w.file_a), "scope": "clinical"})),
    ("GET", "/v1/records/audit"): Probe(fill=lambda w: {}, who=OUTSIDERS,
                                        query=lambda w: {"file_id": str(w.file_a)},
                                        control=lambda w: w.kine_a.get(
                                            "/v1/records/audit",
                                            params={"file_id": str(w.file_a)})),
    ("POST", "/v1/records/rekey"): Probe(
        fill=lambda w: {}, who=EVERYONE, intact=records_intact,
        body=lambda w, a: {"items": [{"record_id": str(w.records_a["clinical"].record_id),
                                      "version": 1,
                                      "header": w.records_a["clinical"].header_b64}]}),
    ("GET", "/v1/records/{record_id}"): Probe(
        fill=clinical, who=EVERYONE,
        control=lambda w: w.kine_a.get(f"/v1/records/{w.records_a['clinical'].record_id}")),
    ("DELETE", "/v1/records/{record_id}"): Probe(fill=clinical, who=EVERYONE,
                                                 headers={"If-Match": '"v1"'},
                                                 intact=records_intact),
    ("GET", "/v1/records/{record_id}/versions"): Probe(fill=clinical, who=EVERYONE),
    ("POST", "/v1/records/{record_id}/versions"): Probe(
        fill=clinical, who=EVERYONE, headers={"If-Match": '"v1"'}, intact=records_intact,
        body=lambda w, a: {"header": w.records_a["clinical"].header_b64,
                           "metadata_ciphertext": w.records_a["clinical"].metadata_b64,
                           "content_length": len(w.records_a["clinical"].content)}),
    ("GET", "/v1/records/{record_id}/versions/{version}"): Probe(fill=clinical, who=EVERYONE),
    ("POST", "/v1/records/{record_id}/versions/{version}/wrap"): Probe(
        fill=clinical, who=EVERYONE, body=lambda w, a: {"key_version": 1},
        intact=records_intact),
    ("GET", "/v1/records/{record_id}/versions/{version}/content"): Probe(
        fill=clinical, who=EVERYONE,
        control=lambda w: w.kine_a.get(
            f"/v1/records/{w.records_a['clinical'].record_id}/versions/1/content")),
    ("PUT", "/v1/records/{record_id}/versions/{version}/content"): Probe(
        fill=clinical, who=EVERYONE, raw_body=lambda w: w.records_a["clinical"].content,
        headers={"Content-Type": "application/octet-stream"}, intact=records_intact),
    ("POST", "/v1/records/{record_id}/versions/{version}/content/uploads"): Probe(
        fill=pending_version, who=EVERYONE, intact=upload_session_intact),
    ("HEAD", "/v1/records/{record_id}/versions/{version}/content/uploads/{upload_id}"): Probe(
        fill=pending_upload, who=EVERYONE, intact=upload_session_intact),
    ("PATCH", "/v1/records/{record_id}/versions/{version}/content/uploads/{upload_id}"): Probe(
        fill=pending_upload, who=EVERYONE, raw_body=lambda w: b"\0" * 64,
        headers={"Content-Type": "application/octet-stream", "Upload-Offset": "0",
                 "Upload-Complete": "?1"}, intact=upload_session_intact),
    ("DELETE", "/v1/records/{record_id}/versions/{version}/content/uploads/{upload_id}"): Probe(
        fill=pending_upload, who=EVERYONE, intact=upload_session_intact),
    # kms
    ("GET", "/v1/keys/service-info"): Exempt("no id, no data"),
    ("PUT", "/v1/directory/{account_id}"): Probe(
        fill=lambda w: {"account_id": str(w.kine_a.account_id)},
        body=lambda w, a: a.identity.public_identity().to_json(), intact=directory_intact),
    ("GET", "/v1/directory/{account_id}"): Exempt(
        "public by design: anyone authenticated fetches a public identity to verify its "
        "fingerprint before sharing (docs/accounts.md); it holds no secret"),
    ("GET", "/v1/keys/me/wraps/passphrase/{key_id}"): Probe(
        fill=lambda w: {"key_id": w.kine_a_salt}),
    ("PUT", "/v1/keys/me/wraps/passphrase/{key_id}"): SelfScoped(
        fill=lambda w: {"key_id": w.kine_a_salt}, body=own_wrap, intact=kine_a_wrap_intact),
    ("DELETE", "/v1/keys/me/wraps/passphrase/{key_id}"): SelfScoped(
        fill=lambda w: {"key_id": w.kine_a_salt}, intact=kine_a_wrap_intact),
    ("GET", "/v1/keys/me/unlock/{key_id}"): Probe(
        fill=lambda w: {"key_id": w.kine_a_salt}),
    ("GET", "/v1/keys/me/wraps/recovery"): ListProbe(),
    ("PUT", "/v1/keyrings/{file_id}/initial"): Probe(fill=file_a, who=EVERYONE,
                                                     body=forged_entries, also=frozenset({409}),
                                                     intact=keyring_intact),
    ("GET", "/v1/keyrings/{file_id}/entries"): Probe(
        fill=file_a, who=EVERYONE, query=lambda w: {"scope": "clinical"},
        control=lambda w: w.kine_a.get(f"/v1/keyrings/{w.file_a}/entries")),
    ("POST", "/v1/keyrings/{file_id}/entries"): Probe(fill=file_a, who=EVERYONE,
                                                      body=forged_entries, intact=keyring_intact),
    ("POST", "/v1/keyrings/{file_id}/grants/{grant_id}"): Probe(
        fill=lambda w: {"file_id": str(w.file_a), "grant_id": w.grant_secretary_a},
        who=EVERYONE, body=forged_entries, intact=keyring_intact),
    ("GET", "/v1/keyrings/{file_id}/audit"): Probe(fill=file_a),
    # sharing
    ("GET", "/v1/files/service-info"): Exempt("no id, no data"),
    ("POST", "/v1/files"): Probe(fill=lambda w: {}, also=frozenset({409}),
                                 body=lambda w, a: {"file_id": str(w.file_a),
                                                    "search_tokens": []}),
    ("GET", "/v1/files"): ListProbe(query=lambda w, a: {"token": w.search_token_a}),
    ("GET", "/v1/files/{file_id}"): Probe(fill=file_a,
                                          control=lambda w: w.kine_a.get(f"/v1/files/{w.file_a}")),
    ("PUT", "/v1/files/{file_id}/search-tokens"): Probe(
        fill=file_a, who=EVERYONE, body=lambda w, a: {"search_tokens": ["AAAAAAAAAAAAAAAAAAAAAA"]}),
    ("GET", "/v1/files/{file_id}/members"): Probe(fill=file_a),
    ("GET", "/v1/files/{file_id}/audit"): Probe(fill=file_a),
    ("GET", "/v1/grants/defaults"): Exempt("a constant table, no id"),
    ("POST", "/v1/grants"): Probe(
        fill=lambda w: {}, who=EVERYONE,
        body=lambda w, a: {"grant_id": str(uuid.uuid4()), "file_id": str(w.file_a),
                           "grantee_id": str(a.account_id), "relationship": "care_team",
                           "scopes": {"clinical": "append"}}),
    ("GET", "/v1/grants"): Probe(fill=lambda w: {}, who=OUTSIDERS,
                                 query=lambda w: {"file_id": str(w.file_a)}),
    ("GET", "/v1/grants/{grant_id}"): Probe(fill=lambda w: {"grant_id": w.grant_secretary_a},
                                            control=lambda w: w.kine_a.get(
                                                f"/v1/grants/{w.grant_secretary_a}")),
    ("DELETE", "/v1/grants/{grant_id}"): Probe(fill=lambda w: {"grant_id": w.grant_secretary_a},
                                               who=OUTSIDERS, intact=secretary_still_member),
    ("POST", "/v1/invitations"): Probe(
        fill=lambda w: {}, who=EVERYONE,
        body=lambda w, a: {"invitation_id": str(uuid.uuid4()), "file_id": str(w.file_a),
                           "lookup_id": "A" * 22, "relationship": "patient",
                           "scopes": {"shared": "read"}, "payload": {},
                           "verifier": {"version": 1, "nonce": "A" * 32,
                                        "ciphertext": "A" * 64}}),
    ("GET", "/v1/invitations"): Probe(fill=lambda w: {}, who=EVERYONE,
                                      query=lambda w: {"file_id": str(w.file_a)}),
    ("GET", "/v1/invitations/lookup/{lookup_id}"): Exempt(
        "the lookup id is derived from the out-of-band code: holding it is the capability; "
        "guessing is rate-limited (tests/e2e/test_sharing_api.py::TestInvitationRateLimit)"),
    ("POST", "/v1/invitations/{invitation_id}/redeem"): Probe(
        fill=lambda w: {"invitation_id": w.invitation_a}, who=EVERYONE,
        body=lambda w, a: {"lookup_id": "guessed-lookup-id-0000", "proof": "A" * 43},
        intact=invitation_still_open),
    ("DELETE", "/v1/invitations/{invitation_id}"): Probe(
        fill=lambda w: {"invitation_id": w.invitation_a}, who=EVERYONE,
        intact=invitation_still_open),
    ("GET", "/v1/rotations"): ListProbe(query=lambda w, a: {"file_id": str(w.file_a)}),
    ("POST", "/v1/rotations/{file_id}/{scope}/done"): Probe(
        fill=lambda w: {"file_id": str(w.file_a), "scope": "shared"}, who=EVERYONE,
        body=lambda w, a: {"version": 2}),
    # routes that only exist inside the services (never forwarded by the gateway)
    ("GET", "/internal/access/{file_id}/{account_id}"): Internal(
        "sharing", lambda w: {"file_id": str(w.file_a), "account_id": str(w.kine_a.account_id)},
        audiences=("sharing", "records-api", "kms")),
    ("POST", "/internal/files/{file_id}/activate"): Internal(
        "sharing", file_a, audiences=("sharing", "kms")),
    ("GET", "/internal/grants/{grant_id}"): Internal(
        "sharing", lambda w: {"grant_id": w.grant_secretary_a}, audiences=("sharing", "kms")),
    ("POST", "/internal/grants/{grant_id}/activate"): Internal(
        "sharing", lambda w: {"grant_id": w.grant_secretary_a}, audiences=("sharing", "kms"),
        intact=secretary_still_member),
    ("GET", "/internal/files/{file_id}/members"): Internal(
        "sharing", file_a, audiences=("sharing", "kms")),
    ("POST", "/internal/rotations/{file_id}/{scope}/rotated"): Internal(
        "sharing", lambda w: {"file_id": str(w.file_a), "scope": "shared"},
        audiences=("sharing", "kms"), body=lambda w: {"version": 2}),
    ("PUT", "/internal/accounts/{account_id}/keys"): Internal(
        "kms", lambda w: {"account_id": str(w.kine_a.account_id)}, audiences=("kms",),
        body=lambda w: {}, intact=kine_a_account_intact),
    ("PUT", "/internal/accounts/{account_id}/identity"): Internal(
        "kms", lambda w: {"account_id": str(w.kine_a.account_id)}, audiences=("kms",),
        body=lambda w: {}, intact=directory_intact),
    ("DELETE", "/internal/accounts/{account_id}/keys"): Internal(
        "kms", lambda w: {"account_id": str(w.kine_a.account_id)}, audiences=("kms",),
        intact=kine_a_account_intact),
    ("GET", "/internal/accounts/{account_id}/wraps/passphrase/{key_id}"): Internal(
        "kms", lambda w: {"account_id": str(w.kine_a.account_id), "key_id": w.kine_a_salt},
        audiences=("kms",)),
    ("POST", "/v1/records/batch"): Exempt(
        "ids in a body, access decided per file and scope as the single read: another "
        "practice gets no record, and its refusals are audited (tests/e2e/"
        "test_patient_pages.py::...::test_gets_no_record_and_no_key_and_its_refusals_are_"
        "audited)"),
    ("POST", "/v1/keyrings/batch"): Exempt(
        "as /v1/records/batch, for keyring entries: another practice gets no key, refusals "
        "audited (same test)"),
    ("POST", "/internal/access/batch"): Exempt(
        "answers the access decisions of the principal in the internal token, for up to 200 "
        "files: an attacker's principal learns its own (no) access, as with the single "
        "/internal/access route; reached by records-api and the kms only"),
    ("POST", "/internal/access-changed"): Exempt(
        "records-api and kms: drops their cached access answers about the named files (the "
        "sharing service calls it when a grant ends); it reveals nothing and changes no "
        "data, so a forwarding token can at most make the next requests ask sharing again. "
        "Audiences: tests/records_api/test_access.py::TestAccessChangedRoute"),
    ("GET", "/internal/access-changes"): Exempt(
        "sharing's access-change feed, for the kms only (a forwarded token whose audience is "
        "the kms; the records API's and the gateway's are refused: tests/sharing/"
        "test_access_feed.py::TestRoute): streams the ids of files whose access changed, "
        "which only make the kms ask again; no data, no account, nothing writable"),
    # framework routes of every app
    ("GET", "/openapi.json"): Exempt("the API description; services answer it only to the "
                                     "gateway's internal token"),
    ("GET", "/docs"): Exempt("Swagger UI page, no data"),
    ("GET", "/docs/oauth2-redirect"): Exempt("Swagger UI helper page, no data"),
    ("GET", "/healthz"): Exempt("liveness, no data"),
    ("GET", "/readyz"): Exempt("readiness, no data"),
    **{(m, "/v1/{path}"): Exempt("the gateway's proxy: every concrete route behind it is "
                                 "covered above, and unknown areas are 404 "
                                 "(test_request_abuse)")
       for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "TRACE")},
}


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def routes(stack) -> dict[tuple[str, str], set[str]]:
    merged = HTTP.get(stack.url("gateway") + "/openapi.json").json()
    assert "x-ecrin-unavailable" not in merged.get("info", {})
    return every_route(merged)


def attackers(world: World, who: str) -> dict[str, ApiUser]:
    if who == OUTSIDERS:
        return world.outsiders
    if who == MEMBERS:
        return world.non_clinical_members
    return {**world.outsiders, **world.non_clinical_members}


def assert_no_leak(response: httpx.Response, secrets: set[str], sent: str, label: str) -> None:
    text = response.text
    leaked = sorted(s for s in secrets if s and s in text and s not in sent)
    assert not leaked, f"{label}: {response.status_code} leaks {leaked}: {text[:300]}"


def assert_refused(response: httpx.Response, world: World, sent: str, label: str,
                   also: frozenset[int] = frozenset()) -> None:
    assert response.status_code in {403, 404} | also, \
        f"{label}: expected 403/404, got {response.status_code}: {response.text[:300]}"
    assert response.headers["content-type"].startswith("application/problem+json"), label
    if response.request.method == "HEAD":  # a HEAD answer has the headers and no body
        assert not response.content, label
        assert_no_leak(response, world.secrets(), sent, label)
        return
    body = response.json()
    assert not {"entries", "header", "metadata_ciphertext", "items", "payload",
                "sealed_key"} & set(body), f"{label}: body carries data {body}"
    assert_no_leak(response, world.secrets(), sent, label)


# -- the sweep --------------------------------------------------------------------------------


class TestRouteTableIsCovered:
    def test_every_route_has_an_entry(self, routes):
        missing = [f"no coverage for {m} {p} (seen in {sorted(where)})"
                   for (m, p), where in sorted(routes.items()) if (m, p) not in COVERAGE]
        assert not missing, "\n".join(missing)

    def test_no_stale_entry(self, routes):
        stale = sorted(set(COVERAGE) - set(routes))
        assert not stale, f"coverage for routes that no longer exist: {stale}"

    def test_the_sweep_is_not_empty(self, routes):
        probes = [k for k, v in COVERAGE.items() if not isinstance(v, Exempt)]
        print(f"routes: {len(routes)}, probed: {len(probes)}, "
              f"exempt: {len(COVERAGE) - len(probes)}")
        assert len(probes) >= 40


def _call(user: ApiUser, method: str, path: str, probe: Probe, world: World
          ) -> tuple[httpx.Response, str]:
    kwargs: dict[str, Any] = {"headers": {**user.headers, **probe.headers}}
    if probe.query:
        kwargs["params"] = probe.query(world)
    sent = path + json.dumps(kwargs.get("params", {}))
    if probe.body is not None:
        body = probe.body(world, user)
        kwargs["json"] = body
        sent += json.dumps(body)
    elif probe.raw_body is not None:
        kwargs["content"] = probe.raw_body(world)
    return HTTP.request(method, world.gateway + path, timeout=30, **kwargs), sent


PROBED = sorted(k for k, v in COVERAGE.items() if isinstance(v, Probe))
INTERNAL = sorted(k for k, v in COVERAGE.items() if isinstance(v, Internal))
LISTS = sorted(k for k, v in COVERAGE.items() if isinstance(v, ListProbe))
SELF = sorted(k for k, v in COVERAGE.items() if isinstance(v, SelfScoped))


class TestForeignIds:
    @pytest.mark.parametrize("route", PROBED, ids=lambda r: f"{r[0]} {r[1]}")
    def test_refused_without_content(self, world, route):
        method, template = route
        probe = COVERAGE[route]
        assert isinstance(probe, Probe)
        path = template.format(**probe.fill(world))
        if probe.control is not None:
            assert probe.control(world).status_code == 200, "the owner's control call failed"
        calls = 0
        for label, user in attackers(world, probe.who).items():
            response, sent = _call(user, method, path, probe, world)
            assert_refused(response, world, sent, f"{method} {path} as {label}", probe.also)
            calls += 1
            if probe.intact is not None:
                probe.intact(world)
        print(f"{method} {template}: {calls} refused calls")


class TestInternalRoutes:
    @pytest.mark.parametrize("route", INTERNAL, ids=lambda r: f"{r[0]} {r[1]}")
    def test_not_reachable_through_the_gateway(self, world, route):
        method, template = route
        probe = COVERAGE[route]
        path = template.format(**probe.fill(world))
        user = world.kine_b
        for candidate in (path, "/v1" + path, f"/v1/files/..{path}", f"/v1/files/%2e%2e{path}"):
            response = HTTP.request(method, world.gateway + candidate, headers=user.headers)
            assert response.status_code in {400, 404, 405}, (candidate, response.text)
            assert_no_leak(response, world.secrets(), candidate, candidate)

    @pytest.mark.parametrize("route", INTERNAL, ids=lambda r: f"{r[0]} {r[1]}")
    def test_a_forwarding_token_of_an_outsider_gets_nothing(self, stack, world, route):
        method, template = route
        probe = COVERAGE[route]
        assert isinstance(probe, Internal)
        issuer = InternalTokenIssuer((stack.state / "keys" / "internal-token.key").read_bytes())
        path = template.format(**probe.fill(world))
        for label, user in world.outsiders.items():
            principal = Principal(str(user.account_id), user.role, second_factor=True)
            for audience in probe.audiences:
                token = issuer.issue(audience, principal=principal)
                for caller in ({}, {"x-ecrin-caller": audience}):
                    response = HTTP.request(
                        method, stack.url(probe.service) + path,
                        headers={HEADER: token, **caller},
                        json=probe.body(world) if probe.body else None)
                    assert response.status_code in {401, 403, 404, 422}, \
                        f"{method} {path} as {label} aud={audience}: {response.status_code} " \
                        f"{response.text[:200]}"
                    assert_no_leak(response, world.secrets(), path, label)
            if probe.intact is not None:
                probe.intact(world)


class TestListings:
    @pytest.mark.parametrize("route", LISTS, ids=lambda r: f"{r[0]} {r[1]}")
    def test_listings_never_carry_foreign_ids(self, world, route):
        method, template = route
        probe = COVERAGE[route]
        assert isinstance(probe, ListProbe)
        for label, user in world.outsiders.items():
            params = probe.query(world, user) if probe.query else None
            response = HTTP.request(method, world.gateway + template, params=params,
                                    headers=user.headers)
            assert response.status_code < 500, response.text
            assert_no_leak(response, world.secrets(), json.dumps(params or {}),
                           f"{template} as {label}")
            assert response.status_code in {200, 403, 404}, (label, response.text)

    def test_members_list_no_clinical_record(self, world):
        for label, user in world.non_clinical_members.items():
            response = user.get("/v1/records", params={"file_id": str(world.file_a)})
            assert response.status_code == 200, response.text
            ids = {item["record_id"] for item in response.json()["items"]}
            assert str(world.records_a["clinical"].record_id) not in ids, label
            assert_no_leak(response, world.clinical_secrets(), "", label)
            entries = user.get(f"/v1/keyrings/{world.file_a}/entries").json()["entries"]
            assert "clinical" not in {e["scope"] for e in entries}, label

    def test_other_practice_lists_only_its_own(self, world):
        files = world.kine_b.get("/v1/files").json()["items"]
        assert [f["id"] for f in files] == [str(world.file_b)]
        records = world.kine_b.get("/v1/records", params={"file_id": str(world.file_b)}).json()
        assert [r["record_id"] for r in records["items"]] == [str(world.record_b.record_id)]


class TestSelfScopedIds:
    @pytest.mark.parametrize("route", SELF, ids=lambda r: f"{r[0]} {r[1]}")
    def test_a_victims_id_only_touches_the_callers_own_data(self, world, route):
        method, template = route
        probe = COVERAGE[route]
        assert isinstance(probe, SelfScoped)
        path = template.format(**probe.fill(world))
        for label, user in world.outsiders.items():
            body = probe.body(world, user) if probe.body else None
            response = HTTP.request(method, world.gateway + path, json=body,
                                    headers=user.headers)
            assert response.status_code < 500, response.text
            assert_no_leak(response, world.secrets() - {world.kine_a_salt}, json.dumps(body),
                           label)
            if probe.intact is not None:
                probe.intact(world)


class TestMembersSeeOnlyTheirOwnGrants:
    def test_a_secretary_lists_only_its_own_grant(self, world):
        for label, user in world.non_clinical_members.items():
            listed = user.get("/v1/grants", params={"file_id": str(world.file_a)}).json()
            assert [g["grantee_id"] for g in listed] == [str(user.account_id)], label


class TestInvitationIdIsNotACapability:
    """Regression: POST /v1/invitations/{id}/redeem used to accept any authenticated caller
    who knew the invitation id, which the file's audit chain shows to its members. The
    redeemer then sealed keys of its own making to itself and became a member server-side
    (ciphertext and listings of the invited scopes)."""

    def test_a_member_who_read_the_id_in_the_audit_chain_cannot_redeem(self, world):
        audit = world.patient_a.get(f"/v1/files/{world.file_a}/audit")
        assert audit.status_code == 200, audit.text
        assert world.invitation_a in audit.text  # the id is not a secret
        for body in (None, {"lookup_id": "A" * 22, "proof": "A" * 43},
                     {"lookup_id": world.invitation_code_a.lookup_id()[:-1] + "x",
                      "proof": "A" * 43}):
            response = world.patient_a.post(f"/v1/invitations/{world.invitation_a}/redeem",
                                            json=body)
            assert response.status_code in {404, 422}, response.text
        invitation_still_open(world)
        assert world.patient_a.get("/v1/grants", params={"file_id": str(world.file_a)}
                                   ).json()[0]["relationship"] == "patient"
