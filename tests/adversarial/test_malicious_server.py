"""Malicious server: the real client SDK against the real services, with every answer
going through a harness (tests/adversarial/malicious.py) that tampers with it in transit.

Swapped ciphertexts between records and files, an older record version or key version,
a substituted public key, dropped, reordered or truncated content chunks, a forged
keyring-entry signature and a forged grant: the SDK refuses each one with its integrity
error (exit code 7), returns nothing and writes no file. The world is built once per
module: one practitioner, two patient files, a few records (one with two versions, one of
several chunks), the clinical scope rotated to key version 2, one pinned colleague.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from ecrin_client import IdentityMismatch, IntegrityError, Patients, Records
from ecrin_client.encoding import b64d, b64e
from ecrin_client.kine import PatientIdentity, RecordMetadata, SessionNote
from ecrin_client.sharing import Sharing

from ecrin_e2ee import IdentityKeys, KeyringEntry, Scope, ScopeKey, seal_entry
from tests.adversarial.malicious import Exchange, MaliciousServer, Rewrite, chunks
from tests.e2e.records_support import PASSPHRASE, Practitioner, new_practitioner

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

BIG = bytes(range(256)) * 800  # 200 KiB: several 64 KiB chunks on the wire


def meta(title: str, content: bytes, kind: str = "session-note",
         content_type: str = "application/json") -> RecordMetadata:
    return RecordMetadata(title=title, kind=kind, content_type=content_type,
                          size=len(content), created_at=datetime.now(UTC))


def note(text: str) -> bytes:
    return SessionNote(date=date(2026, 3, 2), acts=["AMK 7.5"], pain=3, notes=text).to_bytes()


@dataclasses.dataclass
class World:
    kine: Practitioner
    identity: IdentityKeys
    colleague_id: str
    colleague_keys: IdentityKeys
    file_a: str
    file_b: str
    a: str
    b: str
    versioned: str
    big: str
    other: str


@pytest.fixture(scope="module")
def world(stack, tmp_path_factory) -> World:
    home = tmp_path_factory.mktemp("malicious")

    async def build() -> World:
        gateway = stack.url("gateway")
        kine = await new_practitioner(gateway, home / "kine")
        colleague = await new_practitioner(gateway, home / "colleague")
        async with colleague.client() as cc:
            colleague_keys = await cc.unlock(PASSPHRASE)
        async with kine.client() as kc:
            identity = await kc.unlock(PASSPHRASE)
            records = Records(kc, identity)
            patients = Patients(records)
            pa = await patients.create(PatientIdentity(name="Alice Malveillance",
                                                       birth_date=date(1980, 1, 1)))
            pb = await patients.create(PatientIdentity(name="Bruno Malveillance",
                                                       birth_date=date(1981, 2, 2)))
            a = await records.create(pa.file_id, "clinical", meta("alpha", note("alpha")),
                                     note("alpha"))
            b = await records.create(pa.file_id, "clinical", meta("bravo", note("bravo")),
                                     note("bravo"))
            versioned = await records.create(pa.file_id, "clinical",
                                             meta("version one", note("one")), note("one"))
            await records.add_version(versioned.record_id, meta("version two", note("two")),
                                      note("two"))
            big = await records.create(pa.file_id, "clinical",
                                       meta("scan", BIG, "imaging", "application/pdf"), BIG)
            other = await records.create(pb.file_id, "clinical",
                                         meta("charlie", note("charlie")), note("charlie"))
            kc.pin(colleague.account_id,
                   (await kc.get_directory(colleague.account_id)).fingerprint_hex())
            rotated = await Sharing(records).rotate(pa.file_id, "clinical")
            assert rotated.version == 2 and rotated.rekeyed >= 5
            for rid in (a.record_id, b.record_id, versioned.record_id, big.record_id):
                assert (await records.get(rid)).key_version == 2
        return World(kine, identity, colleague.account_id, colleague_keys, pa.file_id,
                     pb.file_id, a.record_id, b.record_id, versioned.record_id,
                     big.record_id, other.record_id)

    return asyncio.run(build())


@contextlib.asynccontextmanager
async def malicious(world: World, rewrite: Rewrite | None
                    ) -> AsyncIterator[tuple[Records, MaliciousServer]]:
    """A fresh device session (no key cached) whose answers go through ``rewrite``."""
    server = MaliciousServer(rewrite)
    async with world.kine.client(server) as client:
        yield Records(client, world.identity), server


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def refused(attempt: Awaitable[Any], server: MaliciousServer,
                  error: type[Exception] = IntegrityError) -> Exception:
    """The SDK raises its integrity error, after the harness really tampered."""
    with pytest.raises(error) as raised:
        await attempt
    assert server.tampered, "the harness never tampered: the scenario did not run"
    assert raised.value.exit_code == 7  # type: ignore[attr-defined]
    return raised.value


def nothing_written(target: Path) -> None:
    assert not target.exists()
    assert not [p for p in target.parent.iterdir() if target.name in p.name]


OPERATIONS = ["get", "read", "download"]


async def operate(records: Records, op: str, record_id: str, target: Path,
                  version: int | None = None) -> Any:
    if op == "get":
        return await records.get(record_id)
    if op == "read":
        return await records.read(record_id, version)
    return await records.download(record_id, target, version)


def test_an_honest_server_passes_through(world, tmp_path):
    """Control: the harness itself changes nothing."""
    async def flow() -> None:
        async with malicious(world, lambda exchange: None) as (records, server):
            info, data = await records.read(world.a)
            assert data == note("alpha") and info.key_version == 2
            await records.download(world.big, tmp_path / "scan.pdf")
            assert (tmp_path / "scan.pdf").read_bytes() == BIG
            assert [v.version for v in await records.history(world.versioned)] == [2, 1]
            assert not server.tampered

    run(flow())


# -- swapped ciphertexts --------------------------------------------------------------------


@pytest.mark.parametrize("op", OPERATIONS)
@pytest.mark.parametrize("source", ["same-file", "other-file"])
def test_ciphertext_swapped_between_records(world, tmp_path, op, source):
    """Another record's header and metadata (same file, or another patient's file) served
    under this record's id, with the claimed ids rewritten to match; its content too."""
    donor = world.b if source == "same-file" else world.other
    target = tmp_path / "out.json"

    async def rewrite(exchange: Exchange) -> None:
        if exchange.path == f"/v1/records/{world.a}":
            genuine = await exchange.genuine(f"/v1/records/{donor}")
            body = exchange.json()
            if source == "other-file":  # the whole record, passed off as this one
                body = {**genuine, "record_id": world.a}
            body["version"] = {**genuine["version"], "record_id": world.a,
                               "version": body["current_version"]}
            exchange.set_json(body)
        elif exchange.path.startswith(f"/v1/records/{world.a}/versions/") and \
                exchange.path.endswith("/content"):
            exchange.set_content(await exchange.genuine_bytes(
                f"/v1/records/{donor}/versions/1/content"))

    async def flow() -> None:
        async with malicious(world, rewrite) as (records, server):
            await refused(operate(records, op, world.a, target), server)
            assert not server.requested("GET", f"/v1/records/{world.a}/versions/")
        nothing_written(target)

    run(flow())


