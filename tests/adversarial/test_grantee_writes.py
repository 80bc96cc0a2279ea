"""A grantee never destroys, hides, freezes or re-keys what others wrote (DESIGN.md, threat
6; issue 14), tried as the attacker would, through the real services.

A patient holding the default grant (``shared`` append, ``administrative`` read) attacks the
practitioner's shared exercise programme: re-keys it with garbage, with a key version that
does not exist, with a well-formed wrap of its own; deletes it. A care-team colleague, who
may re-key, makes a bad one; the owner puts the earlier wrap back.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import httpx
import pytest

from ecrin_e2ee import (
    DecryptionError,
    RecordDecryptor,
    RecordHeader,
    Scope,
    ScopeKey,
    encrypt_record,
)
from ecrin_e2ee.record_header import unwrap_dek
from tests.adversarial.world import StoredRecord, add_record, share
from tests.support.users import HTTP, ApiUser, b64, sign_up, unb64

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


@dataclass
class Practice:
    kine: ApiUser
    patient: ApiUser
    colleague: ApiUser
    file_id: uuid.UUID
    keys: dict[Scope, ScopeKey]


@pytest.fixture(scope="module")
def practice(stack) -> Practice:
    gateway = stack.url("gateway")
    kine, patient, colleague = sign_up(gateway), sign_up(gateway, "patient"), sign_up(gateway)
    file_id, keys = kine.create_file("Moreau")
    share(kine, patient, file_id, keys, "patient",
          {"shared": "append", "administrative": "read"})
    share(kine, colleague, file_id, keys, "care_team",
          {"clinical": "append", "shared": "append", "administrative": "append"})
    return Practice(kine, patient, colleague, file_id, keys)


def stored_header(user: ApiUser, record: StoredRecord) -> bytes:
    got = user.get(f"/v1/records/{record.record_id}/versions/1")
    assert got.status_code == 200, got.text
    return unb64(got.json()["header"])


def read(practice: Practice, record: StoredRecord, wrapper: ApiUser | None = None) -> bytes:
    """The practitioner opens version 1 as a client would (author: the practitioner)."""
    header = stored_header(practice.kine, record)
    content = practice.kine.get(f"/v1/records/{record.record_id}/versions/1/content").content
    step = 65536 + 17
    decryptor = RecordDecryptor(header, unb64(record.metadata_b64),
                                scope_key=practice.keys[Scope(record.scope)],
                                author=practice.kine.identity.public_identity(),
                                wrapper=(wrapper or practice.kine).identity.public_identity())
    return b"".join(decryptor.decrypt([content[i:i + step]
                                       for i in range(0, len(content), step)]))


def rekey(user: ApiUser, record: StoredRecord, header: bytes) -> httpx.Response:
    return user.post("/v1/records/rekey", json={"items": [
        {"record_id": str(record.record_id), "version": 1, "header": b64(header)}]})


def with_key_version(header: bytes, key_version: int) -> bytes:
    return header[:254] + key_version.to_bytes(4, "big") + header[258:]


class TestPatientCannotReKeyThePractitionersRecord:
    """Before the change, each of these was accepted: the record could never be opened
    again (the old wrap gone, putting it back refused as a stale key version)."""

    def test_garbage_wrap(self, practice):
        # The author-signed core kept (the server compares it), everything after it noise.
        self.attack_with(practice, lambda h: h[:254] + (2).to_bytes(4, "big") + os.urandom(152))

    def test_a_key_version_that_does_not_exist(self, practice):
        self.attack_with(practice, lambda h: with_key_version(h, 0xFFFFFFFF))

    def test_a_well_formed_wrap_signed_by_the_patient(self, practice):
        def forge(header: bytes) -> bytes:
            parsed = RecordHeader.from_bytes(header)
            # The patient holds the shared key: it unwraps the real DEK and wraps it under a
            # "version 2" of its own making, signed with its own identity.
            dek = unwrap_dek(parsed, practice.keys[Scope.SHARED])
            invented = ScopeKey.generate(practice.file_id, Scope.SHARED, 2)
            return parsed.with_wrap(invented, dek, practice.patient.identity).to_bytes()

        self.attack_with(practice, forge)

    def test_a_well_formed_wrap_under_the_current_version(self, practice):
        def forge(header: bytes) -> bytes:
            parsed = RecordHeader.from_bytes(header)
            return parsed.with_wrap(practice.keys[Scope.SHARED], os.urandom(32),
                                    practice.patient.identity).to_bytes()

        self.attack_with(practice, forge)

    def attack_with(self, practice: Practice, forge) -> None:
        record = add_record(practice.kine, practice.file_id, practice.keys, "shared",
                            b"programme d'exercices")
        before = stored_header(practice.kine, record)
        response = rekey(practice.patient, record, forge(before))
        assert response.status_code == 403, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert stored_header(practice.kine, record) == before
        assert read(practice, record) == b"programme d'exercices"


class TestPatientDeletes:
    def test_the_practitioners_record_is_refused_and_stays(self, practice):
        record = add_record(practice.kine, practice.file_id, practice.keys, "shared",
                            b"ordonnance")
        response = HTTP.delete(f"{practice.patient.gateway}/v1/records/{record.record_id}",
                               headers={**practice.patient.headers, "If-Match": '"v1"'})
        assert response.status_code == 403, response.text
        assert response.json()["type"].endswith("/write-not-permitted")
        assert read(practice, record) == b"ordonnance"
        listed = practice.patient.get("/v1/records", params={"file_id": str(practice.file_id)})
        assert str(record.record_id) in {r["record_id"] for r in listed.json()["items"]}

    def test_their_own_record_may_go(self, practice):
        record_id = uuid.uuid4()
        encrypted = encrypt_record(b"scan", {"kind": "prescription"}, file_id=practice.file_id,
                                   record_id=record_id, record_version=1,
                                   scope_key=practice.keys[Scope.SHARED],
                                   author=practice.patient.identity)
        content = b"".join(encrypted.chunks)
        created = HTTP.post(f"{practice.patient.gateway}/v1/records", headers={
            **practice.patient.headers, "Idempotency-Key": uuid.uuid4().hex}, json={
            "record_id": str(record_id), "file_id": str(practice.file_id), "scope": "shared",
            "header": b64(encrypted.header.to_bytes()),
            "metadata_ciphertext": b64(encrypted.metadata_ciphertext),
            "content_length": len(content), "content": b64(content)})
        assert created.status_code == 201, created.text
        response = HTTP.delete(f"{practice.patient.gateway}/v1/records/{record_id}",
                               headers={**practice.patient.headers, "If-Match": '"v1"'})
        assert response.status_code == 204, response.text
        assert practice.kine.get(f"/v1/records/{record_id}").status_code == 404


class TestABadReKeyIsUndone:
    def test_the_owner_puts_the_earlier_wrap_back(self, practice):
        record = add_record(practice.kine, practice.file_id, practice.keys, "clinical",
                            b"bilan kine")
        original = stored_header(practice.kine, record)
        # Well-formed, signed by the colleague, under the current key version: the server
        # cannot tell that it wraps another DEK than the author's.
        bad = RecordHeader.from_bytes(original).with_wrap(
            practice.keys[Scope.CLINICAL], os.urandom(32), practice.colleague.identity)
        accepted = rekey(practice.colleague, record, bad.to_bytes())
        assert accepted.status_code == 200, accepted.text
        assert stored_header(practice.kine, record) == bad.to_bytes()
        with pytest.raises(DecryptionError):
            read(practice, record, wrapper=practice.colleague)

        # Only the owner restores.
        url = f"/v1/records/{record.record_id}/versions/1/wrap"
        refused = practice.colleague.post(url, json={"key_version": 1})
        assert refused.status_code == 403, refused.text
        restored = practice.kine.post(url, json={"key_version": 1})
        assert restored.status_code == 200, restored.text
        assert unb64(restored.json()["header"]) == original
        assert stored_header(practice.kine, record) == original
        assert read(practice, record) == b"bilan kine"
        audit = practice.kine.get("/v1/records/audit", params={
            "file_id": str(practice.file_id), "scope": "clinical"}).json()
        events = [(e["action"], e["target"]) for e in audit["events"]]
        target = f"record:{record.record_id}/v1"
        assert ("record.rekey", target) in events
        assert ("record.wrap.restore", target) in events
        # The colleague's refused restore is audited too.
        assert ("record.wrap.restore", target, "denied") in [
            (e["action"], e["target"], e["outcome"]) for e in audit["events"]]

    def test_a_key_version_never_kept_is_404(self, practice):
        record = add_record(practice.kine, practice.file_id, practice.keys, "clinical")
        response = practice.kine.post(f"/v1/records/{record.record_id}/versions/1/wrap",
                                      json={"key_version": 7})
        assert response.status_code == 404, response.text
