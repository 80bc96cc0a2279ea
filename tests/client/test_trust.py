"""The trust rule in one place (ecrin_client.trust): why a device may use a key, on its own
records only; entitlement of granters; bindings that cannot be overwritten."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, cast

import pytest
from ecrin_client import IdentityMismatch, Profile
from ecrin_client.trust import Binding, Trust, TrustStore, Untrusted, Why

from ecrin_e2ee import IdentityKeys, PublicIdentity

if TYPE_CHECKING:
    from ecrin_client import EcrinClient


class Directory:
    """Stands in for the client: what the directory serves, and the invitation list."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.entries: dict[str, PublicIdentity] = {}
        self.transport = self
        self.requests: list[str] = []

    async def get_directory(self, account_id: str) -> PublicIdentity:
        from ecrin_client.pinning import check_pin

        identity = self.entries[account_id]
        pinned = self.profile.pinned(account_id)
        if pinned is not None:
            check_pin(identity, pinned)
        return identity

    async def _directory_identity(self, account_id: str) -> PublicIdentity:
        return self.entries[account_id]

    async def request(self, method: str, path: str, **_: Any) -> Any:
        from ecrin_client.errors import PermissionDenied

        self.requests.append(path)
        raise PermissionDenied("only the owner sees invitations")


@pytest.fixture
def setup(tmp_path):
    profile = Profile(tmp_path)
    me = IdentityKeys.generate(uuid.uuid4())
    directory = Directory(profile)
    directory.entries[str(me.account_id)] = me.public_identity()
    return Trust(cast("EcrinClient", directory), me), directory, profile


def someone(directory: Directory) -> IdentityKeys:
    keys = IdentityKeys.generate(uuid.uuid4())
    directory.entries[str(keys.account_id)] = keys.public_identity()
    return keys


class TestTheRule:
    async def test_own_account_needs_no_record(self, setup):
        trust, _, _ = setup
        assert trust.reason(trust.own_id) is Why.SELF
        assert (await trust.identity(trust.own_id)).account_id == trust.keys.account_id

    async def test_an_account_the_directory_serves_is_not_trusted_by_itself(self, setup):
        trust, directory, _ = setup
        stranger = someone(directory)
        with pytest.raises(Untrusted) as refused:
            await trust.identity(stranger.account_id)
        assert refused.value.exit_code == 7
        assert str(stranger.account_id) in str(refused.value)
        assert f"ecrin verify {stranger.account_id}" in str(refused.value)

    async def test_verified_in_person(self, setup):
        trust, directory, profile = setup
        colleague = someone(directory)
        profile.pin(str(colleague.account_id), colleague.public_identity().fingerprint_hex())
        assert trust.reason(colleague.account_id) is Why.VERIFIED
        assert await trust.identity(colleague.account_id)

    async def test_a_changed_key_of_a_bound_account_is_refused(self, setup):
        trust, directory, _ = setup
        parent = someone(directory)
        file_id = str(uuid.uuid4())
        trust.bind_inviter(parent.public_identity(), parent.public_identity().fingerprint(),
                           file_id=file_id, invitation_id=str(uuid.uuid4()))
        directory.entries[str(parent.account_id)] = IdentityKeys.generate(
            parent.account_id).public_identity()
        with pytest.raises(IdentityMismatch):
            await trust.identity(parent.account_id)


class TestGranters:
    async def test_only_self_verified_or_the_inviter_of_that_file(self, setup):
        trust, directory, profile = setup
        file_a, file_b = str(uuid.uuid4()), str(uuid.uuid4())
        inviter, invitee, colleague = someone(directory), someone(directory), someone(directory)
        trust.bind_inviter(inviter.public_identity(), inviter.public_identity().fingerprint(),
                           file_id=file_a, invitation_id="i1")
        TrustStore(profile).bind(Binding(str(invitee.account_id),
                                         invitee.public_identity().fingerprint_hex(),
                                         file_a, "invitee", "i2"))
        profile.pin(str(colleague.account_id), colleague.public_identity().fingerprint_hex())
        assert await trust.granter(trust.own_id, file_a)
        assert await trust.granter(colleague.account_id, file_b)
        assert await trust.granter(inviter.account_id, file_a)
        with pytest.raises(Untrusted):  # the inviter of another file
            await trust.granter(inviter.account_id, file_b)
        assert await trust.identity(invitee.account_id)  # trusted as an author...
        with pytest.raises(Untrusted):  # ...never as a granter
            await trust.granter(invitee.account_id, file_a)


class TestBindings:
    def test_the_inviter_must_have_the_fingerprint_the_code_named(self, setup):
        trust, directory, _ = setup
        inviter = someone(directory)
        served = IdentityKeys.generate(inviter.account_id).public_identity()
        with pytest.raises(IdentityMismatch):
            trust.bind_inviter(served, inviter.public_identity().fingerprint(),
                               file_id=str(uuid.uuid4()), invitation_id="i")
        assert trust.reason(inviter.account_id) is None

    def test_a_binding_never_overwrites_another_key(self, setup):
        trust, directory, profile = setup
        store = TrustStore(profile)
        parent = someone(directory)
        store.bind(Binding(str(parent.account_id), parent.public_identity().fingerprint_hex(),
                           "f1", "inviter", "i1"))
        other = IdentityKeys.generate(parent.account_id).public_identity()
        with pytest.raises(IdentityMismatch):
            store.bind(Binding(str(parent.account_id), other.fingerprint_hex(), "f2",
                               "inviter", "i2"))
        assert [b.file_id for b in store.bindings(str(parent.account_id))] == ["f1"]

    async def test_not_the_owner_means_no_invitation_scan_and_no_trust(self, setup):
        trust, directory, _ = setup
        stranger = someone(directory)
        file_id = str(uuid.uuid4())
        for _ in range(2):
            with pytest.raises(Untrusted):
                await trust.identity(stranger.account_id, file_id=file_id)
        assert directory.requests == ["/v1/invitations"]  # scanned once per file
