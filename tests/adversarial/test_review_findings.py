"""Security review of issue 13 (the trust rule): what still gets through.

Each test acts as an attacker who runs the servers (every answer goes through the
malicious-server harness, tests/adversarial/malicious.py) against the real services and the
real SDK, and checks what the honest device did. Each was a finding of the review and
failed against the first version of the trust rule; the fixes (file-scoped trust records
in ``ecrin_client.trust``, revocations remembered on the device, revoke rotating the
grant's scopes itself, hidden audit chains refused) make them pass. The findings were:

* an account this device verified in person (a colleague) is accepted as the granter of a
  *newer key version of any file*: of a file it was never granted, and of a file it was
  revoked from. With the server's help it makes the owner encrypt new notes under a key it
  chose (``Trust.entitled``: ``Why.VERIFIED`` is entitled for every file);
* a revoked member the sharing service keeps in the member list receives the new scope key
  of the rotation that was meant to cut it off (``Sharing._members`` keeps every *trusted*
  identity the server lists; revocation is not remembered on the device);
* ``share revoke`` rotates only what the sharing service's queue says is pending: an empty
  queue means no rotation at all, reported as success (``Sharing.revoke`` -> ``sync``);
* an invitee bound by the invitation of one file is trusted to receive the keys of every
  other file the server lists it in (``TrustStore.reason`` ignores the binding's file);
* a service that answers "not found" for an audit chain this device already verified is
  accepted: the chain is shown as "not available", the trail still "verifies".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ecrin_client import IntegrityError, Patients
from ecrin_client.audit import collect
from ecrin_client.encoding import b64d
from ecrin_client.errors import EcrinError
from ecrin_client.kine import PatientIdentity
from ecrin_client.sharing import Sharing

from ecrin_e2ee import (
    IdentityKeys,
    Permission,
    RecordHeader,
    Relationship,
    Scope,
    ScopeKey,
    seal_entry,
)
from tests.adversarial.devices import device, run, sealed_to
from tests.adversarial.malicious import Exchange, Rewrite
from tests.e2e.records_support import (
    PASSPHRASE,
    Practitioner,
    new_account,
    new_practitioner,
    session_note,
    session_note_meta,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


meta, note = session_note_meta, session_note


@dataclasses.dataclass
class World:
    home: Path
    kine: Practitioner
    kine_keys: IdentityKeys
    colleague: Practitioner
    colleague_keys: IdentityKeys
    patient: Practitioner
    #: the patient's file: the patient invited (and bound) there, the colleague granted
    file_id: str


@pytest.fixture(scope="module")
def world(stack, tmp_path_factory) -> World:
    home = tmp_path_factory.mktemp("review")

    async def build() -> World:
        gateway = stack.url("gateway")
        kine = await new_practitioner(gateway, home / "kine")
        colleague = await new_practitioner(gateway, home / "colleague")
        patient = await new_account(gateway, home / "patient", "patient")
        async with colleague.client() as cc:
            colleague_keys = await cc.unlock(PASSPHRASE)
        async with kine.client() as kc:
            records, patients = await kine.unlocked(kc)
            made = await patients.create(PatientIdentity(name="Revue Martin",
                                                         birth_date=date(1985, 2, 2)))
            # the colleague verified in person (safety numbers compared) and granted
            kc.pin(colleague.account_id,
                   (await kc.get_directory(colleague.account_id)).fingerprint_hex())
            await Sharing(records).grant(made.file_id, colleague.account_id, "care_team")
            invited = await Sharing(records).invite(made.file_id, "patient")
        async with patient.client() as pc:
            precords, _ = await patient.unlocked(pc)
            await Sharing(precords).accept(invited.code)
        return World(home, kine, records.identity, colleague, colleague_keys, patient,
                     made.file_id)

    return asyncio.run(build())


async def new_file(world: World, name: str) -> str:
    async with device(world.kine, world.kine_keys, None) as (records, _):
        made = await Patients(records).create(PatientIdentity(name=name,
                                                              birth_date=date(1979, 9, 9)))
    return made.file_id


async def members_of(world: World, file_id: str) -> list[dict[str, Any]]:
    async with device(world.kine, world.kine_keys, None) as (records, _):
        return (await records.client.transport.request(
            "GET", f"/v1/files/{file_id}/members")).json()


async def grant_of(world: World, file_id: str, grantee: str) -> str:
    async with device(world.kine, world.kine_keys, None) as (records, _):
        overview = await Sharing(records).overview(file_id)
    return next(g.grant_id for g in overview.grants
                if g.grantee_id == grantee and g.status == "active")


# -- 1. a verified colleague is a trusted granter of every file --------------------------------


def _newer_clinical_version_signed_by(world: World, file_id: str, signer: IdentityKeys,
                                      injected: list[int]) -> Rewrite:
    """The kms (with the signer's help) serves a newer clinical key version of ``file_id``,
    a key the signer knows, sealed to the practitioner and signed by ``signer``."""
    def rewrite(exchange: Exchange) -> None:
        if (exchange.method != "GET" or exchange.path != f"/v1/keyrings/{file_id}/entries"
                or exchange.params.get("scope") != "clinical"):
            return
        body = exchange.json()
        newer = body["versions"]["clinical"] + 1
        if exchange.params.get("version") not in (None, str(newer)):
            return
        key = ScopeKey.generate(uuid.UUID(file_id), Scope.CLINICAL, newer)
        entry = seal_entry(key, world.kine_keys.public_identity(),
                           relationship=Relationship.OWNER,
                           permissions=frozenset({Permission.READ, Permission.APPEND}),
                           granter=signer)
        body["versions"]["clinical"] = newer
        body["entries"] = [*body["entries"], entry.to_json()]
        injected.append(newer)
        exchange.set_json(body)

    return rewrite


@pytest.mark.parametrize("history", ["never_granted_this_file", "revoked_from_this_file"])
def test_a_key_version_signed_by_a_verified_colleague_not_entitled_to_the_file_is_never_used(
        world, history):
    """The owner verified a colleague in person for one patient. For ANOTHER patient's file
    (never shared with the colleague), or for a file the colleague was revoked from, the
    server serves a newer clinical key version that the colleague made and signed: the
    owner's device must refuse it (issue 13: an entry is accepted only from a granter
    *entitled to grant that scope*). Today the device accepts it and encrypts the next
    clinical note under a key the colleague (and the server) hold."""
    name = "Autre Patient" if history == "never_granted_this_file" else "Ancien Partage"
    file_id = run(new_file(world, name))
    if history == "revoked_from_this_file":
        async def grant_then_revoke() -> None:
            async with device(world.kine, world.kine_keys, None) as (records, _):
                await Sharing(records).grant(file_id, world.colleague.account_id, "care_team")
            grant_id = await grant_of(world, file_id, world.colleague.account_id)
            async with device(world.kine, world.kine_keys, None) as (records, _):
                _, _, rotations = await Sharing(records).revoke(grant_id)
                assert rotations  # the honest revocation rotated the scopes

        run(grant_then_revoke())
    injected: list[int] = []

    async def flow() -> None:
        rewrite = _newer_clinical_version_signed_by(world, file_id, world.colleague_keys,
                                                    injected)
        async with device(world.kine, world.kine_keys, rewrite) as (records, server):
            refused: Exception | None = None
            try:
                await records.create(file_id, "clinical", meta("bilan", note("confidentiel")),
                                     note("confidentiel"))
            except EcrinError as error:
                refused = error
            assert injected, "the harness never injected the key version"
            used = [RecordHeader.from_bytes(b64d(body["header"], what="header")).key_version
                    for body in server.bodies("POST", "/v1/records")]
            assert injected[-1] not in used, (
                f"the device encrypted a clinical note of file {file_id} under key version "
                f"{injected[-1]}, made and signed by colleague {world.colleague.account_id} "
                f"({history}): the colleague and the server can read it")
            assert isinstance(refused, IntegrityError) and refused.exit_code == 7

    run(flow())


# -- 2. a revoked member kept in the member list gets the new key -------------------------------


@pytest.mark.parametrize("whom", ["invited_parent", "verified_colleague"])
def test_a_revoked_member_the_server_keeps_listing_never_receives_the_new_key(
        world, whom, tmp_path):
    """The owner revokes a grant; the sharing service (operator colluding with the revoked
    person) still lists that person among the members when the owner's device rotates.
    The device trusts the person's key (bound by the invitation, or verified), so it seals
    the new version to them: the rotation that was meant to cut them off hands them the
    new key. The device that revokes knows whom it revoked; it must never seal to them."""
    file_id = run(new_file(world, f"Revocation {whom}"))

    async def setup() -> str:
        if whom == "verified_colleague":
            async with device(world.kine, world.kine_keys, None) as (records, _):
                await Sharing(records).grant(file_id, world.colleague.account_id, "care_team",
                                             scopes={"shared": "read"})
            return world.colleague.account_id
        async with device(world.kine, world.kine_keys, None) as (records, _):
            invited = await Sharing(records).invite(
                file_id, "parent", scopes={"shared": "read"},
                valid_until=datetime.now(UTC) + timedelta(days=365))
        parent = await new_account(world.kine.server, tmp_path / "parent", "representative")
        async with parent.client() as pc:
            precords, _ = await parent.unlocked(pc)
            await Sharing(precords).accept(invited.code)
        return parent.account_id

    revoked = run(setup())
    row = next(m for m in run(members_of(world, file_id)) if m["account_id"] == revoked)
    grant_id = run(grant_of(world, file_id, revoked))

    async def rewrite(exchange: Exchange) -> None:
        if exchange.method == "GET" and exchange.path == f"/v1/files/{file_id}/members":
            listed = exchange.json()
            if all(m["account_id"] != revoked for m in listed):
                exchange.set_json([*listed, row])

    async def flow() -> None:
        async with device(world.kine, world.kine_keys, rewrite) as (records, server):
            # the genuine kms refuses the entry for a non-member; a malicious one stores it:
            # what matters is what the device SENT (the new key sealed to whom).
            with contextlib.suppress(EcrinError):
                await Sharing(records).revoke(grant_id)
            assert server.requested("DELETE", f"/v1/grants/{grant_id}")
            posted = server.bodies("POST", f"/v1/keyrings/{file_id}/entries")
            assert sealed_to(posted), "the device never rotated: the scenario did not run"
            assert server.tampered
            assert revoked not in sealed_to(posted), (
                f"the device sealed the new shared key of file {file_id} to {revoked}, "
                "whose grant it had just revoked")

    run(flow())


# -- 3. revocation rotates only what the server's queue says ------------------------------------


def test_revoking_rotates_even_if_the_server_reports_nothing_pending(world):
    """`share revoke`: the sharing service hides the pending rotation (an empty queue). The
    device reports the revocation as done and rotates nothing, so the revoked member's key
    stays the current one and the owner's next notes are encrypted under it."""
    file_id = run(new_file(world, "File Sans Rotation"))

    async def setup() -> None:
        async with device(world.kine, world.kine_keys, None) as (records, _):
            await Sharing(records).grant(file_id, world.colleague.account_id, "care_team",
                                         scopes={"shared": "read"})

    run(setup())
    grant_id = run(grant_of(world, file_id, world.colleague.account_id))

    def rewrite(exchange: Exchange) -> None:
        if exchange.method == "GET" and exchange.path == "/v1/rotations":
            exchange.set_json([])

    async def flow() -> None:
        async with device(world.kine, world.kine_keys, rewrite) as (records, server):
            what, grant, rotations = await Sharing(records).revoke(grant_id)
            assert what == "grant" and grant is not None
            assert server.tampered
            assert rotations, ("`share revoke` rotated nothing: the revoked colleague's shared "
                               "key is still the file's current key")
        async with device(world.kine, world.kine_keys, None) as (records, _):
            current = await records.scope_key(uuid.UUID(file_id), Scope.SHARED)
            assert current.version > 1

    run(flow())