def test_ciphertext_swapped_in_the_record_list(world):
    async def rewrite(exchange: Exchange) -> None:
        if exchange.path == "/v1/records":
            page = exchange.json()
            items = {i["record_id"]: i for i in page["items"]}
            if world.a in items and world.b in items:
                va, vb = items[world.a]["version"], items[world.b]["version"]
                for key in ("header", "metadata_ciphertext"):
                    va[key], vb[key] = vb[key], va[key]
                exchange.set_json(page)

    async def flow() -> None:
        async with malicious(world, rewrite) as (records, server):
            listed = await records.list(world.file_a)
            assert server.tampered
            # Neither swapped record is shown; both are reported; the rest is listed.
            assert not {world.a, world.b} & {r.record_id for r in listed}
            assert {u.record_id for u in records.unreadable} == {world.a, world.b}
            assert {world.versioned, world.big} <= {r.record_id for r in listed}

    run(flow())


# -- an older record version ------------------------------------------------------------


@pytest.mark.parametrize("op", ["get", "read", "download", "read-v2"])
@pytest.mark.parametrize("how", ["rolled-back", "old-header-as-latest", "old-as-is"])
def test_an_older_version_served(world, tmp_path, op, how):
    """This device saw version 2: the server answers with version 1 (a rollback of the
    record), or passes version 1's header and metadata off as version 2."""
    target = tmp_path / "out.json"

    async def rewrite(exchange: Exchange) -> None:
        record = f"/v1/records/{world.versioned}"
        if exchange.path not in (record, f"{record}/versions/2"):
            return
        old = await exchange.genuine(f"{record}/versions/1")
        body = exchange.json()
        if how == "old-header-as-latest":
            old = {**old, "version": 2}
        if exchange.path == record:
            body["version"] = old
            if how == "rolled-back":
                body["current_version"] = 1
            exchange.set_json(body)
        else:
            exchange.set_json(old)

    async def flow() -> None:
        async with malicious(world, rewrite) as (records, server):
            assert records.client.profile.seen_version(world.versioned) == 2
            if op == "read-v2":
                await refused(records.read(world.versioned, 2), server)
            else:
                await refused(operate(records, op, world.versioned, target), server)
            assert not server.requested("GET", f"/v1/records/{world.versioned}/versions/1/")
        nothing_written(target)

    run(flow())


