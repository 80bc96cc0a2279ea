"""Attacker's review (h11): ``share revoke`` trusts the sharing service's word that a
rotation "already stored its keys".

``Sharing.revoke`` (Python) and ``Sharing.revoke`` (TypeScript, ``client/sharing.ts``) call
``sync`` and then rotate only the scopes ``sync`` did not report. ``sync`` believes the
queue's ``rotated_version``: when every queued item carries one, it calls ``finish``, which
re-keys to the *latest* version as long as ``latest >= rotated_version`` and reports the
scope done. A sharing service colluding with the revoked member answers the queue with the
scope's CURRENT (pre-revocation) version as ``rotated_version``: no new key is made, the
revocation is reported as rotated, and the owner's next notes are encrypted under the key
the revoked member holds. (The same lie defeats the fix of the earlier finding "an empty
queue means no rotation", tests/adversarial/test_review_findings.py.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from ecrin_client import Patients
from ecrin_client.kine import PatientIdentity
from ecrin_client.sharing import Sharing

from ecrin_e2ee import IdentityKeys, Scope
from tests.adversarial.devices import device, run
from tests.adversarial.malicious import Exchange
from tests.e2e.records_support import Practitioner, new_practitioner

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


@dataclasses.dataclass
class Pair:
    home: Path
    kine: Practitioner
    kine_keys: IdentityKeys
    colleague: Practitioner


@pytest.fixture(scope="module")
def pair(stack, tmp_path_factory) -> Pair:
    home = tmp_path_factory.mktemp("review-rotation")

    async def build() -> Pair:
        gateway = stack.url("gateway")
        kine = await new_practitioner(gateway, home / "kine")
        colleague = await new_practitioner(gateway, home / "colleague")
        async with kine.client() as kc:
            records, _ = await kine.unlocked(kc)
            kc.pin(colleague.account_id,
                   (await kc.get_directory(colleague.account_id)).fingerprint_hex())
        return Pair(home, kine, records.identity, colleague)

    return asyncio.run(build())


def test_revoking_rotates_even_if_the_server_claims_the_current_version_is_the_rotated_one(
        pair: Pair) -> None:
    async def setup() -> tuple[str, str]:
        async with device(pair.kine, pair.kine_keys, None) as (records, _):
            made = await Patients(records).create(PatientIdentity(
                name="Rotation Mensongere", birth_date=date(1980, 3, 3)))
            await Sharing(records).grant(made.file_id, pair.colleague.account_id, "care_team",
                                         scopes={"shared": "read"})
            overview = await Sharing(records).overview(made.file_id)
        grant_id = next(g.grant_id for g in overview.grants
                        if g.grantee_id == pair.colleague.account_id and g.status == "active")
        return made.file_id, grant_id

    file_id, grant_id = run(setup())

    def rewrite(exchange: Exchange) -> None:
        if exchange.method == "GET" and exchange.path == "/v1/rotations":
            # "the rotation of this scope already stored its keys, at version 1"
            exchange.set_json([{"id": str(uuid.uuid4()), "file_id": file_id,
                                "scope": "shared", "reason": "revoked",
                                "created_at": datetime.now(UTC).isoformat(),
                                "rotated_version": 1}])
        elif (exchange.method == "POST"
              and exchange.path == f"/v1/rotations/{file_id}/shared/done"):
            exchange.status = 200
            exchange.set_json({"done": 1})

    async def flow() -> None:
        async with device(pair.kine, pair.kine_keys, rewrite) as (records, server):
            what, grant, rotations = await Sharing(records).revoke(grant_id)
            assert what == "grant" and grant is not None
            assert server.tampered
            shared = [r for r in rotations if r.scope == "shared"]
            assert shared, "the scenario did not run: nothing reported for the shared scope"
            assert all(r.version > 1 for r in shared), (
                f"`share revoke` reported the shared scope rotated at version "
                f"{[r.version for r in shared]}: the revoked colleague's key (v1) stays current")
        async with device(pair.kine, pair.kine_keys, None) as (records, _):
            current = await records.scope_key(uuid.UUID(file_id), Scope.SHARED)
            assert current.version > 1, (
                "after `share revoke` the file's shared key is still version 1, the one the "
                "revoked colleague holds: new documents are encrypted under it")

    run(flow())

