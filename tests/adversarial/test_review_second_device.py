"""Attacker's review (h11): ``files.json``'s ``owned`` flag is set only by the device that
created the file (``Patients.create`` -> ``TrustStore.own_file``, Python and TypeScript).

On any other device of the owner — a second computer, a fresh profile, and the web app after
every reload (its profile is a ``MemoryStore``, docs/web.md) — the owner's own file is "a
file this device does not own", so ``Trust.entitled`` falls through to
``TrustStore.first_granter``: the first account verified in person that hands this device a
key version of that file becomes its entitled granter. A colleague the owner verified for
ANOTHER patient, with the kms's help, serves a newer clinical key version of this file that
the colleague made and signed; the owner's second device accepts it and encrypts the next
note under a key the colleague and the server hold. (The first device refuses the same
entry: tests/adversarial/test_review_findings.py, "never_granted_this_file".)
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import uuid
from datetime import date
from pathlib import Path

import pytest
from ecrin_client import IntegrityError, Records
from ecrin_client.encoding import b64d
from ecrin_client.errors import EcrinError
from ecrin_client.kine import PatientIdentity

from ecrin_e2ee import (
    IdentityKeys,
    Permission,
    RecordHeader,
    Relationship,
    Scope,
    ScopeKey,
    seal_entry,
)
from tests.adversarial.malicious import Exchange, MaliciousServer
from tests.e2e.records_support import (
    PASSPHRASE,
    Practitioner,
    new_practitioner,
    session_note,
    session_note_meta,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


@dataclasses.dataclass
class Owner:
    kine: Practitioner
    kine_keys: IdentityKeys
    colleague: Practitioner
    colleague_keys: IdentityKeys
    file_id: str


@pytest.fixture(scope="module")
def owner(stack, tmp_path_factory) -> Owner:
    home = tmp_path_factory.mktemp("review-second-device")

    async def build() -> Owner:
        gateway = stack.url("gateway")
        kine = await new_practitioner(gateway, home / "kine")
        colleague = await new_practitioner(gateway, home / "colleague")
        async with colleague.client() as cc:
            colleague_keys = await cc.unlock(PASSPHRASE)
        async with kine.client() as kc:
            records, patients = await kine.unlocked(kc)
            made = await patients.create(PatientIdentity(name="Second Appareil",
                                                         birth_date=date(1975, 5, 5)))
            # the colleague verified in person (for other patients); never granted this file
            kc.pin(colleague.account_id,
                   (await kc.get_directory(colleague.account_id)).fingerprint_hex())
        return Owner(kine, records.identity, colleague, colleague_keys, made.file_id)

    return asyncio.run(build())


def second_device(kine: Practitioner, where: Path) -> Practitioner:
    """The owner's profile as another device of the same account has it: signed in, its own
    pin and the colleague verified in person, but none of the first device's per-file
    records (files.json, bindings.json, versions.json)."""
    shutil.copytree(kine.home, where)
    for name in ("files.json", "bindings.json", "versions.json"):
        (where / name).unlink(missing_ok=True)
    return Practitioner(kine.server, where, kine.email, kine.account_id)


def test_the_owners_second_device_refuses_a_key_version_of_its_file_signed_by_a_colleague(
        owner: Owner, tmp_path: Path) -> None:
    file_id = owner.file_id
    injected: list[int] = []

    def rewrite(exchange: Exchange) -> None:
        if (exchange.method != "GET" or exchange.path != f"/v1/keyrings/{file_id}/entries"
                or exchange.params.get("scope") != "clinical"):
            return
        body = exchange.json()
        newer = body["versions"]["clinical"] + 1
        if exchange.params.get("version") not in (None, str(newer)):
            return
        key = ScopeKey.generate(uuid.UUID(file_id), Scope.CLINICAL, newer)
        entry = seal_entry(key, owner.kine_keys.public_identity(),
                           relationship=Relationship.OWNER,
                           permissions=frozenset({Permission.READ, Permission.APPEND}),
                           granter=owner.colleague_keys)
        body["versions"]["clinical"] = newer
        body["entries"] = [*body["entries"], entry.to_json()]
        injected.append(newer)
        exchange.set_json(body)

    desktop = second_device(owner.kine, tmp_path / "desktop")

    async def flow() -> None:
        server = MaliciousServer(rewrite)
        async with desktop.client(server) as client:
            records = Records(client, owner.kine_keys)
            refused: Exception | None = None
            content = session_note("confidentiel")
            try:
                await records.create(file_id, "clinical",
                                     session_note_meta("bilan", content), content)
            except EcrinError as error:
                refused = error
            assert injected, "the harness never injected the key version"
            used = [RecordHeader.from_bytes(b64d(body["header"], what="header")).key_version
                    for body in server.bodies("POST", "/v1/records")]
            assert injected[-1] not in used, (
                f"the owner's second device encrypted a clinical note of its own file "
                f"{file_id} under key version {injected[-1]}, made and signed by colleague "
                f"{owner.colleague.account_id}, who was never granted the file")
            assert isinstance(refused, IntegrityError)

    asyncio.run(flow())


def test_the_first_device_refuses_the_same_entry(owner: Owner) -> None:
    """Control: the device that created the file refuses the colleague's key version (so
    the test above fails because of the second device, not the harness)."""
    file_id = owner.file_id
    injected: list[int] = []

    def rewrite(exchange: Exchange) -> None:
        if (exchange.method != "GET" or exchange.path != f"/v1/keyrings/{file_id}/entries"
                or exchange.params.get("scope") != "clinical"):
            return
        body = exchange.json()
        newer = body["versions"]["clinical"] + 1
        if exchange.params.get("version") not in (None, str(newer)):
            return
        key = ScopeKey.generate(uuid.UUID(file_id), Scope.CLINICAL, newer)
        entry = seal_entry(key, owner.kine_keys.public_identity(),
                           relationship=Relationship.OWNER,
                           permissions=frozenset({Permission.READ, Permission.APPEND}),
                           granter=owner.colleague_keys)
        body["versions"]["clinical"] = newer
        body["entries"] = [*body["entries"], entry.to_json()]
        injected.append(newer)
        exchange.set_json(body)

    async def flow() -> None:
        server = MaliciousServer(rewrite)
        async with owner.kine.client(server) as client:
            records = Records(client, owner.kine_keys)
            content = session_note("controle")
            with pytest.raises(IntegrityError):
                await records.create(file_id, "clinical",
                                     session_note_meta("bilan", content), content)
            assert injected

    asyncio.run(flow())

