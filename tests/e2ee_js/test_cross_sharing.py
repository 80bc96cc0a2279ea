"""Sharing across implementations, through the real services: a rotation done by one SDK is
followed by the other, and an invitation made by one is accepted by the other — both ways.

Accounts verify each other as people do (each pins the fingerprint the other's own device
shows), so every key a device uses passes its own trust rule (docs/protocol.md, trust): the
keyring entries a rotation signs, the headers it re-wraps, an inviter bound by the code and
an invitee bound by its proof, each made by one implementation and checked by the other.
"""

from __future__ import annotations

import datetime as dt

import pytest
from ecrin_client.kine import PatientIdentity, RecordMetadata

from tests.e2ee_js.cross_devices import PyDevice, TsDevice, kdf_env, pin_each_other

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

NOTE = '{"date":"2026-03-02","notes":"bilan initial"}'


def meta(title: str, kind: str, size: int) -> RecordMetadata:
    return RecordMetadata(title=title, kind=kind, content_type="application/json", size=size,
                          created_at=dt.datetime.now(dt.UTC))


@pytest.fixture(scope="module", autouse=True)
def _cheap_kdf() -> None:
    kdf_env()


def _trio(stack, home, owner_device, colleague_device, leaving_device):
    """An owner, a colleague and a member about to leave, each on its own device (Python or
    TypeScript), the owner and each of the others pinned to each other."""
    server = stack.url("gateway")
    owner = owner_device.signup(server, home / "owner")
    colleague = colleague_device.signup(server, home / "colleague")
    leaving = leaving_device.signup(server, home / "leaving")
    pin_each_other(owner, colleague)
    pin_each_other(owner, leaving)
    return owner, colleague, leaving


def _care_team_file(stack, home, colleague_device, leaving_device, name: str, year: int):
    """A Python owner's file with a note, shared with a colleague and a member about to
    leave (both care team): (owner, colleague, leaving, file id, note id, leaving's grant)."""
    owner, colleague, leaving = _trio(stack, home, PyDevice, colleague_device, leaving_device)

    async def share(records):
        patient = await owner.patients(records).create(
            PatientIdentity(name=name, birth_date=dt.date(year, 1, 1)))
        note = await records.create(patient.file_id, "clinical",
                                    meta("Bilan", "bilan", len(NOTE)), NOTE.encode())
        sharing = owner.sharing(records)
        await sharing.grant(patient.file_id, colleague.account_id, "care_team")
        grant = await sharing.grant(patient.file_id, leaving.account_id, "care_team")
        return patient.file_id, note.record_id, grant.grant_id

    return (owner, colleague, leaving, *owner.run(share))


class TestPythonRotatesTypeScriptFollows:
    @pytest.fixture(scope="class")
    @classmethod
    def rotated(cls, stack, tmp_path_factory):
        owner, colleague, _, file_id, note_id, grant_id = _care_team_file(
            stack, tmp_path_factory.mktemp("py-rotates"), TsDevice, PyDevice, "Rotation Py", 1970)
        before = colleague.run("read-record", record_id=note_id)

        async def revoke(records):
            _, _, rotations = await owner.sharing(records).revoke(grant_id)
            return {r.scope: (r.version, r.rekeyed) for r in rotations}

        rotations = owner.run(revoke)
        return owner, colleague, file_id, note_id, before, rotations

    def test_python_rotated_every_scope(self, rotated):
        *_, rotations = rotated
        assert {scope: version for scope, (version, _) in rotations.items()} == \
            {"clinical": 2, "shared": 2, "administrative": 2}
        assert rotations["clinical"][1] >= 1  # the note's header was re-wrapped

    def test_typescript_reads_the_rekeyed_record(self, rotated):
        _, colleague, _, note_id, before, _ = rotated
        after = colleague.run("read-record", record_id=note_id)
        assert (before["key_version"], after["key_version"]) == (1, 2)
        assert after["text"] == before["text"] == NOTE

    def test_typescript_overview_marks_each_member_by_the_trust_rule(self, rotated):
        owner, colleague, file_id, *_ = rotated
        overview = colleague.run("overview", file_id=file_id)
        trust = {g["grantee_id"]: (g["trust"], g["status"]) for g in overview["grants"]}
        assert trust.pop(colleague.account_id) == ("self", "active")
        assert trust.pop(owner.account_id) == ("verified", "active")
        # The revoked member: never verified on the colleague's device.
        assert list(trust.values()) == [("UNVERIFIED", "revoked")]
        assert overview["invitations"] == []  # only the owner sees invitations

    def test_typescript_writes_with_the_new_key_and_python_reads_it(self, rotated):
        owner, colleague, file_id, *_ = rotated
        written = colleague.run("create-record", file_id=file_id, scope="clinical",
                                title="Séance", kind="session-note", text='{"notes":"après"}')
        assert written["key_version"] == 2

        async def read(records):
            return await records.read(written["record_id"])

        info, content = owner.run(read)
        assert (info.key_version, info.author_id, content) == \
            (2, colleague.account_id, '{"notes":"après"}'.encode())