# -- 4. an invitation binding of one file is used for every file --------------------------------


def test_an_invitee_of_another_file_listed_as_a_member_never_receives_this_files_key(world):
    """The patient was invited to (and bound for) one file only. The sharing service lists
    that patient as a member of ANOTHER patient's file: the owner's rotation of that file
    seals its key to them, because the binding's file is never checked when sealing."""
    other = run(new_file(world, "Autre Dossier"))

    async def rewrite(exchange: Exchange) -> None:
        if exchange.method == "GET" and exchange.path == f"/v1/files/{other}/members":
            exchange.set_json([*exchange.json(), {
                "account_id": world.patient.account_id, "relationship": "patient",
                "scopes": {"shared": "read"}, "valid_from": None, "valid_until": None}])

    async def flow() -> None:
        # The owner's device has checked the patient's redemption proof (any look at the
        # patient's own file does it): the patient is bound, for that file.
        async with device(world.kine, world.kine_keys, None) as (records, _):
            overview = await Sharing(records).overview(world.file_id)
            row = next(g for g in overview.grants if g.grantee_id == world.patient.account_id)
            assert row.trusted == "invitation"
        async with device(world.kine, world.kine_keys, rewrite) as (records, server):
            with contextlib.suppress(EcrinError):
                await Sharing(records).rotate(other, "shared")
            posted = server.bodies("POST", f"/v1/keyrings/{other}/entries")
            assert sealed_to(posted), "the device never rotated: the scenario did not run"
            assert server.tampered
            assert world.patient.account_id not in sealed_to(posted), (
                f"the device sealed file {other}'s shared key to the patient of file "
                f"{world.file_id} (bound by that file's invitation only)")

    run(flow())


