"""Audit visible by scope, through the real services and the client's ``collect``.

The records-api and the kms keep one chain per scope of a file (``file:<id>:<scope>``):
a patient or a parent, who holds only the ``shared`` scope, reads the chains of that
scope and never learns the ids, counts or timing of clinical records; they still see every
access to the records they share (the practitioner's reads). A refused access to an
existing record (an outsider, a revoked grantee, a patient deleting the practitioner's
record) is audited too, as a ``denied`` event in the record's scope chain, which the owner
reads (``docs/sharing.md``, audit).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ecrin_client.audit import AuditTrail, collect
from ecrin_client.profile import Profile, StoredTokens
from ecrin_client.transport import GatewayTransport

from ecrin_e2ee import Scope, ScopeKey
from tests.adversarial.world import StoredRecord, add_record, share
from tests.support.users import HTTP, ApiUser, sign_up

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


@dataclass
class File:
    owner: ApiUser
    patient: ApiUser
    file_id: uuid.UUID
    keys: dict[Scope, ScopeKey]
    clinical: StoredRecord
    shared: StoredRecord


def trail_of(user: ApiUser, file_id: uuid.UUID, home: Path) -> AuditTrail:
    """What ``ecrin audit`` collects for ``user`` (a device of its own under ``home``)."""
    async def go() -> AuditTrail:
        tokens = StoredTokens(access_token=user.tokens["access_token"],
                              refresh_token=user.tokens["refresh_token"],
                              session_id=user.tokens["session_id"])
        transport = GatewayTransport(user.gateway, tokens=tokens, on_tokens=lambda _t: None)
        try:
            return await collect(transport, str(file_id), Profile(home))
        finally:
            await transport.aclose()

    return asyncio.run(go())


def read(user: ApiUser, record: StoredRecord) -> list[int]:
    return [user.get(f"/v1/records/{record.record_id}").status_code,
            user.get(f"/v1/records/{record.record_id}/versions/1/content").status_code]


@pytest.fixture
def file(stack) -> File:
    gateway = stack.url("gateway")
    owner, patient = sign_up(gateway), sign_up(gateway, "patient")
    file_id, keys = owner.create_file("Audit")
    share(owner, patient, file_id, keys, "patient", {"shared": "append"})
    clinical = add_record(owner, file_id, keys, "clinical", b"bilan clinique")
    shared = add_record(owner, file_id, keys, "shared", b"programme d'exercices")
    assert read(owner, clinical) == read(owner, shared) == [200, 200]
    assert owner.get(f"/v1/keyrings/{file_id}/entries").status_code == 200
    assert read(patient, shared) == [200, 200]
    assert patient.get(f"/v1/keyrings/{file_id}/entries").status_code == 200
    return File(owner, patient, file_id, keys, clinical, shared)


def events(trail: AuditTrail) -> list[tuple[str, str, str, str]]:
    return [(e["actor"], e["action"], e["target"], e["outcome"]) for e in trail.events()]


class TestAPatientSeesOnlyTheSharedScope:
    def test_no_clinical_record_reaches_the_patient(self, file: File, tmp_path):
        trail = trail_of(file.patient, file.file_id, tmp_path / "patient")
        assert trail.verified
        shown = json.dumps(trail.to_json(), default=str)
        assert str(file.clinical.record_id) not in shown
        assert str(file.shared.record_id) in shown
        assert "clinical" not in {e["target"].split(":")[0] for e in trail.events()}
        for path in (f"/v1/records/audit?file_id={file.file_id}&scope=clinical",
                     f"/v1/keyrings/{file.file_id}/audit?scope=clinical"):
            assert file.patient.get(path).status_code == 404, path

    def test_the_patient_sees_who_read_their_shared_records(self, file: File, tmp_path):
        trail = trail_of(file.patient, file.file_id, tmp_path / "patient")
        owner, target = str(file.owner.account_id), f"record:{file.shared.record_id}/v1"
        seen = events(trail)
        assert (owner, "record.read", target, "ok") in seen
        assert (owner, "record.content.read", target, "ok") in seen
        assert (str(file.patient.account_id), "record.content.read", target, "ok") in seen
        released = {e["target"] for e in trail.events() if e["action"] == "keys.release"
                    and e["actor"] == owner}
        assert released == {"shared:v1"}

    def test_the_owner_sees_every_scope(self, file: File, tmp_path):
        trail = trail_of(file.owner, file.file_id, tmp_path / "owner")
        assert trail.verified
        chains = {(c.service, c.chain) for c in trail.chains if c.available}
        for service in ("kms", "records-api"):
            for scope in ("clinical", "shared", "administrative"):
                assert (service, f"file:{file.file_id}:{scope}") in chains
        seen = events(trail)
        owner = str(file.owner.account_id)
        assert (owner, "record.content.read", f"record:{file.clinical.record_id}/v1",
                "ok") in seen
        assert {"clinical:v1", "shared:v1", "administrative:v1"} <= {
            e["target"] for e in trail.events() if e["action"] == "keys.release"}


class TestRefusedAccessesAreAudited:
    def test_an_outsider_a_revoked_grantee_and_a_forbidden_delete(self, file: File,
                                                                  stack, tmp_path):
        gateway = stack.url("gateway")
        outsider, parent = sign_up(gateway), sign_up(gateway, "representative")
        until = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
        grant_id = share(file.owner, parent, file.file_id, file.keys, "parent",
                         {"shared": "read"}, valid_until=until)
        assert HTTP.delete(f"{gateway}/v1/grants/{grant_id}",
                           headers=file.owner.headers).status_code == 200
        assert read(outsider, file.clinical) == [404, 404]
        assert read(parent, file.shared) == [404, 404]
        refused = HTTP.delete(f"{gateway}/v1/records/{file.shared.record_id}",
                              headers={**file.patient.headers, "If-Match": '"v1"'})
        assert refused.status_code == 403, refused.text
        assert outsider.get(f"/v1/keyrings/{file.file_id}/entries").status_code == 404
        # An id that names no record is not audited (no amplification for guessing).
        assert outsider.get(f"/v1/records/{uuid.uuid4()}").status_code == 404

        seen = events(trail_of(file.owner, file.file_id, tmp_path / "owner"))
        clinical, shared = (f"record:{r.record_id}" for r in (file.clinical, file.shared))
        for who, action, target in (
                (outsider, "record.read", f"{clinical}/v1"),
                (outsider, "record.content.read", f"{clinical}/v1"),
                (parent, "record.read", f"{shared}/v1"),
                (parent, "record.content.read", f"{shared}/v1"),
                (file.patient, "record.delete", shared),
                (outsider, "keys.release", f"file:{file.file_id}")):
            assert (str(who.account_id), action, target, "denied") in seen, (action, target)
        assert not [e for e in seen if e[0] == str(outsider.account_id) and e[3] == "ok"]
        # The patient sees the refusals on their shared records, not the clinical one.
        mine = events(trail_of(file.patient, file.file_id, tmp_path / "patient"))
        assert (str(parent.account_id), "record.read", f"{shared}/v1", "denied") in mine
        assert (str(file.patient.account_id), "record.delete", shared, "denied") in mine
        assert not [e for e in mine if clinical in e[2]]