class TestTypeScriptRotatesPythonFollows:
    @pytest.fixture(scope="class")
    @classmethod
    def rotated(cls, stack, tmp_path_factory):
        owner, colleague, leaving = _trio(stack, tmp_path_factory.mktemp("ts-rotates"),
                                          TsDevice, PyDevice, TsDevice)
        file_id = owner.run("create-patient", name="Rotation Ts",
                            birth_date="1971-01-01")["file_id"]
        note_id = owner.run("create-record", file_id=file_id, scope="clinical", title="Bilan",
                            kind="bilan", text=NOTE)["record_id"]
        owner.run("grant", file_id=file_id, account_id=colleague.account_id,
                  relationship="care_team")
        grant_id = owner.run("grant", file_id=file_id, account_id=leaving.account_id,
                             relationship="care_team")["grant_id"]
        assert leaving.run("read-record", record_id=note_id)["text"] == NOTE

        async def read(records):
            return await records.read(note_id)

        before = colleague.run(read)
        revoked = owner.run("revoke", grant_id=grant_id)
        return owner, colleague, leaving, file_id, note_id, before, revoked

    def test_typescript_rotated_every_scope(self, rotated):
        *_, revoked = rotated
        assert revoked["what"] == "grant"
        assert {r["scope"]: r["version"] for r in revoked["rotations"]} == \
            {"clinical": 2, "shared": 2, "administrative": 2}
        clinical = next(r for r in revoked["rotations"] if r["scope"] == "clinical")
        assert (clinical["rekeyed"], clinical["skipped"]) == (1, 0)

    def test_python_reads_the_rekeyed_record(self, rotated):
        _, colleague, _, _, note_id, (before, before_content), _ = rotated

        async def read(records):
            return await records.read(note_id)

        after, content = colleague.run(read)
        assert (before.key_version, after.key_version) == (1, 2)
        assert content == before_content == NOTE.encode()

    def test_python_writes_with_the_new_key_and_typescript_reads_it(self, rotated):
        owner, colleague, _, file_id, *_ = rotated

        async def write(records):
            return await records.create(file_id, "clinical", meta("Séance", "session-note", 10),
                                        b'{"n":"py"}')

        written = colleague.run(write)
        assert written.key_version == 2
        read = owner.run("read-record", record_id=written.record_id)
        assert (read["key_version"], read["author_id"], read["text"]) == \
            (2, colleague.account_id, '{"n":"py"}')

    def test_the_revoked_member_reads_nothing(self, rotated):
        _, _, leaving, _, note_id, *_ = rotated
        refused = leaving.refused("read-record", record_id=note_id)
        assert refused["error"] in ("PermissionDenied", "NotFound")


