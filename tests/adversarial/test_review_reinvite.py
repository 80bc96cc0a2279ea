"""Attacker's review (web app, F4 follow-up): a revocation undone by a late binding.

The owner's device binds an invitee when it checks the redemption proof, which it does
once per file and session (``Trust.scan_invitations``). Binding an invitee used to also
take the account off the file's "revoked" list ("invited again after a revocation"). A
parent who accepted and was revoked before the owner's device ever checked that proof is
bound LATER, by the old invitation: the revocation is undone, and the next rotation seals
the new key to the revoked parent as soon as the sharing service lists them again. Only an
invitation this device made after the revocation may bring an account back.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from ecrin_client.errors import EcrinError
from ecrin_client.sharing import Sharing

from tests.adversarial.devices import device, run, sealed_to
from tests.adversarial.malicious import Exchange
from tests.adversarial.test_review_findings import World, members_of, new_file, world
from tests.e2e.records_support import new_account

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

__all__ = ["world"]  # the module fixture, shared


async def raw_grant_of(world: World, file_id: str, grantee: str) -> str:
    """The grant's id from the server's list, without the overview (which would check the
    invitation's proof, and bind the parent before the revocation)."""
    async with device(world.kine, world.kine_keys, None) as (records, _):
        grants = (await records.client.transport.request(
            "GET", "/v1/grants", params={"file_id": file_id})).json()
    return next(str(g["id"]) for g in grants
                if g["grantee_id"] == grantee and g["status"] == "active")


def test_an_old_invitation_bound_after_the_revocation_does_not_undo_it(
        world: World, tmp_path) -> None:
    file_id = run(new_file(world, "Revocation tardive"))

    async def invite_and_accept() -> str:
        async with device(world.kine, world.kine_keys, None) as (records, _):
            invited = await Sharing(records).invite(
                file_id, "parent", scopes={"shared": "read"},
                valid_until=datetime.now(UTC) + timedelta(days=365))
        parent = await new_account(world.kine.server, tmp_path / "parent", "representative")
        async with parent.client() as pc:
            precords, _ = await parent.unlocked(pc)
            await Sharing(precords).accept(invited.code)
        return parent.account_id

    parent = run(invite_and_accept())
    row = next(m for m in run(members_of(world, file_id)) if m["account_id"] == parent)
    grant_id = run(raw_grant_of(world, file_id, parent))

    async def revoke() -> None:
        async with device(world.kine, world.kine_keys, None) as (records, _):
            await Sharing(records).revoke(grant_id)

    run(revoke())

    async def rewrite(exchange: Exchange) -> None:
        if exchange.method == "GET" and exchange.path == f"/v1/files/{file_id}/members":
            listed = exchange.json()
            if all(m["account_id"] != parent for m in listed):
                exchange.set_json([*listed, row])

    async def next_session() -> None:
        async with device(world.kine, world.kine_keys, rewrite) as (records, server):
            # any look at the file's sharing checks the old invitation's proof: bound now
            await Sharing(records).overview(file_id)
            with contextlib.suppress(EcrinError):
                await Sharing(records).rotate(file_id, "shared")
            posted = server.bodies("POST", f"/v1/keyrings/{file_id}/entries")
            assert sealed_to(posted), "the device never rotated: the scenario did not run"
            assert server.tampered
            assert parent not in sealed_to(posted), (
                f"the device sealed file {file_id}'s new shared key to {parent}, revoked "
                "before, because binding their old invitation took them off the revoked list")

    run(next_session())


def test_an_invitation_made_after_the_revocation_brings_the_account_back(
        world: World, tmp_path) -> None:
    """The control: re-inviting a revoked parent (a new code, accepted) makes them a member
    again on the owner's device: the next rotation seals to them."""
    file_id = run(new_file(world, "Retour apres revocation"))
    scopes = {"shared": "read"}
    until = datetime.now(UTC) + timedelta(days=365)

    async def story() -> str:
        parent = await new_account(world.kine.server, tmp_path / "parent", "representative")
        async with device(world.kine, world.kine_keys, None) as (records, _):
            first = await Sharing(records).invite(file_id, "parent", scopes=scopes,
                                                  valid_until=until)
        async with parent.client() as pc:
            await Sharing((await parent.unlocked(pc))[0]).accept(first.code)
        grant_id = await raw_grant_of(world, file_id, parent.account_id)
        async with device(world.kine, world.kine_keys, None) as (records, _):
            await Sharing(records).revoke(grant_id)
            again = await Sharing(records).invite(file_id, "parent", scopes=scopes,
                                                  valid_until=until)
        async with parent.client() as pc:
            await Sharing((await parent.unlocked(pc))[0]).accept(again.code)
        return parent.account_id

    parent = run(story())

    async def next_session() -> None:
        async with device(world.kine, world.kine_keys, None) as (records, server):
            overview = await Sharing(records).overview(file_id)
            row = next(g for g in overview.grants
                       if g.grantee_id == parent and g.status == "active")
            assert row.trusted == "invitation"
            await Sharing(records).rotate(file_id, "shared")
            assert parent in sealed_to(server.bodies("POST", f"/v1/keyrings/{file_id}/entries"))

    run(next_session())
