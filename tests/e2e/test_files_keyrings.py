"""Patient files and their keyrings through the gateway: the saga, search, isolation."""

from __future__ import annotations

import uuid

import pytest

from ecrin_e2ee import Permission, Relationship, Scope, ScopeKey, SearchKey
from ecrin_e2ee.keyring import seal_entry
from tests.support.users import open_entries, sign_up

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


@pytest.fixture(scope="module")
def kine(stack):
    return sign_up(stack.url("gateway"), "practitioner")


@pytest.fixture(scope="module")
def other_kine(stack):
    return sign_up(stack.url("gateway"), "practitioner")


class TestFileSaga:
    def test_file_appears_only_with_its_keyring(self, kine):
        file_id = uuid.uuid4()
        kine.post("/v1/files", json={"file_id": str(file_id)}).raise_for_status()
        listed = [f["id"] for f in kine.get("/v1/files").json()["items"]]
        assert str(file_id) not in listed
        assert kine.get(f"/v1/files/{file_id}").status_code == 404
        keys = {s: ScopeKey.generate(file_id, s) for s in Scope}
        entries = [seal_entry(k, kine.identity.public_identity(), relationship=Relationship.OWNER,
                              permissions={Permission.READ, Permission.APPEND},
                              granter=kine.identity).to_json() for k in keys.values()]
        first = kine.put(f"/v1/keyrings/{file_id}/initial", json={"entries": entries})
        retry = kine.put(f"/v1/keyrings/{file_id}/initial", json={"entries": entries})
        assert (first.status_code, retry.status_code) == (201, 200)
        assert kine.get(f"/v1/files/{file_id}").json()["relationship"] == "owner"

    def test_keyring_entries_open_to_the_same_scope_keys(self, kine):
        file_id, keys = kine.create_file()
        body = kine.get(f"/v1/keyrings/{file_id}/entries").json()
        assert body["versions"] == {"clinical": 1, "shared": 1, "administrative": 1}
        opened = {k.scope: k for k in open_entries(kine, body["entries"])}
        assert {s: k.to_bound_bytes() for s, k in opened.items()} == \
            {s: k.to_bound_bytes() for s, k in keys.items()}

    def test_forged_entry_signature_is_refused(self, kine):
        file_id = uuid.uuid4()
        kine.post("/v1/files", json={"file_id": str(file_id)}).raise_for_status()
        entries = []
        for scope in Scope:
            entry = seal_entry(ScopeKey.generate(file_id, scope), kine.identity.public_identity(),
                               relationship=Relationship.OWNER, permissions={Permission.READ},
                               granter=kine.identity).to_json()
            entry["signature"] = entry["signature"][:-4] + "AAAA"
            entries.append(entry)
        response = kine.put(f"/v1/keyrings/{file_id}/initial", json={"entries": entries})
        assert response.status_code == 422

    def test_only_practitioners_create_files(self, stack):
        patient = sign_up(stack.url("gateway"), "patient")
        response = patient.post("/v1/files", json={"file_id": str(uuid.uuid4())})
        assert response.status_code == 403


class TestSearch:
    def test_blind_index_finds_accent_and_case_variants(self, kine):
        surname = f"Dupönt{uuid.uuid4().hex[:6]}"
        file_id, _ = kine.create_file(surname)
        key = SearchKey.for_owner(kine.identity)
        for variant in (surname, surname.upper(), surname.replace("ö", "o")):
            items = kine.get("/v1/files", params={"token": key.name_token(variant)}).json()
            assert [i["id"] for i in items["items"]] == [str(file_id)]
        miss = kine.get("/v1/files", params={"token": key.name_token("Martin")}).json()
        assert miss["items"] == []


class TestIsolation:
    def test_another_practice_gets_404_everywhere(self, kine, other_kine):
        file_id, _ = kine.create_file()
        assert other_kine.get(f"/v1/files/{file_id}").status_code == 404
        assert other_kine.get(f"/v1/keyrings/{file_id}/entries").status_code == 404
        assert other_kine.put(f"/v1/keyrings/{file_id}/initial",
                              json={"entries": [{}]}).status_code in (404, 422)
        assert str(file_id) not in [f["id"] for f in other_kine.get("/v1/files").json()["items"]]

    def test_another_practice_cannot_take_a_file_id(self, kine, other_kine):
        file_id, _ = kine.create_file()
        response = other_kine.post("/v1/files", json={"file_id": str(file_id)})
        assert response.status_code == 409