# -- keyring entries: an old key version, a forged signature, a forged grant ----------------


def _forged_entry(world: World, genuine: dict[str, Any], *, claimed_granter: str,
                  signer: IdentityKeys) -> dict[str, Any]:
    """An entry sealing a key the attacker knows to me, claiming ``claimed_granter``
    granted it, signed by ``signer`` (who is not that granter)."""
    entry = KeyringEntry.from_json(genuine)
    attacker_key = ScopeKey.generate(entry.file_id, entry.scope, entry.version)
    sealed = seal_entry(attacker_key, world.identity.public_identity(),
                        relationship=entry.relationship, permissions=entry.permissions,
                        granter=signer, valid_from=entry.valid_from,
                        valid_until=entry.valid_until)
    unsigned = dataclasses.replace(sealed, granter_id=uuid.UUID(claimed_granter),
                                   signature=bytes(64))
    forged = dataclasses.replace(unsigned, signature=signer.sign(unsigned.signed_bytes()))
    return forged.to_json()


def _flip(b64: str) -> str:
    raw = bytearray(b64d(b64))
    raw[7] ^= 0x01
    return b64e(bytes(raw))


KEYRING_TAMPERING = ["signature-flipped", "old-version-relabelled", "newest-dropped",
                     "grant-forged-as-owner", "grant-forged-as-colleague"]


def _keyring_rewrite(world: World, how: str) -> Callable[[Exchange], Awaitable[None]]:
    async def rewrite(exchange: Exchange) -> None:
        if exchange.path != f"/v1/keyrings/{world.file_a}/entries" or exchange.method != "GET":
            return
        body = exchange.json()
        if exchange.params.get("scope") != "clinical":
            return
        entries = body["entries"]
        if how == "signature-flipped":
            for entry in entries:
                entry["signature"] = _flip(entry["signature"])
        elif how == "old-version-relabelled":
            old = await exchange.genuine(exchange.path, {"scope": "clinical", "version": 1})
            entries = [{**e, "version": 2} for e in old["entries"] if e["version"] == 1]
        elif how == "newest-dropped":
            entries = [e for e in entries if e["version"] != 2]
            if not entries:
                old = await exchange.genuine(exchange.path, {"scope": "clinical", "version": 1})
                entries = [e for e in old["entries"] if e["version"] == 1]
            body["versions"] = {**body.get("versions", {}), "clinical": 1}
        elif how == "grant-forged-as-owner":
            entries = [_forged_entry(world, e, claimed_granter=str(world.identity.account_id),
                                     signer=world.colleague_keys) for e in entries]
        elif how == "grant-forged-as-colleague":
            entries = [_forged_entry(world, e, claimed_granter=world.colleague_id,
                                     signer=IdentityKeys.generate(uuid.uuid4()))
                       for e in entries]
        assert entries, body
        body["entries"] = entries
        exchange.set_json(body)

    return rewrite


