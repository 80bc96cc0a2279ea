"""Audit chains the operator cannot rewrite quietly: the real client SDK against the real
services, the answers of the audit routes rewritten in transit (tests/adversarial/
malicious.py).

Each service signs the head of every chain it serves with its own audit key; the device
pins that key on first use and keeps the heads it verified. Refused with the integrity
error (exit 7): events edited with every hash recomputed and the head signed by another
key; a genuine head that is not the last event served (a tail cut in transit); the
genuine head with a forged signature; and, by a device that saw the chain before, a chain
cut or rewritten by an operator who re-signs it with the service's genuine key. What
remains possible is shown too: that last rewrite, on a device that never saw the chain,
verifies (``docs/sharing.md``); its signed head then attributes it to the service.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from ecrin_client import IntegrityError, Patients, Records
from ecrin_client.audit import HEADS, SERVICE_KEYS, AuditTrail, collect, event_hash
from ecrin_client.encoding import b64d, b64e
from ecrin_client.kine import PatientIdentity

from ecrin_e2ee import AuditSigningKey, SignedAuditHead
from ecrin_platform.settings import ServiceSettings
from tests.adversarial.malicious import Exchange, MaliciousServer, Rewrite
from tests.e2e.records_support import PASSPHRASE, Practitioner, new_practitioner

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

#: (service, public area of its service-info) of the chains a file's owner reads.
SERVICES = (("sharing", "files"), ("kms", "keys"), ("records-api", "records"))
#: The chain of each service that the tampering below rewrites (one with events): the
#: sharing service's file chain (grants), the kms's chain of the clinical scope (the
#: owner's key releases), the records-api's chain of the administrative scope (the
#: patient's identity record).
TAMPERED_SCOPE = {"sharing": None, "kms": "clinical", "records-api": "administrative"}


@dataclasses.dataclass
class World:
    kine: Practitioner
    file_a: str
    file_b: str
    #: Each service's genuine audit key, as the operator holds it (the stack's key files).
    genuine: dict[str, AuditSigningKey]


@pytest.fixture(scope="module")
def audited(stack, tmp_path_factory) -> World:
    home = tmp_path_factory.mktemp("audit-heads")

    async def build() -> World:
        kine = await new_practitioner(stack.url("gateway"), home / "kine")
        colleague = await new_practitioner(stack.url("gateway"), home / "colleague")
        async with kine.client() as client:
            patients = Patients(Records(client, await client.unlock(PASSPHRASE)))
            a = await patients.create(PatientIdentity(name="Agathe Registre",
                                                      birth_date=date(1970, 5, 5)))
            b = await patients.create(PatientIdentity(name="Basile Registre",
                                                      birth_date=date(1971, 6, 6)))
            for file_id in (a.file_id, b.file_id):  # an event in each service's chain
                await client.transport.request("POST", "/v1/grants", ok=(201,), json={
                    "grant_id": str(uuid.uuid4()), "file_id": file_id,
                    "grantee_id": colleague.account_id, "relationship": "care_team",
                    "scopes": {"shared": "read"}})
                await client.transport.request("GET", f"/v1/keyrings/{file_id}/entries")
        genuine = {s: ServiceSettings(audit_signing_key_file=stack.audit_keys[s]).audit_key()
                   for s, _ in SERVICES}
        return World(kine, a.file_id, b.file_id, genuine)

    return asyncio.run(build())


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def forget(world: World) -> None:
    """The device has never seen an audit chain: no pinned key, no kept head."""
    for name in (HEADS, SERVICE_KEYS):
        (world.kine.home / name).unlink(missing_ok=True)


async def look(world: World, file_id: str, rewrite: Rewrite | None = None
               ) -> tuple[AuditTrail, MaliciousServer]:
    server = MaliciousServer(rewrite)
    async with world.kine.client(server) as client:
        return await collect(client.transport, file_id, client.profile), server


async def refused(world: World, file_id: str, rewrite: Rewrite) -> IntegrityError:
    server = MaliciousServer(rewrite)
    with pytest.raises(IntegrityError) as raised:
        async with world.kine.client(server) as client:
            await collect(client.transport, file_id, client.profile)
    assert server.tampered, "the harness never tampered: the scenario did not run"
    assert raised.value.exit_code == 7
    return raised.value


def audit_of(exchange: Exchange, service: str, file_id: str) -> bool:
    """The answer is ``service``'s chain of the file that the tampering rewrites."""
    return exchange.status == 200 and exchange.params.get("scope") == TAMPERED_SCOPE[
        service] and {
        "sharing": exchange.path == f"/v1/files/{file_id}/audit",
        "kms": exchange.path == f"/v1/keyrings/{file_id}/audit",
        "records-api": exchange.path == "/v1/records/audit"
        and exchange.params.get("file_id") == file_id}[service]


def rewritten(body: dict[str, Any], edit: Callable[[list[dict[str, Any]]], list[dict]],
              key: AuditSigningKey) -> dict[str, Any]:
    """The chain edited, every hash recomputed from the first event, its head signed by
    ``key`` and ``key`` announced as the service's: a consistent rewrite."""
    events, previous = [], "0" * 64
    for seq, event in enumerate(edit([dict(e) for e in body["events"]]), start=1):
        event.update(seq=seq, prev_hash=previous)
        event["hash"] = previous = event_hash(event)
        events.append(event)
    last = events[-1] if events else {"seq": 0, "hash": "0" * 64}
    signed = key.sign(service=body["service"], chain=body["chain"], seq=last["seq"],
                      hash=last["hash"])
    return {**body, "events": events, **signed.to_json(),
            "audit_key": b64e(key.public_key)}


