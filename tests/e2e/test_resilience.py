"""One bad record never blocks a file, and every loss of access ends in a finished rotation
(issue 14), through the real services and the real SDK.

* A grantee uploads a record that the server accepts but that does not open (encrypted
  under a key of its own making): the practitioner's record list, patient list and
  revocation still work; the bad record is reported (id, author, why) and skipped; after the
  revocation every readable record of the scope is on the new key version.
* A revocation whose re-keying is cut short stays pending; `sync` finishes it.
* Revoking a pending grant, cancelling an invitation after its payload was fetched, or
  letting it expire then, each queue a rotation; cancelling one nobody fetched does not.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from ecrin_client import EcrinError, Patients, Records
from ecrin_client.kine import PatientIdentity, RecordMetadata, SessionNote
from ecrin_client.patients import IDENTITY_KIND
from ecrin_client.sharing import Sharing

from ecrin_e2ee import Scope, ScopeKey
from tests.adversarial.malicious import Exchange, MaliciousServer
from tests.e2e.records_support import (
    PASSPHRASE,
    new_account,
    new_practitioner,
    pin_as_listed,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def meta(title: str, content: bytes, kind: str = "session-note") -> RecordMetadata:
    return RecordMetadata(title=title, kind=kind, content_type="application/json",
                          size=len(content), created_at=datetime.now(UTC))


def note(text: str) -> bytes:
    return SessionNote(date=date(2026, 3, 2), acts=["AMK 7.5"], pain=2, notes=text).to_bytes()


async def unopenable(records: Records, file_id: str, scope: str, kind: str) -> str:
    """A record the server accepts (signed by its author, the right ids and key version 1)
    whose content key is wrapped under a key of the author's own making: nobody else opens
    it."""
    fid = uuid.UUID(file_id)
    records.adopt_keys({Scope(scope): ScopeKey.generate(fid, Scope(scope), 1)})
    made = await records.create(file_id, scope, meta("illisible", note("x"), kind), note("x"))
    return made.record_id


def test_one_record_that_does_not_open_blocks_nothing(stack, tmp_path):
    async def scenario() -> None:
        gateway = stack.url("gateway")
        kine = await new_practitioner(gateway, tmp_path / "kine")
        patient = await new_account(gateway, tmp_path / "patient", "patient")
        secretary = await new_account(gateway, tmp_path / "secretary", "staff")
        async with kine.client() as kc:
            records, patients = await kine.unlocked(kc)
            made = await patients.create(PatientIdentity(name="Résiliente Martin",
                                                         birth_date=date(1975, 5, 5)))
            fid = made.file_id
            mine = [await records.create(fid, "shared", meta(f"programme {i}", note(str(i))),
                                         note(str(i))) for i in range(3)]
            invited = await Sharing(records).invite(fid, "patient")
            await pin_as_listed(kc, secretary.account_id)
            await Sharing(records).grant(fid, secretary.account_id, "secretary")
        async with patient.client() as pc:
            p_records, _ = await patient.unlocked(pc)
            accepted = await Sharing(p_records).accept(invited.code)
            bad_shared = await unopenable(p_records, fid, "shared", "letter")
        async with secretary.client() as sc:
            s_records = Records(sc, await sc.unlock(PASSPHRASE))
            bad_identity = await unopenable(s_records, fid, "administrative", IDENTITY_KIND)

        async with kine.client() as kc:
            records, patients = await kine.unlocked(kc)
            listed = await records.list(fid, "shared")
            assert {r.record_id for r in listed} == {r.record_id for r in mine}
            [reported] = records.unreadable
            assert (reported.record_id, reported.author_id) == (bad_shared,
                                                                 patient.account_id)
            # The secretary's unopenable "identity" hides neither this patient nor others.
            found = await Patients(records).list()
            assert [p.identity.name for p in found if p.file_id == fid] == ["Résiliente Martin"]
            # The file names its identity record (made with it): the listing reads that one
            # only, so the secretary's record is never even opened.
            assert bad_identity not in {u.record_id for u in records.unreadable}

            what, _, rotations = await Sharing(records).revoke(accepted.grant_id)
            assert what == "grant"
            shared = next(r for r in rotations if r.scope == "shared")
            assert [u.record_id for u in shared.unreadable] == [bad_shared]
            assert shared.rekeyed == len(mine)
            assert await Sharing(records).pending(fid) == []  # done: all readable re-keyed

        async with kine.client() as kc:
            records, _ = await kine.unlocked(kc)
            again = await records.list(fid, "shared")
            assert {r.key_version for r in again} == {shared.version}

    asyncio.run(scenario())


async def _three_notes_shared(stack: Any, tmp_path: Any, name: str) -> tuple[Any, str, str]:
    """A practitioner's patient with three clinical notes, shared with a colleague (care
    team). -> (the practitioner, the file id, the grant id)"""
    gateway = stack.url("gateway")
    kine = await new_practitioner(gateway, tmp_path / "kine")
    colleague = await new_practitioner(gateway, tmp_path / "colleague")
    async with kine.client() as kc:
        records, patients = await kine.unlocked(kc)
        fid = (await patients.create(PatientIdentity(
            name=name, birth_date=date(1980, 8, 8)))).file_id
        for i in range(3):
            await records.create(fid, "clinical", meta(f"note {i}", note(str(i))), note(str(i)))
        await pin_as_listed(kc, colleague.account_id)
        granted = await Sharing(records).grant(fid, colleague.account_id, "care_team")
    return kine, fid, granted.grant_id


def test_a_rotation_cut_short_stays_pending_and_sync_finishes_it(stack, tmp_path):
    async def scenario() -> None:
        kine, fid, grant_id = await _three_notes_shared(stack, tmp_path, "Interrompue Durand")

        def cut(exchange: Exchange) -> None:
            if exchange.method == "POST" and exchange.path == "/v1/records/rekey":
                # The device never learns whether its re-keying landed (it did: the harness
                # forwards, then answers an error in its place).
                exchange.status = 400
                exchange.set_json({"type": "about:blank", "title": "cut", "status": 400})

        async with kine.client(MaliciousServer(cut)) as kc:
            records = Records(kc, await kc.unlock(PASSPHRASE))
            with pytest.raises(EcrinError):  # the server's refusal, as the device saw it
                await Sharing(records).revoke(grant_id)
        async with kine.client() as kc:
            records = Records(kc, await kc.unlock(PASSPHRASE))
            sharing = Sharing(records)
            pending = await sharing.pending(fid)
            assert pending and all(p["rotated_version"] == 2 for p in pending
                                   if p["scope"] == "clinical")
            finished = await sharing.sync(fid)
            clinical = next(r for r in finished if r.scope == "clinical")
            assert clinical.resumed and clinical.version == 2
            assert await sharing.pending(fid) == []
            assert {r.key_version for r in await records.list(fid, "clinical")} == {2}

    asyncio.run(scenario())


def test_a_busy_server_during_re_keying_is_waited_out(stack, tmp_path):
    """The first listing of headers and the first re-keying batch are each answered 503
    (Retry-After), the batch after the server applied it: the device retries both, as
    their answer told it, and the revocation finishes at once, every record re-keyed."""
    async def scenario() -> None:
        kine, fid, grant_id = await _three_notes_shared(stack, tmp_path, "Occupée Lefort")

        busy: list[str] = []

        def once_busy(exchange: Exchange) -> None:
            what = f"{exchange.method} {exchange.path}"
            if what in ("GET /v1/records/headers", "POST /v1/records/rekey") \
                    and what not in busy:
                busy.append(what)
                exchange.status = 503
                exchange.headers["retry-after"] = "1"
                exchange.set_json({"type": "about:blank", "title": "busy", "status": 503})

        async with kine.client(MaliciousServer(once_busy)) as kc:
            records = Records(kc, await kc.unlock(PASSPHRASE))
            _, _, rotations = await Sharing(records).revoke(grant_id)
            clinical = next(r for r in rotations if r.scope == "clinical")
            assert clinical.rekeyed == 3 and clinical.skipped == 0
        assert busy == ["GET /v1/records/headers", "POST /v1/records/rekey"]
        async with kine.client() as kc:
            records = Records(kc, await kc.unlock(PASSPHRASE))
            assert await Sharing(records).pending(fid) == []
            assert {r.key_version for r in await records.list(fid, "clinical")} == {2}

    asyncio.run(scenario())


def _scopes_pending(sharing: Sharing, fid: str) -> Any:
    async def get() -> set[str]:
        return {p["scope"] for p in await sharing.pending(fid)}
    return get()


def test_every_loss_of_access_queues_a_rotation(stack, tmp_path):
    async def scenario() -> None:
        gateway = stack.url("gateway")
        kine = await new_practitioner(gateway, tmp_path / "kine")
        stranger = await new_account(gateway, tmp_path / "stranger", "representative")
        async with kine.client() as kc:
            records, patients = await kine.unlocked(kc)
            sharing = Sharing(records)
            fid = (await patients.create(PatientIdentity(
                name="Perte Leroy", birth_date=date(1970, 1, 1)))).file_id

            # Cancelled before anyone fetched it: nothing to rotate.
            unseen = await sharing.invite(fid, "guardian", scopes={"shared": "read"})
            await sharing.revoke(unseen.invitation_id)
            assert await _scopes_pending(sharing, fid) == set()

            # Fetched with the code (the payload may be open), then cancelled: rotates.
            seen = await sharing.invite(fid, "guardian", scopes={"shared": "read"})
            async with stranger.client() as sc:
                from ecrin_e2ee import InvitationCode
                lookup = InvitationCode.from_text(seen.code).lookup_id()
                await sc.transport.request("GET", f"/v1/invitations/lookup/{lookup}")
            await sharing.revoke(seen.invitation_id)
            assert await _scopes_pending(sharing, fid) == {"shared"}
            await sharing.sync(fid)
            assert await _scopes_pending(sharing, fid) == set()

            # A pending grant revoked (keys never stored): rotates all the same.
            await pin_as_listed(kc, stranger.account_id)
            raw = await kc.transport.request("POST", "/v1/grants", ok=(201,), json={
                "grant_id": str(uuid.uuid4()), "file_id": fid,
                "grantee_id": stranger.account_id, "relationship": "guardian",
                "scopes": {"administrative": "read"}})
            await kc.transport.request("DELETE", f"/v1/grants/{raw.json()['id']}")
            assert await _scopes_pending(sharing, fid) == {"administrative"}
            await sharing.sync(fid)

            # Fetched, then left to expire: the expiry sweep queues the rotation.
            lapsing = await sharing.invite(fid, "guardian",
                                           scopes={"administrative": "read"},
                                           expires_in_days=1)
            async with stranger.client() as sc:
                from ecrin_e2ee import InvitationCode
                lookup = InvitationCode.from_text(lapsing.code).lookup_id()
                await sc.transport.request("GET", f"/v1/invitations/lookup/{lookup}")
            (stack.state / "clock-offset").write_text(str(int(timedelta(days=2)
                                                               .total_seconds())))
            try:
                await asyncio.sleep(1.2)  # the sharing service re-reads its clock each second
                assert await _scopes_pending(sharing, fid) == {"administrative"}
            finally:
                (stack.state / "clock-offset").write_text("0")
                await asyncio.sleep(1.2)

    asyncio.run(scenario())