@pytest.mark.parametrize("how", KEYRING_TAMPERING)
def test_keyring_entry_tampering_on_read(world, tmp_path, how):
    """Reading a record on key version 2 with a tampered keyring answer. Withholding the
    newest version this device was already shown is an integrity failure too, not a
    "not found" (it was a strict xfail before the trust rule)."""
    target = tmp_path / "scan.pdf"

    async def flow() -> None:
        async with malicious(world, _keyring_rewrite(world, how)) as (records, server):
            await refused(records.download(world.big, target), server)
            await refused(records.read(world.a), server)
        nothing_written(target)

    run(flow())


@pytest.mark.parametrize("how", KEYRING_TAMPERING)
def test_keyring_entry_tampering_on_write(world, how):
    """Writing a new record: the SDK must not encrypt under a key the server chose (an
    older, revoked-member-known version, or one the server forged) and must not upload."""
    async def flow() -> None:
        async with malicious(world, _keyring_rewrite(world, how)) as (records, server):
            await refused(records.create(world.file_a, "clinical",
                                         meta("secret", note("never sent")),
                                         note("never sent")), server)
            assert not server.requested("POST", "/v1/records")

    run(flow())


# -- a substituted public key -----------------------------------------------------------


@pytest.mark.parametrize("substitute", ["new-keys-same-account", "another-account"])
@pytest.mark.parametrize("op", ["directory", "verify", "grant"])
def test_a_substituted_public_key(world, op, substitute):
    """The pinned colleague's directory entry replaced by another self-signed identity."""
    async def rewrite(exchange: Exchange) -> None:
        if exchange.path != f"/v1/directory/{world.colleague_id}":
            return
        if substitute == "new-keys-same-account":
            fake = IdentityKeys.generate(uuid.UUID(world.colleague_id)).public_identity()
        else:
            fake = world.identity.public_identity()
        exchange.set_json({**exchange.json(), "identity": fake.to_json(),
                           "fingerprint": fake.fingerprint_hex()})

    async def flow() -> None:
        async with malicious(world, rewrite) as (records, server):
            client = records.client
            assert client.profile.pinned(world.colleague_id)
            if op == "directory":
                attempt = client.get_directory(world.colleague_id)
            elif op == "verify":
                attempt = client.verify_account(world.colleague_id)
            else:
                attempt = Sharing(records).grant(world.file_a, world.colleague_id, "care_team")
            await refused(attempt, server, IdentityMismatch)
            assert not server.requested("POST", "/v1/grants")
            assert not server.requested("POST", f"/v1/keyrings/{world.file_a}/grants")

    run(flow())


# -- the content stream ------------------------------------------------------------------


def _mutations() -> dict[str, Callable[[bytes], bytes]]:
    def swap(parts: list[bytes], i: int, j: int) -> list[bytes]:
        parts[i], parts[j] = parts[j], parts[i]
        return parts

    return {
        "chunk-dropped": lambda c: b"".join(p for i, p in enumerate(chunks(c)) if i != 1),
        "chunks-reordered": lambda c: b"".join(swap(chunks(c), 0, 1)),
        "last-chunk-dropped": lambda c: b"".join(chunks(c)[:-1]),
        "truncated-mid-chunk": lambda c: c[:-100],
        "chunk-duplicated": lambda c: b"".join([*chunks(c)[:2], chunks(c)[1], *chunks(c)[2:]]),
        "chunk-appended": lambda c: c + chunks(c)[0],
        "bit-flipped": lambda c: c[:70000] + bytes([c[70000] ^ 1]) + c[70001:],
    }


@pytest.mark.parametrize("op", ["read", "download"])
@pytest.mark.parametrize("mutation", list(_mutations()))
def test_content_stream_tampering(world, tmp_path, op, mutation):
    target = tmp_path / "scan.pdf"
    mutate = _mutations()[mutation]

    def rewrite(exchange: Exchange) -> None:
        if exchange.path.startswith(f"/v1/records/{world.big}/versions/") and \
                exchange.path.endswith("/content"):
            assert len(chunks(exchange.content)) >= 3
            exchange.set_content(mutate(exchange.content))
        elif exchange.path == f"/v1/records/{world.big}" and "content" in exchange.json():
            # The same content when it comes inline (a read of a small record, issue 21).
            body = exchange.json()
            content = b64d(body["content"])
            assert len(chunks(content)) >= 3
            exchange.set_json({**body, "content": b64e(mutate(content))})

    async def flow() -> None:
        async with malicious(world, rewrite) as (records, server):
            await refused(operate(records, op, world.big, target), server)
        nothing_written(target)

    run(flow())


