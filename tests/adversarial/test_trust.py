"""A server that lies about *who*: the trust rule (docs/protocol.md, trust) against the real
services and the real SDK, every answer going through the malicious-server harness.

The attacker runs the servers. It can create accounts of its own (a throw-away account
whose keys it holds: ``mallory`` here), answer any request as it likes, and change any
directory entry. Each test acts as that attacker, then checks what the honest device did:
it refuses (exit code 7, naming the account and ``ecrin verify``) or leaves the member out
and says so, and in no case does a key or a plaintext end up sealed or encrypted to a key
the attacker holds.

World (built once per module): a practitioner who owns a patient file; a patient invited
and accepted the normal way (trusted on both devices by the invitation alone); a colleague
verified in person and granted; and mallory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from ecrin_client import (
    EcrinClient,
    IdentityMismatch,
    IntegrityError,
    Profile,
    Records,
)
from ecrin_client.kine import PatientIdentity
from ecrin_client.sharing import Sharing

from ecrin_e2ee import (
    IdentityKeys,
    Permission,
    PublicIdentity,
    Relationship,
    Scope,
    ScopeKey,
    encrypt_record,
    seal_entry,
)
from tests.adversarial.devices import device, run, sealed_to
from tests.adversarial.malicious import Exchange, MaliciousServer, Rewrite
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
    kine: Practitioner
    kine_keys: IdentityKeys
    patient: Practitioner
    patient_keys: IdentityKeys
    colleague: Practitioner
    mallory: Practitioner
    mallory_keys: IdentityKeys
    file_id: str
    patient_record: str
    kine_record: str


@pytest.fixture(scope="module")
def world(stack, tmp_path_factory) -> World:
    home = tmp_path_factory.mktemp("trust")

    async def build() -> World:
        gateway = stack.url("gateway")
        kine = await new_practitioner(gateway, home / "kine")
        patient = await new_account(gateway, home / "patient", "patient")
        colleague = await new_practitioner(gateway, home / "colleague")
        mallory = await new_practitioner(gateway, home / "mallory")
        async with mallory.client() as mc:
            mallory_keys = await mc.unlock(PASSPHRASE)
        async with kine.client() as kc:
            kine_records, kine_patients = await kine.unlocked(kc)
            kine_keys = kine_records.identity
            made = await kine_patients.create(PatientIdentity(name="Confiance Dupont",
                                                              birth_date=date(1990, 4, 4)))
            kine_record = await kine_records.create(made.file_id, "shared",
                                                    meta("programme", note("squats")),
                                                    note("squats"))
            invited = await Sharing(kine_records).invite(made.file_id, "patient")
            kc.pin(colleague.account_id,
                   (await kc.get_directory(colleague.account_id)).fingerprint_hex())
            await Sharing(kine_records).grant(made.file_id, colleague.account_id, "care_team")
        async with patient.client() as pc:
            patient_records, _ = await patient.unlocked(pc)
            patient_keys = patient_records.identity
            accepted = await Sharing(patient_records).accept(invited.code)
            assert accepted.inviter_id == kine.account_id
            mine = await patient_records.create(made.file_id, "shared",
                                                meta("ordonnance", note("scan")), note("scan"))
        return World(kine, kine_keys, patient, patient_keys, colleague, mallory, mallory_keys,
                     made.file_id, mine.record_id, kine_record.record_id)

    return asyncio.run(build())


def substitute(exchange: Exchange, account_id: str) -> PublicIdentity:
    """Serve a fresh, validly self-signed identity for ``account_id`` (keys the attacker
    holds) in place of the directory's."""
    fake = IdentityKeys.generate(uuid.UUID(account_id)).public_identity()
    exchange.set_json({**exchange.json(), "identity": fake.to_json(),
                       "fingerprint": fake.fingerprint_hex()})
    return fake


# -- a key version signed by an account the device never verified ---------------------------


def _mallory_entry(world: World, version: int, key: ScopeKey | None = None
                   ) -> tuple[ScopeKey, dict[str, Any]]:
    """A clinical key the attacker knows (``key``, or a fresh one), sealed to the
    practitioner and signed by the attacker's throw-away account (whose self-signed identity
    the directory serves)."""
    key = key or ScopeKey.generate(uuid.UUID(world.file_id), Scope.CLINICAL, version)
    entry = seal_entry(key, world.kine_keys.public_identity(), relationship=Relationship.OWNER,
                       permissions=frozenset({Permission.READ, Permission.APPEND}),
                       granter=world.mallory_keys)
    return key, entry.to_json()


def _newer_version_from_mallory(world: World) -> Rewrite:
    async def rewrite(exchange: Exchange) -> None:
        if (exchange.method != "GET" or exchange.path != f"/v1/keyrings/{world.file_id}/entries"
                or exchange.params.get("scope") != "clinical"):
            return
        body = exchange.json()
        newer = body["versions"]["clinical"] + 1
        _, forged = _mallory_entry(world, newer)
        body["versions"]["clinical"] = newer
        body["entries"] = [*body["entries"], forged]
        exchange.set_json(body)

    return rewrite


