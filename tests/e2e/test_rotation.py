"""Rotation through the SDK: after a revocation the remaining members read every record,
the revoked party's keys open no new version, and re-keying leaves content bytes as they
were (compared straight from the records database)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime

import pytest
from ecrin_client import Records
from ecrin_client.kine import PatientIdentity, RecordMetadata
from ecrin_client.sharing import Sharing
from ecrin_client.trust import Untrusted

from ecrin_e2ee import DecryptionError, KeyringEntry, RecordDecryptor, RecordHeader, open_entry
from tests.e2e.records_support import (
    PASSPHRASE,
    ServiceDatabase,
    new_practitioner,
    pin_as_listed,
)
from tests.support.users import sign_up, unb64

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def meta(title: str, size: int) -> RecordMetadata:
    return RecordMetadata(title=title, kind="document", content_type="application/pdf",
                          size=size, created_at=datetime.now(UTC))


def content_rows(db: ServiceDatabase, record_ids: list[str]) -> dict[str, bytes]:
    """Each version's content ciphertext, straight from the records database."""
    out = {}
    for rid in record_ids:
        rows = db.rows("SELECT c.data FROM content_chunks c JOIN record_versions v "
                       "ON v.content_upload_id = c.upload_id WHERE v.record_id = ? "
                       "ORDER BY v.version, c.seq", uuid.UUID(rid))
        out[rid] = b"".join(bytes(r[0]) for r in rows)
    return out


def test_rotation_keeps_records_readable_and_content_untouched(stack, tmp_path):
    async def scenario():
        gateway = stack.url("gateway")
        kine = await new_practitioner(gateway, tmp_path / "kine")
        colleague = await new_practitioner(gateway, tmp_path / "colleague")
        parent_api = sign_up(gateway, "patient")
        async with kine.client() as kc, colleague.client() as cc:
            k_records, k_patients = await kine.unlocked(kc)
            patient = await k_patients.create(PatientIdentity(name="Rotation Test",
                                                              birth_date=date(2015, 5, 5)))
            fid = patient.file_id
            shared = [await k_records.create(fid, "shared", meta(f"doc {i}", 6),
                                             b"%PDF-" + str(i).encode()) for i in range(3)]
            clinical = await k_records.create(fid, "clinical", meta("bilan", 5), b"%PDF-")
            sharing = Sharing(k_records)
            await pin_as_listed(kc, colleague.account_id)
            kc.pin(str(parent_api.account_id), parent_api.identity.public_identity()
                   .fingerprint_hex())
            await sharing.grant(fid, colleague.account_id, "care_team")
            parent_grant = await sharing.grant(fid, str(parent_api.account_id), "patient")
            ids = [r.record_id for r in shared] + [clinical.record_id, patient.identity_record_id]
            db = ServiceDatabase(stack.database_urls["records-api"])
            before = await asyncio.to_thread(content_rows, db, ids)

            _, _, rotations = await sharing.revoke(parent_grant.grant_id)
            assert {(r.scope, r.version) for r in rotations} == {("shared", 2),
                                                                  ("administrative", 2)}
            assert sum(r.rekeyed for r in rotations) == 4  # 3 documents + the identity
            # Re-keying never touches content.
            assert await asyncio.to_thread(content_rows, db, ids) == before
            assert await sharing.pending(fid) == []

            c_records = Records(cc, await cc.unlock(PASSPHRASE))
            # A direct grant binds nobody: the colleague's device accepts the keys the
            # practitioner signed only once the colleague verified the practitioner too.
            with pytest.raises(Untrusted) as untrusted:
                await c_records.read(shared[0].record_id)
            assert kine.account_id in str(untrusted.value) and untrusted.value.exit_code == 7
            await pin_as_listed(cc, kine.account_id)
            c_records = Records(cc, c_records.identity)
            for record in shared:
                info, data = await c_records.read(record.record_id)
                assert info.key_version == 2 and data.startswith(b"%PDF-")
            info, _ = await c_records.read(clinical.record_id)
            assert info.key_version == 1  # clinical was not rotated

            # The revoked party kept its old shared key: it opens no version-2 header.
            old_entry = next(KeyringEntry.from_json(e) for e in parent_api.get(
                f"/v1/keyrings/{fid}/entries").json().get("entries", [])) \
                if parent_api.get(f"/v1/keyrings/{fid}/entries").status_code == 200 else None
            assert old_entry is None  # and the kms releases nothing to it any more
            raw = k_records.client.transport
            body = (await raw.request("GET", f"/v1/records/{shared[0].record_id}")).json()
            header = RecordHeader.from_bytes(unb64(body["version"]["header"]))
            assert header.key_version == 2
            v1_key = await k_records.scope_key(uuid.UUID(fid), header.scope, 1)
            with pytest.raises(DecryptionError):
                RecordDecryptor(header, unb64(body["version"]["metadata_ciphertext"]),
                                scope_key=v1_key, author=kine_identity(k_records),
                                wrapper=kine_identity(k_records))
            # The new version was sealed only to the remaining members.
            entries = (await raw.request("GET", f"/v1/keyrings/{fid}/entries",
                                         params={"scope": "shared", "version": 2})).json()
            mine = KeyringEntry.from_json(entries["entries"][0])
            assert open_entry(mine, k_records.identity, kine_identity(k_records)).version == 2
            members = {m["account_id"] for m in (await raw.request(
                "GET", f"/v1/files/{fid}/members")).json()}
            assert str(parent_api.account_id) not in members

    asyncio.run(scenario())


def kine_identity(records: Records):
    return records.identity.public_identity()


def test_the_next_write_rotates_first(stack, tmp_path):
    """A revocation made elsewhere (straight through the API, no rotation) is finished by
    the practitioner's next write: the new record is sealed under the new key version."""

    async def scenario():
        gateway = stack.url("gateway")
        kine = await new_practitioner(gateway, tmp_path / "kine")
        parent_api = sign_up(gateway, "patient")
        async with kine.client() as kc:
            k_records, k_patients = await kine.unlocked(kc)
            patient = await k_patients.create(PatientIdentity(name="Rotation Avant Ecriture",
                                                              birth_date=date(2016, 6, 6)))
            fid = patient.file_id
            kc.pin(str(parent_api.account_id), parent_api.identity.public_identity()
                   .fingerprint_hex())
            sharing = Sharing(k_records)
            grant = await sharing.grant(fid, str(parent_api.account_id), "patient")
            raw = k_records.client.transport
            revoked = await raw.request("DELETE", f"/v1/grants/{grant.grant_id}")
            assert revoked.status_code == 200
            assert {r["scope"] for r in await sharing.pending(fid)} == {"shared", "administrative"}
            written = await k_records.create(fid, "shared", meta("après", 6), b"%PDF-1")
            assert await sharing.pending(fid) == []
            info, data = await k_records.read(written.record_id)
            assert info.key_version == 2 and data == b"%PDF-1"

    asyncio.run(scenario())