class TestTypeScriptRotatesWhenItsWriteIsRefused:
    """The TypeScript SDK writes in one request (no ``GET /v1/rotations`` first): a colleague's
    write while a rotation is pending is refused by the records API (``rotation-pending``),
    and the SDK then rotates and writes under the new key (issue 21)."""

    @pytest.fixture(scope="class")
    @classmethod
    def written(cls, stack, tmp_path_factory):
        owner, colleague, leaving, file_id, note_id, grant_id = _care_team_file(
            stack, tmp_path_factory.mktemp("ts-rotates-on-refusal"), TsDevice, TsDevice,
            "Rotation Refus", 1972)

        async def revoke(records):
            # Revoked, not rotated: the rotation waits for a device of the care team.
            await owner.sharing(records).revoke(grant_id, rotate=False)

        owner.run(revoke)
        written = colleague.run("create-record", file_id=file_id, scope="clinical",
                                title="Séance", kind="session-note", text='{"notes":"refus"}')
        return owner, colleague, leaving, file_id, note_id, written

    def test_the_write_went_under_the_new_key(self, written):
        *_, record = written
        assert record["key_version"] == 2

    def test_no_rotation_is_left_pending(self, written):
        _, colleague, _, file_id, *_ = written
        assert colleague.run("sync", file_id=file_id) == []

    def test_python_reads_the_record_and_the_rekeyed_note(self, written):
        owner, colleague, _, _, note_id, record = written

        async def read(records):
            return await records.read(record["record_id"]), await records.read(note_id)

        (info, content), (note, _) = owner.run(read)
        assert (info.key_version, info.author_id, content) == \
            (2, colleague.account_id, b'{"notes":"refus"}')
        assert note.key_version == 2

    def test_the_revoked_member_reads_nothing(self, written):
        _, _, leaving, _, _, record = written
        refused = leaving.refused("read-record", record_id=record["record_id"])
        assert refused["error"] in ("PermissionDenied", "NotFound")


class TestPythonInvitesTypeScriptAccepts:
    @pytest.fixture(scope="class")
    @classmethod
    def accepted(cls, stack, tmp_path_factory):
        home = tmp_path_factory.mktemp("py-invites")
        server = stack.url("gateway")
        owner = PyDevice.signup(server, home / "owner")

        async def invite(records):
            patient = await owner.patients(records).create(
                PatientIdentity(name="Invitée Py", birth_date=dt.date(1990, 5, 6)))
            program = await records.create(patient.file_id, "shared",
                                           meta("Programme", "exercise-program", len(NOTE)),
                                           NOTE.encode())
            invited = await owner.sharing(records).invite(patient.file_id, "patient")
            return patient.file_id, program.record_id, invited.code

        file_id, program_id, code = owner.run(invite)
        patient = TsDevice.signup(server, home / "patient", role="patient")
        accepted = patient.run("accept", code=code)
        return owner, patient, file_id, program_id, accepted

    def test_typescript_binds_the_inviter_the_code_names(self, accepted):
        owner, _, file_id, _, out = accepted
        assert (out["file_id"], out["inviter_id"]) == (file_id, owner.account_id)
        assert out["inviter_fingerprint"] == owner.fingerprint

    def test_typescript_reads_what_was_shared(self, accepted):
        _, patient, _, program_id, _ = accepted
        assert patient.run("read-record", record_id=program_id)["text"] == NOTE

    def test_python_binds_the_invitee_by_its_proof_and_reads_its_upload(self, accepted):
        owner, patient, file_id, *_ = accepted
        upload = patient.run("create-record", file_id=file_id, scope="shared", title="Ordonnance",
                             kind="prescription", text='{"scan":"ts"}')

        async def read(records):
            return await records.read(upload["record_id"]), records.trust.reason(patient.account_id)

        (info, content), why = owner.run(read)
        assert (info.author_id, content) == (patient.account_id, b'{"scan":"ts"}')
        assert why == "invitation"

    def test_typescript_grantee_reads_the_patient_readable_audit(self, accepted):
        _, patient, file_id, *_ = accepted
        trail = patient.run("audit", file_id=file_id)
        assert trail["verified"] is True
        assert f"file:{file_id}:shared" in trail["chains"]
        assert f"file:{file_id}:clinical" not in trail["chains"]  # not a scope it holds
        assert "invitation.redeem" in trail["actions"]

    def test_typescript_grantee_leaves_the_share_and_reads_nothing_more(self, accepted):
        owner, patient, file_id, program_id, out = accepted
        assert patient.run("leave", file_id=file_id) == \
            [{"grant_id": out["grant_id"], "status": "revoked"}]
        refused = patient.refused("read-record", record_id=program_id)
        assert refused["error"] in ("PermissionDenied", "NotFound")

        async def overview(records):
            return await owner.sharing(records).overview(file_id)

        grants = {g.grant_id: g.status for g in owner.run(overview).grants}
        assert grants[out["grant_id"]] == "revoked"


