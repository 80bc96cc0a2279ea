"""What the SDK sends per operation, and the guarantees that let it send so little (issue 21).

A create is one request in steady state: the SDK no longer asks for pending rotations
first, because the records API refuses a write under a key a leaver may hold, and the SDK
then rotates (or fetches the newer key) and writes again. A revoked member is refused at
once by the records API and the kms: the sharing service tells them when a grant ends.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime

import httpx
import pytest
from ecrin_client import Records
from ecrin_client.kine import PatientIdentity, RecordMetadata
from ecrin_client.sharing import Sharing

from ecrin_e2ee import RecordEncryptor, Scope
from tests.e2e.records_support import new_practitioner, pin_as_listed
from tests.support.users import HTTP, b64, sign_up

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


class Recording(httpx.AsyncHTTPTransport):
    """Every request the SDK sends: (method, path, status)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        self.sent.append((request.method, request.url.path, response.status_code))
        return response


def meta(title: str, size: int) -> RecordMetadata:
    return RecordMetadata(title=title, kind="document", content_type="application/pdf",
                          size=size, created_at=datetime.now(UTC))


def test_a_create_and_a_small_read_are_one_request_each(stack, tmp_path):
    async def scenario():
        kine = await new_practitioner(stack.url("gateway"), tmp_path / "kine")
        wire = Recording()
        async with kine.client(transport=wire) as kc:
            records, patients = await kine.unlocked(kc)
            patient = await patients.create(PatientIdentity(name="Une Requête",
                                                            birth_date=date(1980, 1, 1)))
            await records.create(patient.file_id, "clinical", meta("first", 6), b"%PDF-0")
            for i in range(3):
                wire.sent.clear()
                made = await records.create(patient.file_id, "clinical", meta(f"n{i}", 6),
                                            b"%PDF-1")
                assert wire.sent == [("POST", "/v1/records", 201)]
                wire.sent.clear()
                info, data = await records.read(made.record_id)
                assert data == b"%PDF-1" and info.version == 1
                assert wire.sent == [("GET", f"/v1/records/{made.record_id}", 200)]

    asyncio.run(scenario())


def test_a_write_under_the_old_key_is_refused_until_the_rotation_is_done(stack, tmp_path):
    """The attacker's window: a member was revoked, the scope's key not rotated yet. The
    records API itself refuses the owner's new content under the old key (a client that
    skipped the check cannot store it); the SDK rotates, then writes under version 2."""

    async def scenario():
        gateway = stack.url("gateway")
        kine = await new_practitioner(gateway, tmp_path / "kine")
        parent = sign_up(gateway, "patient")
        wire = Recording()
        async with kine.client(transport=wire) as kc:
            records, patients = await kine.unlocked(kc)
            patient = await patients.create(PatientIdentity(name="Fenêtre Rotation",
                                                            birth_date=date(2016, 6, 6)))
            fid = uuid.UUID(patient.file_id)
            kc.pin(str(parent.account_id), parent.identity.public_identity().fingerprint_hex())
            grant = await Sharing(records).grant(fid, str(parent.account_id), "patient")
            old_key = await records.scope_key(fid, Scope.SHARED)
            assert old_key.version == 1
            # Revoked straight through the API: no rotation done by this device.
            revoked = await kc.transport.request("DELETE", f"/v1/grants/{grant.grant_id}")
            assert revoked.status_code == 200

            # A client that ignores the queue: its write under version 1 is refused at once.
            rid = uuid.uuid4()
            enc = RecordEncryptor(file_id=fid, record_id=rid, record_version=1,
                                  scope_key=old_key, author=records.identity,
                                  metadata=meta("skip", 6).to_json())
            blob = b"".join(enc.encrypt((b"%PDF-9",)))
            raw = await kc.transport._authorised(
                "POST", "/v1/records", auth=True, headers={"idempotency-key": uuid.uuid4().hex},
                json={"record_id": str(rid), "file_id": str(fid), "scope": "shared",
                      "header": b64(enc.header.to_bytes()),
                      "metadata_ciphertext": b64(enc.metadata_ciphertext),
                      "content_length": len(blob), "content": b64(blob)})
            assert raw.status_code == 409, raw.text
            assert raw.json()["type"].endswith("/rotation-pending")
            got = await kc.transport._authorised("GET", f"/v1/records/{rid}", auth=True)
            assert got.status_code == 404  # nothing stored

            # The SDK's create: refused, rotates, writes again under the new version.
            wire.sent.clear()
            written = await records.create(fid, "shared", meta("après", 6), b"%PDF-1")
            assert written.key_version == 2
            assert wire.sent[0] == ("POST", "/v1/records", 409)
            assert wire.sent[-1] == ("POST", "/v1/records", 201)
            assert await Sharing(records).pending(fid) == []
            info, data = await records.read(written.record_id)
            assert info.key_version == 2 and data == b"%PDF-1"

    asyncio.run(scenario())