def test_a_newer_key_version_signed_by_a_throwaway_account_is_never_used_to_write(world):
    """The practitioner's next clinical note would be encrypted under a key the server
    knows: the device refuses the version (exit 7, naming mallory) and uploads nothing."""
    async def flow() -> None:
        async with device(world.kine, world.kine_keys,
                          _newer_version_from_mallory(world)) as (records, server):
            with pytest.raises(IntegrityError) as refused:
                await records.create(world.file_id, "clinical", meta("bilan", note("secret")),
                                     note("secret"))
            assert refused.value.exit_code == 7
            assert world.mallory.account_id in str(refused.value)
            assert "ecrin verify" in str(refused.value)
            assert server.tampered
            assert not server.requested("POST", "/v1/records")

    run(flow())


def test_a_record_injected_under_a_throwaway_accounts_key_is_never_shown(world):
    """The server adds to the listing a record written by its own account under a key
    version its own account signed: the device shows nothing of it."""
    fid = uuid.UUID(world.file_id)
    key = ScopeKey.generate(fid, Scope.CLINICAL, 7)

    async def rewrite(exchange: Exchange) -> None:
        if exchange.method == "GET" and exchange.path == "/v1/records" and \
                exchange.params.get("scope") == "clinical":
            rid = uuid.uuid4()
            made = encrypt_record(note("injected"), meta("injected", note("injected")).to_json(),
                                  file_id=fid, record_id=rid, record_version=1,
                                  scope_key=key, author=world.mallory_keys)
            wire = made.to_json()
            page = exchange.json()
            page["items"] = [{"record_id": str(rid), "file_id": world.file_id,
                              "scope": "clinical", "current_version": 1,
                              "version": {"record_id": str(rid), "version": 1,
                                          "header": wire["header"],
                                          "metadata_ciphertext": wire["metadata"]}}]
            exchange.set_json(page)
        elif exchange.method == "GET" and \
                exchange.path == f"/v1/keyrings/{world.file_id}/entries" and \
                exchange.params.get("version") == "7":
            body = exchange.json()
            body["entries"] = [_mallory_entry(world, 7, key)[1]]
            exchange.set_json(body)

    async def flow() -> None:
        async with device(world.kine, world.kine_keys, rewrite) as (records, server):
            listed = await records.list(world.file_id, "clinical")
            assert server.tampered
            assert listed == []  # the page held only the injected record: nothing shown
            [reported] = records.unreadable
            assert world.mallory.account_id in reported.reason  # names the signer
            assert "ecrin verify" in reported.reason

    run(flow())


# -- rotation: who the new keys are sealed to ------------------------------------------------


def test_a_member_the_server_adds_to_the_list_never_receives_a_key(world):
    async def rewrite(exchange: Exchange) -> None:
        if exchange.method == "GET" and exchange.path == f"/v1/files/{world.file_id}/members":
            members = exchange.json()
            members.append({"account_id": world.mallory.account_id, "relationship": "care_team",
                            "scopes": {"clinical": "append", "shared": "append"},
                            "valid_from": None, "valid_until": None})
            exchange.set_json(members)

    async def flow() -> None:
        async with device(world.kine, world.kine_keys, rewrite) as (records, server):
            rotated = await Sharing(records).rotate(world.file_id, "shared")
            assert server.tampered
            sent = sealed_to(server.bodies("POST", f"/v1/keyrings/{world.file_id}/entries"))
            assert world.mallory.account_id not in sent
            assert rotated.skipped_members == [world.mallory.account_id]
            # the genuine members all got the new key: the invitee and the colleague
            assert {world.kine.account_id, world.patient.account_id,
                    world.colleague.account_id} <= sent

    run(flow())


@pytest.mark.parametrize("whom", ["patient", "colleague"])
def test_a_substituted_member_key_never_receives_a_key(world, whom):
    """Before a rotation the server swaps the directory identity of a member: the invited
    patient (never verified in person, bound by the invitation) or the verified colleague.
    The new key is sealed to neither the attacker's key nor the member; the rotation says
    who was left out."""
    target = world.patient if whom == "patient" else world.colleague
    fakes: list[PublicIdentity] = []

    async def rewrite(exchange: Exchange) -> None:
        if exchange.method == "GET" and exchange.path == f"/v1/directory/{target.account_id}":
            fakes.append(substitute(exchange, target.account_id))

    async def flow() -> None:
        async with device(world.kine, world.kine_keys, rewrite) as (records, server):
            rotated = await Sharing(records).rotate(world.file_id, "shared")
            assert fakes, "the harness never substituted the key"
            posted = server.bodies("POST", f"/v1/keyrings/{world.file_id}/entries")
            assert target.account_id not in sealed_to(posted)
            assert target.account_id in rotated.skipped_members
        # Honest again: the next rotation seals to the member (nothing was lost).
        async with device(world.kine, world.kine_keys, None) as (records, _):
            honest = await Sharing(records).rotate(world.file_id, "shared")
            assert honest.skipped_members == []

    run(flow())