def erase_first(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The operator's edit: the first event is blamed on someone else."""
    events[0]["actor"] = "00000000-0000-4000-8000-000000000000"
    return events


def rewrite_of(service: str, file_id: str, change: Callable[[dict], dict]) -> Rewrite:
    def rewrite(exchange: Exchange) -> None:
        if audit_of(exchange, service, file_id):
            exchange.set_json(change(exchange.json()))
    return rewrite


def test_genuine_chains_verify_and_pin_the_keys_the_services_publish(audited):
    forget(audited)

    async def flow() -> None:
        trail, server = await look(audited, audited.file_a)
        assert trail.verified and not server.tampered
        assert all(c.available for c in trail.chains)
        # The owner reads each service's file chain and, of the kms and the records-api,
        # the chain of every scope; those rewritten below hold events.
        assert {(c.service, c.scope) for c in trail.chains} == {
            ("sharing", None), *((service, scope) for service in ("kms", "records-api")
                                 for scope in (None, "clinical", "shared", "administrative"))}
        assert all(c.events for c in trail.chains if c.scope == TAMPERED_SCOPE[c.service])
        pinned = (audited.kine.home / SERVICE_KEYS).read_text()
        async with audited.kine.client() as client:
            for service, area in SERVICES:
                info = (await client.transport.request(
                    "GET", f"/v1/{area}/service-info")).json()
                assert b64d(info["audit_key"]) == audited.genuine[service].public_key
                assert info["audit_key"] in pinned

    run(flow())


@pytest.mark.parametrize("service", [s for s, _ in SERVICES])
def test_a_rewritten_chain_with_a_forged_head_is_refused_on_a_first_look(audited, service):
    """The device pinned the services' keys on another file; this file's chain, seen for
    the first time, is edited with every hash recomputed and a head signed by the forger's
    key. (Before signed heads this chain verified: the hashes are consistent.)"""
    forget(audited)
    run(look(audited, audited.file_b))  # the keys are pinned here, on another file
    forger = AuditSigningKey.generate()
    error = run(refused(audited, audited.file_a, rewrite_of(
        service, audited.file_a, lambda body: rewritten(body, erase_first, forger))))
    assert "not the one this device pinned" in str(error)


@pytest.mark.parametrize("service", [s for s, _ in SERVICES])
def test_a_genuine_head_re_signed_by_another_key_is_refused(audited, service):
    """The genuine chain and head, the signature made with another key while the genuine
    key is announced."""
    forget(audited)
    forger = AuditSigningKey.generate()

    def change(body: dict[str, Any]) -> dict[str, Any]:
        head = SignedAuditHead.from_json(body).head
        forged = forger.sign(service=head.service, chain=head.chain, seq=head.seq,
                             hash=head.hash)
        return {**body, "signature": forged.to_json()["signature"]}

    error = run(refused(audited, audited.file_a, rewrite_of(service, audited.file_a, change)))
    assert "does not verify" in str(error)


@pytest.mark.parametrize("service", [s for s, _ in SERVICES])
def test_a_head_that_is_not_the_last_event_served_is_refused(audited, service):
    """The last event dropped in transit, the genuine signed head left as it was: caught
    even on a first look."""
    forget(audited)
    error = run(refused(audited, audited.file_a, rewrite_of(
        service, audited.file_a, lambda body: {**body, "events": body["events"][:-1]})))
    assert "not the last event" in str(error)


@pytest.mark.parametrize("edit", ["cut", "rewritten"])
def test_a_chain_that_does_not_extend_what_the_device_saw_is_refused(audited, edit):
    """The operator holds the kms's genuine key: it cuts the chain to nothing, or edits an
    event and recomputes every hash, and signs the new head with that key. A device that
    verified the chain before refuses it, and keeps the head that proves what was served."""
    forget(audited)
    trail, _ = run(look(audited, audited.file_a))
    assert trail.verified
    heads_before = (audited.kine.home / HEADS).read_text()
    change = (lambda events: []) if edit == "cut" else erase_first
    error = run(refused(audited, audited.file_a, rewrite_of(
        "kms", audited.file_a,
        lambda body: rewritten(body, change, audited.genuine["kms"]))))
    assert "does not extend what this device verified" in str(error)
    assert (audited.kine.home / HEADS).read_text() == heads_before
    # Still refused on the next look: nothing the rewrite sent was kept.
    run(refused(audited, audited.file_a, rewrite_of(
        "kms", audited.file_a,
        lambda body: rewritten(body, change, audited.genuine["kms"]))))


def test_what_remains_possible_on_a_first_look(audited):
    """Documented limit: a device that never saw this chain cannot tell a consistent
    rewrite signed with the service's genuine key. The head it keeps is signed by that
    key, so the rewrite is the service's own statement, and any device that saw an earlier
    head refuses it (above)."""
    forget(audited)
    trail, server = run(look(audited, audited.file_a, rewrite_of(
        "kms", audited.file_a,
        lambda body: rewritten(body, erase_first, audited.genuine["kms"]))))
    assert server.tampered and trail.verified
    kms = next(c for c in trail.chains
               if c.service == "kms" and c.scope == TAMPERED_SCOPE["kms"])
    assert kms.events[0]["actor"] == "00000000-0000-4000-8000-000000000000"
    SignedAuditHead.from_json(kms.signed_head).verify(audited.genuine["kms"].public_key)
