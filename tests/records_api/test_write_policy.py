"""Who may write what (``records_api.records.policy``, docs/records.md): the matrix itself,
then each write route, the re-key rules, the kept wraps and the owner's restore."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from ecrin_e2ee import EncryptedRecord, RecordDecryptor, RecordHeader, Scope, ScopeKey
from ecrin_e2ee.record_header import unwrap_dek
from ecrin_platform.access import FileAccess
from records_api.models import ReplacedWrap
from records_api.records.audit import AUDIT, scope_chain
from records_api.records.errors import ReadOnlyScope, RecordNotFound, WriteNotPermitted
from records_api.records.policy import Write, allows, permit
from records_api.records.purge import purge
from records_api.records.service import now
from tests.records_api.conftest import Actor, Practice, b64, unb64

GRANTEES = ("replacement", "secretary", "patient", "parent", "guardian")
RELATIONSHIPS = ("owner", "care_team", *GRANTEES)
#: (write, own) -> relationships allowed; docs/records.md, "Who may write what".
MATRIX: dict[tuple[Write, bool], set[str]] = {
    (Write.CREATE, True): set(RELATIONSHIPS),
    (Write.VERSION, True): set(RELATIONSHIPS),
    (Write.VERSION, False): {"owner", "care_team"},
    (Write.DELETE, True): set(RELATIONSHIPS),
    (Write.DELETE, False): {"owner"},
    (Write.UPLOAD, True): set(RELATIONSHIPS),
    (Write.UPLOAD, False): set(),
    (Write.REKEY, True): {"owner", "care_team"},
    (Write.REKEY, False): {"owner", "care_team"},
    (Write.RESTORE_WRAP, True): {"owner"},
    (Write.RESTORE_WRAP, False): {"owner"},
}


class TestTheMatrix:
    @pytest.mark.parametrize("relationship", RELATIONSHIPS)
    @pytest.mark.parametrize(("write", "own"), list(MATRIX))
    def test_each_cell(self, relationship: str, write: Write, own: bool):
        assert allows(relationship, write, own=own) is (relationship in MATRIX[(write, own)])

    def test_an_unknown_relationship_only_writes_its_own(self):
        assert [w for w in Write if allows("someone-new", w, own=True)] == [
            Write.CREATE, Write.UPLOAD, Write.VERSION, Write.DELETE]
        assert [w for w in Write if allows("someone-new", w, own=False)] == [Write.CREATE]

    def test_permit_says_404_then_403(self):
        file_id, account = uuid.uuid4(), uuid.uuid4()
        patient = FileAccess(file_id, account, "patient",
                             {"shared": "append", "administrative": "read"})
        with pytest.raises(RecordNotFound):
            permit(None, "shared", Write.CREATE)
        with pytest.raises(RecordNotFound):
            permit(patient, "clinical", Write.CREATE)
        with pytest.raises(ReadOnlyScope):
            permit(patient, "administrative", Write.CREATE)
        with pytest.raises(WriteNotPermitted) as refused:
            permit(patient, "shared", Write.DELETE, own=False)
        assert refused.value.extra == {"relationship": "patient", "action": "delete"}
        assert permit(patient, "shared", Write.DELETE, own=True) is patient


# -- helpers -----------------------------------------------------------------------------------


def member(practice: Practice, relationship: str, **scopes: str) -> Actor:
    actor = practice.actor(relationship)
    practice.sharing.grant(practice.file_id, actor.id, relationship, **scopes)
    return actor


def patient_of(practice: Practice) -> Actor:
    return member(practice, "patient", shared="append", administrative="read")


def colleague_of(practice: Practice) -> Actor:
    return member(practice, "care_team", clinical="append", shared="append",
                  administrative="append")


async def add_as(practice: Practice, actor: Actor, scope: str = "clinical",
                 content: bytes = b"bilan") -> EncryptedRecord:
    record = practice.encrypt(content, scope=scope, author=actor)
    created = await practice.create(record, actor=actor)
    assert created.status_code == 201, created.text
    assert (await practice.upload(record, actor=actor)).status_code == 204
    return record


async def delete(practice: Practice, actor: Actor, record: EncryptedRecord):
    return await practice.client.delete(f"/v1/records/{record.header.record_id}",
                                        headers=practice.headers(actor, **{"If-Match": '"v1"'}))


async def new_version(practice: Practice, actor: Actor, record: EncryptedRecord):
    v2 = practice.encrypt(b"v2", scope=record.header.scope.value,
                          record_id=record.header.record_id, version=2, author=actor)
    body = {k: v for k, v in Practice.body(v2).items()
            if k in ("header", "metadata_ciphertext", "content_length")}
    return await practice.client.post(f"/v1/records/{record.header.record_id}/versions",
                                      json=body,
                                      headers=practice.headers(actor, **{"If-Match": '"v1"'}))


async def rekey(practice: Practice, actor: Actor, *items: tuple[uuid.UUID, bytes]):
    return await practice.client.post("/v1/records/rekey", headers=practice.headers(actor),
                                      json={"items": [{"record_id": str(rid), "version": 1,
                                                       "header": b64(header)}
                                                      for rid, header in items]})


def rewrap(practice: Practice, record: EncryptedRecord, signer: Actor, *,
           key: ScopeKey | None = None, dek: bytes | None = None) -> bytes:
    """The record's header with a new wrap under ``key`` (default: the scope's version 1
    key) of ``dek`` (default: the record's own DEK), signed by ``signer``."""
    scope = record.header.scope.value
    dek = dek if dek is not None else unwrap_dek(record.header, practice.keys[scope])
    return record.header.with_wrap(key or practice.keys[scope], dek, signer.keys).to_bytes()


async def stored_header(practice: Practice, record: EncryptedRecord) -> bytes:
    got = await practice.client.get(f"/v1/records/{record.header.record_id}/versions/1",
                                    headers=practice.headers())
    assert got.status_code == 200, got.text
    return unb64(got.json()["header"])


async def kept(practice: Practice, record: EncryptedRecord) -> list[tuple]:
    async with practice.app.state.sessionmaker() as session:
        rows = await session.execute(
            select(ReplacedWrap.version, ReplacedWrap.key_version, ReplacedWrap.header,
                   ReplacedWrap.replaced_by, ReplacedWrap.cause)
            .where(ReplacedWrap.record_id == record.header.record_id)
            .order_by(ReplacedWrap.id))
        return [tuple(r) for r in rows]


async def wrap_events(practice: Practice) -> list[tuple[str, str]]:
    """The clinical scope's re-key and restore audit events, in order."""
    async with practice.app.state.sessionmaker() as session:
        events = await AUDIT.chain(session, scope_chain(practice.file_id, "clinical"))
    return [(e["action"], e["target"]) for e in events
            if e["action"] in ("record.rekey", "record.wrap.restore")]


def problem(response) -> str:
    return response.json()["type"].rsplit("/", 1)[1]


# -- the routes --------------------------------------------------------------------------------


class TestDelete:
    async def test_a_patient_deletes_its_own_but_not_the_practitioners(self, practice):
        patient = patient_of(practice)
        theirs = await add_as(practice, practice.owner, "shared")
        refused = await delete(practice, patient, theirs)
        assert refused.status_code == 403 and problem(refused) == "write-not-permitted"
        assert await stored_header(practice, theirs) == theirs.header.to_bytes()
        own = await add_as(practice, patient, "shared")
        assert (await delete(practice, patient, own)).status_code == 204

    async def test_a_colleague_does_not_delete_what_others_wrote(self, practice):
        colleague = colleague_of(practice)
        record = await add_as(practice, practice.owner)
        assert (await delete(practice, colleague, record)).status_code == 403
        own = await add_as(practice, colleague)
        assert (await delete(practice, colleague, own)).status_code == 204

    async def test_the_owner_deletes_anyones(self, practice):
        patient = patient_of(practice)
        record = await add_as(practice, patient, "shared")
        assert (await delete(practice, practice.owner, record)).status_code == 204

    async def test_no_read_access_is_still_404(self, practice):
        secretary = member(practice, "secretary", administrative="append")
        record = await add_as(practice, practice.owner)
        assert (await delete(practice, secretary, record)).status_code == 404


class TestNewVersion:
    @pytest.mark.parametrize(("relationship", "status"),
                             [("care_team", 201), ("replacement", 403)])
    async def test_of_the_practitioners_record(self, practice, relationship, status):
        other = member(practice, relationship, clinical="append", shared="append")
        record = await add_as(practice, practice.owner)
        response = await new_version(practice, other, record)
        assert response.status_code == status, response.text

    async def test_a_patient_versions_its_own_only(self, practice):
        patient = patient_of(practice)
        theirs = await add_as(practice, practice.owner, "shared")
        refused = await new_version(practice, patient, theirs)
        assert refused.status_code == 403 and problem(refused) == "write-not-permitted"
        own = await add_as(practice, patient, "shared")
        assert (await new_version(practice, patient, own)).status_code == 201


class TestUpload:
    async def test_only_the_versions_author_uploads_its_content(self, practice):
        colleague = colleague_of(practice)
        record = practice.encrypt(b"pending", author=practice.owner)
        assert (await practice.create(record)).status_code == 201
        refused = await practice.upload(record, actor=colleague)
        assert refused.status_code == 403 and problem(refused) == "write-not-permitted"
        assert (await practice.upload(record)).status_code == 204


class TestHeadersListing:
    async def test_is_for_those_who_re_key(self, practice):
        patient, colleague = patient_of(practice), colleague_of(practice)
        params = {"file_id": str(practice.file_id), "scope": "shared"}
        refused = await practice.client.get("/v1/records/headers", params=params,
                                            headers=practice.headers(patient))
        assert refused.status_code == 403 and problem(refused) == "write-not-permitted"
        allowed = await practice.client.get("/v1/records/headers", params=params,
                                            headers=practice.headers(colleague))
        assert allowed.status_code == 200


# -- re-key ------------------------------------------------------------------------------------


class TestRekeyRules:
    async def test_a_grantee_who_may_append_does_not_re_key(self, practice):
        patient = patient_of(practice)
        record = await add_as(practice, practice.owner, "shared")
        for forged in (rewrap(practice, record, patient),
                       record.header.to_bytes()[:254] + (2).to_bytes(4, "big") + os.urandom(152),
                       record.header.to_bytes()):  # even a no-op
            response = await rekey(practice, patient, (record.header.record_id, forged))
            assert response.status_code == 403 and problem(response) == "write-not-permitted"
        assert await stored_header(practice, record) == record.header.to_bytes()
        assert await kept(practice, record) == []

    async def test_the_wrap_must_be_the_callers(self, practice):
        colleague = colleague_of(practice)
        records = [await add_as(practice, practice.owner) for _ in range(2)]
        response = await rekey(practice, colleague,
                               (records[0].header.record_id, rewrap(practice, records[0],
                                                                     colleague)),
                               (records[1].header.record_id, rewrap(practice, records[1],
                                                                     practice.owner)))
        assert response.status_code == 422, response.text
        body = response.json()
        assert (problem(response), body["item"], body["field"]) == (
            "invalid-header", 1, "wrapper_id")
        # All or nothing: the first item is not written either.
        for record in records:
            assert await stored_header(practice, record) == record.header.to_bytes()
            assert await kept(practice, record) == []

    @pytest.mark.parametrize("key_version", [2, 3, 0xFFFFFFFF])
    async def test_a_key_version_the_kms_does_not_hold_is_409(self, practice, key_version):
        record = await add_as(practice, practice.owner)
        invented = ScopeKey.generate(practice.file_id, Scope.CLINICAL, key_version)
        asked = practice.sharing.fresh_asks
        response = await rekey(practice, practice.owner, (
            record.header.record_id, rewrap(practice, record, practice.owner, key=invented)))
        assert response.status_code == 409, response.text
        assert problem(response) == "key-version-not-current"
        assert (response.json()["item"], response.json()["key_version"]) == (0, 1)
        # A newer version than the cached answer knows is asked again, past the cache.
        assert practice.sharing.fresh_asks == asked + 1
        assert await stored_header(practice, record) == record.header.to_bytes()

    async def test_the_current_version_once_the_kms_holds_it(self, practice):
        record = await add_as(practice, practice.owner)
        v2 = ScopeKey.generate(practice.file_id, Scope.CLINICAL, 2)
        practice.sharing.rotated(practice.file_id, "clinical", 2)
        header = rewrap(practice, record, practice.owner, key=v2)
        response = await rekey(practice, practice.owner, (record.header.record_id, header))
        assert response.status_code == 200, response.text
        assert response.json()["items"][0]["key_version"] == 2
        # Back to version 1 (no longer current) is refused.
        back = rewrap(practice, record, practice.owner)
        assert (await rekey(practice, practice.owner, (record.header.record_id, back))
                ).status_code == 409

    async def test_never_older_than_the_stored_wrap(self, practice):
        v3 = ScopeKey.generate(practice.file_id, Scope.CLINICAL, 3)
        practice.keys["clinical"] = v3  # the record is written under version 3 ...
        practice.sharing.rotated(practice.file_id, "clinical", 3)
        record = await add_as(practice, practice.owner)
        practice.sharing.rotated(practice.file_id, "clinical", 2)  # ... the kms says 2
        v2 = ScopeKey.generate(practice.file_id, Scope.CLINICAL, 2)
        response = await rekey(practice, practice.owner, (
            record.header.record_id, rewrap(practice, record, practice.owner, key=v2)))
        assert response.status_code == 409 and problem(response) == "stale-key-version"

    async def test_a_colleague_re_keys_and_the_replaced_header_is_kept(self, practice):
        colleague = colleague_of(practice)
        record = await add_as(practice, practice.owner)
        header = rewrap(practice, record, colleague)  # same key version: a re-wrap
        response = await rekey(practice, colleague, (record.header.record_id, header))
        assert response.status_code == 200, response.text
        assert response.json()["items"][0]["changed"] is True
        assert await stored_header(practice, record) == header
        assert await kept(practice, record) == [
            (1, 1, record.header.to_bytes(), colleague.id, "rekey")]
        # A retry changes nothing and keeps nothing more.
        again = await rekey(practice, colleague, (record.header.record_id, header))
        assert again.json()["items"][0]["changed"] is False
        assert len(await kept(practice, record)) == 1


# -- restore -----------------------------------------------------------------------------------


class TestRestoreWrap:
    @staticmethod
    async def bad_rekey(practice: Practice, record: EncryptedRecord, colleague: Actor,
                        key: ScopeKey | None = None) -> bytes:
        bad = rewrap(practice, record, colleague, key=key, dek=os.urandom(32))
        response = await rekey(practice, colleague, (record.header.record_id, bad))
        assert response.status_code == 200, response.text
        return bad

    @staticmethod
    async def restore(practice: Practice, actor: Actor, record: EncryptedRecord,
                      key_version: int, version: int = 1):
        return await practice.client.post(
            f"/v1/records/{record.header.record_id}/versions/{version}/wrap",
            json={"key_version": key_version}, headers=practice.headers(actor))

    async def test_the_owner_undoes_a_bad_re_key(self, practice):
        colleague = colleague_of(practice)
        record = await add_as(practice, practice.owner, content=b"bilan initial")
        bad = await self.bad_rekey(practice, record, colleague)
        response = await self.restore(practice, practice.owner, record, 1)
        assert response.status_code == 200, response.text
        assert unb64(response.json()["header"]) == record.header.to_bytes()
        assert response.json()["key_version"] == 1
        assert await stored_header(practice, record) == record.header.to_bytes()
        decryptor = RecordDecryptor(await stored_header(practice, record),
                                    record.metadata_ciphertext,
                                    scope_key=practice.keys["clinical"],
                                    author=practice.owner.keys.public_identity())
        assert b"".join(decryptor.decrypt(record.chunks)) == b"bilan initial"
        # The replaced (bad) header is kept too; the restore is audited.
        assert await kept(practice, record) == [
            (1, 1, record.header.to_bytes(), colleague.id, "rekey"),
            (1, 1, bad, practice.owner.id, "restore")]
        target = f"record:{record.header.record_id}/v1"
        assert await wrap_events(practice) == [("record.rekey", target),
                                               ("record.wrap.restore", target)]
        # Again: nothing left to undo (what a restore took away never comes back).
        again = await self.restore(practice, practice.owner, record, 1)
        assert again.status_code == 200
        assert await stored_header(practice, record) == record.header.to_bytes()
        assert len(await kept(practice, record)) == 2
        assert len(await wrap_events(practice)) == 2

    async def test_after_a_rotation_the_older_wrap_comes_back_and_is_re_keyed_again(
            self, practice):
        colleague = colleague_of(practice)
        record = await add_as(practice, practice.owner)
        v2 = ScopeKey.generate(practice.file_id, Scope.CLINICAL, 2)
        practice.sharing.rotated(practice.file_id, "clinical", 2)
        await self.bad_rekey(practice, record, colleague, key=v2)
        assert (await self.restore(practice, practice.owner, record, 1)).status_code == 200
        got = await practice.client.get(f"/v1/records/{record.header.record_id}",
                                        headers=practice.headers())
        assert got.json()["version"]["key_version"] == 1
        # Listed again for re-keying, and re-keyed from 1 to the current 2.
        listed = await practice.client.get("/v1/records/headers", headers=practice.headers(),
                                           params={"file_id": str(practice.file_id),
                                                   "scope": "clinical",
                                                   "below_key_version": 2})
        assert [i["record_id"] for i in listed.json()["items"]] == [
            str(record.header.record_id)]
        good = rewrap(practice, record, practice.owner, key=v2)
        assert (await rekey(practice, practice.owner, (record.header.record_id, good))
                ).status_code == 200

    @pytest.mark.parametrize(("relationship", "status"),
                             [("care_team", 403), ("replacement", 403), ("patient", 404)])
    async def test_owner_only(self, practice, relationship, status):
        colleague = colleague_of(practice)
        other = member(practice, relationship, shared="append",
                       **({} if relationship == "patient" else {"clinical": "append"}))
        record = await add_as(practice, practice.owner)
        bad = await self.bad_rekey(practice, record, colleague)
        response = await self.restore(practice, other, record, 1)
        assert response.status_code == status, response.text
        assert await stored_header(practice, record) == bad

    async def test_a_key_version_never_replaced_is_404(self, practice):
        record = await add_as(practice, practice.owner)
        response = await self.restore(practice, practice.owner, record, 1)
        assert response.status_code == 404 and problem(response) == "wrap-not-kept"
        missing = await self.restore(practice, practice.owner, record, 1, version=2)
        assert missing.status_code == 404 and problem(missing) == "not-found"

    @pytest.mark.parametrize("body", [{}, {"key_version": 0}, {"key_version": 1 << 32},
                                      {"key_version": 1, "header": "x"}])
    async def test_bad_bodies_are_422(self, practice, body):
        record = await add_as(practice, practice.owner)
        response = await practice.client.post(
            f"/v1/records/{record.header.record_id}/versions/1/wrap", json=body,
            headers=practice.headers())
        assert response.status_code == 422

    async def test_kept_wraps_go_with_the_purge(self, practice):
        colleague = colleague_of(practice)
        record = await add_as(practice, practice.owner)
        await self.bad_rekey(practice, record, colleague)
        assert (await delete(practice, practice.owner, record)).status_code == 204
        settings = practice.app.state.settings
        later = now() + timedelta(seconds=settings.purge_after_s + 1)
        assert (await purge(practice.app.state.sessionmaker, settings, at=later)).records >= 1
        assert await kept(practice, record) == []

    async def test_kept_wraps_of_an_abandoned_pending_version_are_dropped(self, practice):
        colleague = colleague_of(practice)
        record = await add_as(practice, practice.owner)
        rid = record.header.record_id
        pending = practice.encrypt(b"v2", record_id=rid, version=2)
        body = {k: v for k, v in Practice.body(pending).items()
                if k in ("header", "metadata_ciphertext", "content_length")}
        headers = practice.headers(**{"If-Match": '"v1"'})
        assert (await practice.client.post(f"/v1/records/{rid}/versions", json=body,
                                           headers=headers)).status_code == 201
        rewrapped = RecordHeader.from_bytes(pending.header.to_bytes()).with_wrap(
            practice.keys["clinical"], os.urandom(32), colleague.keys)
        response = await practice.client.post("/v1/records/rekey", headers=practice.headers(
            colleague), json={"items": [{"record_id": str(rid), "version": 2,
                                         "header": b64(rewrapped.to_bytes())}]})
        assert response.status_code == 200, response.text
        assert [k[0] for k in await kept(practice, record)] == [2]
        replacement = practice.encrypt(b"v2 again", record_id=rid, version=2)
        body = {k: v for k, v in Practice.body(replacement).items()
                if k in ("header", "metadata_ciphertext", "content_length")}
        assert (await practice.client.post(f"/v1/records/{rid}/versions", json=body,
                                           headers=headers)).status_code == 201
        assert await kept(practice, record) == []