def test_a_device_that_missed_a_rotation_fetches_the_new_key(stack, tmp_path):
    async def scenario():
        gateway = stack.url("gateway")
        kine = await new_practitioner(gateway, tmp_path / "kine")
        parent = sign_up(gateway, "patient")
        wire = Recording()
        async with kine.client(transport=wire) as kc:
            records, patients = await kine.unlocked(kc)
            patient = await patients.create(PatientIdentity(name="Autre Appareil",
                                                            birth_date=date(2015, 5, 5)))
            fid = patient.file_id
            await records.create(fid, "shared", meta("v1", 6), b"%PDF-1")  # knows version 1
            kc.pin(str(parent.account_id), parent.identity.public_identity().fingerprint_hex())
            other = Records(kc, records.identity)  # another device of the same practitioner
            grant = await Sharing(other).grant(fid, str(parent.account_id), "patient")
            await Sharing(other).revoke(grant.grant_id)  # rotates shared to version 2
            wire.sent.clear()
            written = await records.create(fid, "shared", meta("v2", 6), b"%PDF-2")
            assert written.key_version == 2
            assert wire.sent[0] == ("POST", "/v1/records", 409)
            assert wire.sent[-1] == ("POST", "/v1/records", 201)

    asyncio.run(scenario())


def test_a_revoked_member_is_refused_at_once(stack, tmp_path):
    """No waiting for a cached answer to run out: the first request after the revocation
    is refused by the records API and by the kms."""

    async def scenario():
        gateway = stack.url("gateway")
        kine = await new_practitioner(gateway, tmp_path / "kine")
        colleague = await new_practitioner(gateway, tmp_path / "colleague")
        async with kine.client() as kc, colleague.client() as cc:
            records, patients = await kine.unlocked(kc)
            patient = await patients.create(PatientIdentity(name="Révocation Immédiate",
                                                            birth_date=date(1970, 7, 7)))
            fid = patient.file_id
            note = await records.create(fid, "clinical", meta("bilan", 6), b"%PDF-1")
            await pin_as_listed(kc, colleague.account_id)
            grant = await Sharing(records).grant(fid, colleague.account_id, "care_team")
            for _ in range(3):  # warm both caches
                read = await cc.transport._authorised("GET", f"/v1/records/{note.record_id}",
                                                      auth=True)
                keys = await cc.transport._authorised("GET", f"/v1/keyrings/{fid}/entries",
                                                      auth=True)
                assert (read.status_code, keys.status_code) == (200, 200)
            revoked = await kc.transport.request("DELETE", f"/v1/grants/{grant.grant_id}")
            assert revoked.status_code == 200
            read = await cc.transport._authorised("GET", f"/v1/records/{note.record_id}",
                                                  auth=True)
            keys = await cc.transport._authorised("GET", f"/v1/keyrings/{fid}/entries",
                                                  auth=True)
            assert (read.status_code, keys.status_code) == (404, 404)

    asyncio.run(scenario())


def test_the_gateway_never_forwards_the_access_change_route(stack, tmp_path):
    gateway = stack.url("gateway")
    user = sign_up(gateway, "practitioner")
    for path in ("/internal/access-changed", "/v1/internal/access-changed",
                 "/v1/files/../internal/access-changed",
                 "/v1/records/%2e%2e/internal/access-changed"):
        response = HTTP.post(gateway + path, headers=user.headers,
                             json={"file_ids": [str(uuid.uuid4())]})
        assert response.status_code in {400, 404, 405}, (path, response.status_code)