class TestTypeScriptInvitesPythonAccepts:
    @pytest.fixture(scope="class")
    @classmethod
    def accepted(cls, stack, tmp_path_factory):
        home = tmp_path_factory.mktemp("ts-invites")
        server = stack.url("gateway")
        owner = TsDevice.signup(server, home / "owner")
        file_id = owner.run("create-patient", name="Invitée Ts", birth_date="1991-05-06")["file_id"]
        program_id = owner.run("create-record", file_id=file_id, scope="shared", title="Programme",
                               kind="exercise-program", text=NOTE)["record_id"]
        code = owner.run("invite", file_id=file_id, relationship="patient")["code"]
        patient = PyDevice.signup(server, home / "patient", role="patient")

        async def accept(records):
            return await patient.sharing(records).accept(code)

        return owner, patient, file_id, program_id, patient.run(accept)

    def test_python_binds_the_inviter_the_code_names(self, accepted):
        owner, _, file_id, _, out = accepted
        assert (out.file_id, out.inviter_id) == (file_id, owner.account_id)
        assert out.inviter_fingerprint == owner.fingerprint

    def test_python_reads_what_was_shared(self, accepted):
        _, patient, _, program_id, _ = accepted

        async def read(records):
            return await records.read(program_id)

        _, content = patient.run(read)
        assert content == NOTE.encode()

    def test_typescript_binds_the_invitee_by_its_proof_and_reads_its_upload(self, accepted):
        owner, patient, file_id, *_ = accepted

        async def upload(records):
            return await records.create(file_id, "shared", meta("Ordonnance", "prescription", 13),
                                        b'{"scan":"py"}')

        written = patient.run(upload)
        read = owner.run("read-record", record_id=written.record_id)
        assert (read["author_id"], read["text"]) == (patient.account_id, '{"scan":"py"}')

    def test_typescript_overview_shows_the_member_bound_by_invitation(self, accepted):
        owner, patient, _, _, out = accepted
        overview = owner.run("overview", file_id=out.file_id)
        trust = {g["grantee_id"]: (g["grant_id"], g["trust"]) for g in overview["grants"]}
        assert trust[patient.account_id] == (out.grant_id, "invitation")
        assert trust[owner.account_id][1] == "self"
        invitations = [(i["status"], i["redeemed_by"], i["redeemer_bound"])
                       for i in overview["invitations"]]
        assert invitations == [("redeemed", patient.account_id, True)]

    def test_typescript_cancels_a_pending_invitation(self, accepted):
        owner, _, file_id, *_ = accepted
        invited = owner.run("invite", file_id=file_id, relationship="patient")
        invitation_id = invited["invitation_id"]
        cancelled = owner.run("revoke", grant_id=invitation_id)
        assert cancelled == {"what": "invitation", "rotations": []}
        statuses = {i["invitation_id"]: i["status"]
                    for i in owner.run("overview", file_id=file_id)["invitations"]}
        assert statuses[invitation_id] == "cancelled"