def test_a_replaced_directory_identity_is_refused_when_reading(world):
    """The patient's identity replaced in the directory: the practitioner's device refuses
    the patient's record loudly instead of trusting the new key."""
    async def rewrite(exchange: Exchange) -> None:
        if exchange.method == "GET" and \
                exchange.path == f"/v1/directory/{world.patient.account_id}":
            substitute(exchange, world.patient.account_id)

    async def flow() -> None:
        async with device(world.kine, world.kine_keys, None) as (records, _):
            assert (await records.get(world.patient_record)).author_id == \
                world.patient.account_id  # bound by the invitation, no `ecrin verify`
        async with device(world.kine, world.kine_keys, rewrite) as (records, server):
            with pytest.raises(IdentityMismatch) as refused:
                await records.get(world.patient_record)
            assert refused.value.exit_code == 7
            assert server.tampered

    run(flow())


# -- invitations bind both people --------------------------------------------------------------


def test_the_inviter_cannot_be_substituted_at_acceptance(world, tmp_path):
    """A new parent accepts a code; the server serves its own key as the practitioner's.
    The payload opened with the code names the real fingerprint: nothing is redeemed."""
    async def flow() -> None:
        async with world.kine.client() as kc:
            kine_records = Records(kc, world.kine_keys)
            invited = await Sharing(kine_records).invite(
                world.file_id, "parent", valid_until=datetime.now(UTC) + timedelta(days=365))
        parent = await new_account(world.kine.server, tmp_path / "parent", "representative")

        async def rewrite(exchange: Exchange) -> None:
            if exchange.method == "GET" and \
                    exchange.path == f"/v1/directory/{world.kine.account_id}":
                substitute(exchange, world.kine.account_id)

        async with parent.client(MaliciousServer(rewrite)) as client:
            records, _ = await parent.unlocked(client)
            with pytest.raises(IdentityMismatch) as refused:
                await Sharing(records).accept(invited.code)
            assert refused.value.exit_code == 7
        assert Profile(parent.home).pinned(world.kine.account_id) is None
        async with world.kine.client() as kc:
            listed = await Sharing(Records(kc, world.kine_keys)).overview(world.file_id)
        mine = next(i for i in listed.invitations if i.invitation_id == invited.invitation_id)
        assert mine.status == "pending"  # never redeemed: the code is still good

    run(flow())


def test_the_invitee_cannot_be_substituted_for_the_inviter(world, tmp_path):
    """The server swaps the key of the account that redeemed: the practitioner's device
    checks the redemption proof (keyed by the code) against it, does not bind it, lists it
    as unverified, and never seals a key to it."""
    async def flow() -> None:
        async with world.kine.client() as kc:
            invited = await Sharing(Records(kc, world.kine_keys)).invite(world.file_id,
                                                                          "guardian")
        guardian = await new_account(world.kine.server, tmp_path / "guardian",
                                     "representative")
        async with guardian.client() as gc:
            records, _ = await guardian.unlocked(gc)
            await Sharing(records).accept(invited.code)

        async def rewrite(exchange: Exchange) -> None:
            if exchange.method == "GET" and \
                    exchange.path == f"/v1/directory/{guardian.account_id}":
                substitute(exchange, guardian.account_id)

        async with device(world.kine, world.kine_keys, rewrite) as (records, server):
            overview = await Sharing(records).overview(world.file_id)
            row = next(g for g in overview.grants if g.grantee_id == guardian.account_id)
            assert row.trusted is None
            rotated = await Sharing(records).rotate(world.file_id, "shared")
            posted = server.bodies("POST", f"/v1/keyrings/{world.file_id}/entries")
            assert guardian.account_id not in sealed_to(posted)
            assert guardian.account_id in rotated.skipped_members
        # Honest directory: the proof checks, the guardian is bound without `ecrin verify`.
        async with device(world.kine, world.kine_keys, None) as (records, server):
            overview = await Sharing(records).overview(world.file_id)
            row = next(g for g in overview.grants if g.grantee_id == guardian.account_id)
            assert row.trusted == "invitation"
            rotated = await Sharing(records).rotate(world.file_id, "shared")
            assert guardian.account_id in sealed_to(
                server.bodies("POST", f"/v1/keyrings/{world.file_id}/entries"))
            assert rotated.skipped_members == []

    run(flow())


# -- limits on what a server may hand a client -------------------------------------------------


def test_argon2_parameters_above_the_ceiling_are_refused_before_deriving(world, tmp_path):
    """A hostile challenge asks for 2 GiB and many passes: the client refuses at once
    instead of hanging or exhausting the device's memory."""
    def rewrite(exchange: Exchange) -> None:
        if exchange.path == "/v1/auth/challenge":
            body = exchange.json()
            body["kdf"]["params"] = {"alg": "argon2id13", "opslimit": 4,
                                     "memlimit": 2 * 1024**3}
            exchange.set_json(body)

    async def flow() -> None:
        async with EcrinClient(world.kine.server, Profile(tmp_path / "fresh"),
                               transport=MaliciousServer(rewrite)) as client:
            with pytest.raises(IntegrityError) as refused:
                await client.login(world.kine.email, PASSPHRASE)
            assert refused.value.exit_code == 7

    run(flow())