def test_content_of_another_record(world, tmp_path):
    """Record b's content (same file, same length class) served for record a."""
    target = tmp_path / "a.json"

    async def rewrite(exchange: Exchange) -> None:
        if exchange.path.startswith(f"/v1/records/{world.a}/versions/") and \
                exchange.path.endswith("/content"):
            exchange.set_content(await exchange.genuine_bytes(
                f"/v1/records/{world.b}/versions/1/content"))
        elif exchange.path == f"/v1/records/{world.a}" and "content" in exchange.json():
            # The same swap when the content comes inline (a small record's read).
            donor = await exchange.genuine_bytes(f"/v1/records/{world.b}/versions/1/content")
            exchange.set_json({**exchange.json(), "content": b64e(donor)})

    async def flow() -> None:
        async with malicious(world, rewrite) as (records, server):
            await refused(records.read(world.a), server)
            await refused(records.download(world.a, target), server)
        nothing_written(target)

    run(flow())


# -- re-keying after a rotation ------------------------------------------------------------


def _swap_first_two(items: list[dict[str, Any]]) -> None:
    items[0]["header"], items[1]["header"] = items[1]["header"], items[0]["header"]


def _flip_byte(offset: int) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(items: list[dict[str, Any]]) -> None:
        header = bytearray(b64d(items[0]["header"]))
        header[offset] ^= 1
        items[0]["header"] = b64e(bytes(header))

    return mutate


REKEY_TAMPERING: dict[str, Callable[[list[dict[str, Any]]], None]] = {
    "core": _flip_byte(100),            # the author-signed metadata digest
    "author-signature": _flip_byte(200),
    "wrapped-key": _flip_byte(310),     # the DEK wrap: its signature fails first
    "wrap-signature": _flip_byte(400),
    "swapped-headers": _swap_first_two,  # each header under the other record's id
}


@pytest.mark.parametrize("how", sorted(REKEY_TAMPERING))
def test_a_tampered_header_is_never_re_keyed(world, how):
    """The rotating device verifies every listed header before it re-signs a new wrap:
    a header the server altered (core, either signature, the wrap) or moved to another
    record is never re-signed: it is reported and skipped, and every other record of the
    scope is re-keyed. The rotation is marked done (the tampered ones do not verify here);
    an honest re-keying afterwards moves the genuine ones too."""
    mutate = REKEY_TAMPERING[how]

    async def rewrite(exchange: Exchange) -> None:
        if exchange.method == "GET" and exchange.path == "/v1/records/headers":
            page = exchange.json()
            if len(page["items"]) >= 2:
                mutate(page["items"])
                exchange.set_json(page)

    async def flow() -> None:
        async with world.kine.client() as client:
            records = Records(client, world.identity)
            patient = await Patients(records).create(PatientIdentity(
                name="Rotation Malveillance", birth_date=date(1982, 3, 3)))
            made = [await records.create(patient.file_id, "shared", meta(t, note(t)), note(t))
                    for t in ("un", "deux", "trois")]
        async with malicious(world, rewrite) as (records, server):
            rotated = await Sharing(records).rotate(patient.file_id, "shared")
            assert server.tampered
            bad = {u.record_id for u in rotated.unreadable}
            assert bad and rotated.rekeyed + len(bad) == 3
            posted = {item["record_id"] for body in server.bodies("POST", "/v1/records/rekey")
                      for item in body["items"]}
            assert not posted & bad  # a tampered header is never re-signed
            new_key = await records.scope_key(uuid.UUID(patient.file_id), Scope.SHARED)
        assert new_key.version == 2
        async with world.kine.client() as client:
            records = Records(client, world.identity)
            assert await Sharing(records).rekey(uuid.UUID(patient.file_id), Scope.SHARED,
                                                new_key) == (len(bad), 0)
            listed = await records.list(patient.file_id, "shared")
            assert {r.record_id for r in listed} == {m.record_id for m in made}
            assert {r.key_version for r in listed} == {2}

    run(flow())