# -- 5. an audit chain the device verified before, then hidden ------------------------------------


def test_an_audit_chain_this_device_verified_cannot_silently_disappear(world):
    """The owner's device verified (and kept the signed head of) the kms's chain of a file.
    Later the kms answers 404 for that chain: the device shows it as "not available" and
    the trail still counts as verified (`ecrin audit --verify` exits 0), so an operator who
    cannot rewrite the chain quietly can hide it whole."""
    async def flow() -> None:
        async with device(world.kine, world.kine_keys, None) as (records, _):
            first = await collect(records.client.transport, world.file_id,
                                  records.client.profile)
        kms = next(c for c in first.chains if c.service == "kms")
        assert kms.available and kms.verified and kms.events

        def rewrite(exchange: Exchange) -> None:
            if exchange.path == f"/v1/keyrings/{world.file_id}/audit":
                exchange.status = 404
                exchange.headers["content-type"] = "application/problem+json"
                exchange.set_content(json.dumps({
                    "type": "about:blank", "title": "Not Found", "status": 404,
                    "detail": "No such file."}).encode())

        async with device(world.kine, world.kine_keys, rewrite) as (records, server):
            try:
                trail = await collect(records.client.transport, world.file_id,
                                      records.client.profile)
            except IntegrityError:
                return  # refused: what the device should do
            assert server.tampered
            assert trail.verified is False, (
                "the kms hid a chain this device had verified (and kept the signed head "
                "of); the trail still counts as verified")

    run(flow())
