"""Identities are stable (issue 13): an access token alone changes no identity and deletes
or replaces no wrap of the current passphrase; a key change takes a statement signed by the
old key and a fresh passphrase proof, and peers who pinned the old key are told.

Played as an attacker who holds a victim's access token (a stolen laptop session, a leaked
log line), with raw HTTP against the real services; then the honest flow through the SDK.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest
from ecrin_client import AuthError, EcrinClient, IdentityMismatch, Profile

from ecrin_e2ee import (
    IdentityKeys,
    KdfParams,
    KeyChange,
    KeyEncryptionKey,
    PublicIdentity,
    RecoveryKey,
    WrappedIdentity,
    derive_account_keys,
    unwrap_identity,
    wrap_identity,
)
from ecrin_platform.tokens import HEADER, InternalTokenIssuer, Principal
from tests.support.users import HTTP, ApiUser, TotpDevice, b64, sign_up, unb64

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

PASSPHRASE = "identity swap passphrase"


def slug(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), \
        response.text
    return response.json()["type"].rsplit("/", 1)[-1]


def current_salt(user: ApiUser) -> str:
    challenge = HTTP.post(f"{user.gateway}/v1/auth/challenge", json={"email": user.email})
    return challenge.json()["kdf"]["salt"]


def current_kdf(user: ApiUser) -> tuple[str, KeyEncryptionKey]:
    """The current salt (b64) and KEK, from one challenge (they are rate-limited per
    account)."""
    challenge = HTTP.post(f"{user.gateway}/v1/auth/challenge",
                          json={"email": user.email}).json()
    salt = challenge["kdf"]["salt"]
    return salt, derive_account_keys(user.passphrase, unb64(salt),
                                     KdfParams.from_json(challenge["kdf"]["params"])).kek


def published(user: ApiUser, account: uuid.UUID | None = None) -> dict:
    got = user.get(f"/v1/directory/{account or user.account_id}")
    assert got.status_code == 200, got.text
    return got.json()


def assert_account_intact(user: ApiUser) -> None:
    """The directory serves the original identity, and the owner still signs in and opens
    the wrap of the current passphrase to that identity."""
    assert published(user)["identity"] == user.identity.public_identity().to_json()
    assert user.login().status_code == 200
    salt, kek = current_kdf(user)
    wrap = user.get(f"/v1/keys/me/wraps/passphrase/{salt}")
    assert wrap.status_code == 200, wrap.text
    opened = unwrap_identity(WrappedIdentity.from_json(wrap.json()), kek)
    assert opened.to_bytes() == user.identity.to_bytes()


@pytest.fixture
def victim(stack) -> ApiUser:
    return sign_up(stack.url("gateway"), "patient", passphrase=PASSPHRASE)


class TestAnAccessTokenAloneChangesNoIdentity:
    def test_a_new_self_signed_identity_is_refused(self, victim):
        attacker_keys = IdentityKeys.generate(victim.account_id)
        response = victim.put(f"/v1/directory/{victim.account_id}",
                              json=attacker_keys.public_identity().to_json())
        assert response.status_code == 403, response.text
        assert slug(response) == "step-up-required"
        assert_account_intact(victim)

    def test_republishing_the_same_identity_stays_idempotent(self, victim):
        response = victim.put(f"/v1/directory/{victim.account_id}",
                              json=victim.identity.public_identity().to_json())
        assert response.status_code == 200, response.text
        assert response.json()["key_changes"] == []
        assert_account_intact(victim)

    def test_the_kms_replaces_nothing_for_a_forwarding_token(self, stack, victim):
        """Straight at the kms with a genuine internal token for the victim (what a replayed
        forwarding token gives) and even a valid statement signed by the old key: without
        the gateway's step-up claim the kms refuses."""
        new = IdentityKeys.generate(victim.account_id)
        salt, kek = current_kdf(victim)
        body = {
            "identity": new.public_identity().to_json(),
            "key_change": KeyChange.sign(victim.identity, new.public_identity()).to_json(),
            "passphrase": {"key_id": salt, "wrap": wrap_identity(new, kek).to_json()},
            "recovery": wrap_identity(
                new, RecoveryKey.from_text(victim.recovery_text)).to_json(),
        }
        issuer = InternalTokenIssuer((stack.state / "keys" / "internal-token.key").read_bytes())
        principal = Principal(str(victim.account_id), "patient", second_factor=True)
        for extra in ({}, {"system": True}, {"step_up": "passphrase"}, {"step_up": True}):
            token = issuer.issue("kms", principal=principal, **extra)
            response = HTTP.put(f"{stack.url('kms')}/internal/accounts/{victim.account_id}"
                                "/identity", json=body, headers={HEADER: token})
            assert response.status_code == 403, (extra, response.text)
        assert_account_intact(victim)


class TestAnAccessTokenAloneKeepsTheCurrentWrap:
    def test_deleting_the_wrap_of_the_current_passphrase_is_refused(self, victim):
        salt = current_salt(victim)
        response = HTTP.delete(f"{victim.gateway}/v1/keys/me/wraps/passphrase/{salt}",
                               headers=victim.headers)
        assert response.status_code == 409, response.text
        assert slug(response) == "current-passphrase-wrap"
        assert_account_intact(victim)

    def test_a_percent_encoded_salt_is_the_same_salt(self, victim):
        salt = current_salt(victim)
        encoded = "".join(f"%{ord(c):02X}" for c in salt)
        response = HTTP.delete(f"{victim.gateway}/v1/keys/me/wraps/passphrase/{encoded}",
                               headers=victim.headers)
        assert response.status_code == 409, response.text
        assert_account_intact(victim)

    def test_overwriting_the_wrap_of_the_current_passphrase_is_refused(self, victim):
        """A wrap of keys the attacker made, under a key the attacker knows: it would lock
        the owner out (and hand their next unlock the attacker's keys)."""
        attacker = IdentityKeys.generate(victim.account_id)
        bogus_kek = derive_account_keys("attacker", bytes(16), KdfParams.insecure_for_tests()).kek
        response = victim.put(f"/v1/keys/me/wraps/passphrase/{current_salt(victim)}",
                              json=wrap_identity(attacker, bogus_kek).to_json())
        assert response.status_code == 409, response.text
        assert_account_intact(victim)

    def test_old_salts_and_new_salts_stay_the_clients_to_manage(self, victim):
        """A passphrase change stores a wrap for a new salt first, and deletes the old
        salt's wrap after the switch: both stay open to the access token."""
        new_salt = b64(bytes(range(16)))
        wrap = wrap_identity(victim.identity, current_kdf(victim)[1]).to_json()
        path = f"/v1/keys/me/wraps/passphrase/{new_salt}"
        assert victim.put(path, json=wrap).status_code == 204
        assert HTTP.delete(victim.gateway + path, headers=victim.headers).status_code == 204
        assert_account_intact(victim)


def identity_change_body(user: ApiUser, *, new: IdentityKeys, statement: KeyChange,
                         action: str = "identity", signer: bytes | None = None,
                         totp: bool = True) -> dict:
    """The step-up as the real client makes it: a fresh challenge signed by the login key."""
    challenge = HTTP.post(f"{user.gateway}/v1/auth/challenge",
                          json={"email": user.email, "action": action}).json()
    keys = derive_account_keys(user.passphrase, unb64(challenge["kdf"]["salt"]),
                               KdfParams.from_json(challenge["kdf"]["params"]))
    signing = keys.login_signing_key
    if signer is not None:
        from nacl.signing import SigningKey

        signing = SigningKey(signer)
    body = {"challenge_id": challenge["challenge_id"],
            "signature": b64(signing.sign(unb64(challenge["challenge"])).signature),
            "identity": new.public_identity().to_json(), "key_change": statement.to_json(),
            "wrapped_keys": {
                "passphrase": wrap_identity(new, keys.kek).to_json(),
                "recovery": wrap_identity(new, RecoveryKey.from_text(user.recovery_text))
                .to_json()}}
    if totp and user.totp_secret:
        body["totp_code"] = user.totp_code()
    return body


@pytest.fixture
def practitioner(stack) -> ApiUser:
    return sign_up(stack.url("gateway"), "practitioner", passphrase=PASSPHRASE)


class TestTheStepUpIsNotEnough:
    # One account per case: the gateway takes each TOTP step once, and an account has three
    # steps at hand (drift either side of now); a fourth code would wait for the clock.
    @pytest.mark.parametrize("third", [False, True], ids=["new-key", "third-key"])
    def test_a_statement_signed_by_another_key_is_refused(self, practitioner, third):
        """The attacker knows the passphrase and the TOTP (the step-up passes) but not the
        identity private key: a statement signed by the new key, or by a third one, is
        refused by the kms."""
        new = IdentityKeys.generate(practitioner.account_id)
        honest = KeyChange.sign(practitioner.identity, new.public_identity())
        signer = IdentityKeys.generate(uuid.uuid4()) if third else new
        forged = KeyChange(honest.account_id, honest.old_fingerprint,
                           honest.new_fingerprint, honest.changed_at,
                           signer.sign(honest.signed_bytes()))
        response = practitioner.post("/v1/auth/identity", json=identity_change_body(
            practitioner, new=new, statement=forged))
        assert response.status_code == 422, response.text
        assert slug(response) == "invalid-key-change"
        assert_account_intact(practitioner)

    def test_a_statement_for_another_identity_is_refused(self, practitioner):
        new = IdentityKeys.generate(practitioner.account_id)
        other = IdentityKeys.generate(practitioner.account_id)
        statement = KeyChange.sign(practitioner.identity, other.public_identity())
        response = practitioner.post("/v1/auth/identity", json=identity_change_body(
            practitioner, new=new, statement=statement))
        assert response.status_code == 422, response.text
        assert_account_intact(practitioner)

    @pytest.mark.parametrize(("refusal", "status"), [
        ({"signer": bytes(32)}, 401),   # not the login key
        ({"action": "login"}, 401),     # a challenge for another use
        ({"totp": False}, 401),         # second factor missing
        ({"drop": "challenge_id"}, 422),
    ], ids=["not-the-login-key", "another-use", "no-second-factor", "no-challenge"])
    def test_without_the_passphrase_proof_or_the_second_factor_nothing_changes(
            self, practitioner, refusal, status):
        new = IdentityKeys.generate(practitioner.account_id)
        statement = KeyChange.sign(practitioner.identity, new.public_identity())
        drop = refusal.pop("drop", None)
        body = identity_change_body(practitioner, new=new, statement=statement, **refusal)
        if drop:
            body.pop(drop)
        response = practitioner.post("/v1/auth/identity", json=body)
        assert response.status_code == status, response.text
        assert_account_intact(practitioner)


# -- the honest flow, through the SDK ---------------------------------------------------------


async def sdk_practitioner(server: str, home: Path
                           ) -> tuple[EcrinClient, str, str, TotpDevice]:
    """(client, account id, recovery key text, authenticator), signed in with TOTP. The
    authenticator also holds the one-time recovery codes: the gateway takes each TOTP
    step once, and a scenario that needs more codes than the window holds uses them."""
    email = f"kine-{uuid.uuid4().hex[:10]}@example.fr"
    client = EcrinClient(server, Profile(home))
    account, recovery = await client.signup(email, PASSPHRASE, "practitioner")
    await client.login(email, PASSPHRASE)
    enrolment = await client.enable_totp()
    device = TotpDevice(enrolment.secret)
    device.recovery_codes = await client.confirm_totp(device.code())
    return client, account.account_id, recovery, device


class TestTheHonestChange:
    def test_change_then_peers_are_told_and_the_account_still_works(self, stack, tmp_path):
        asyncio.run(self._scenario(stack.url("gateway"), tmp_path))

    async def _scenario(self, server: str, tmp_path: Path) -> None:
        alice, alice_id, alice_recovery, alice_totp = await sdk_practitioner(
            server, tmp_path / "alice")
        bob, bob_id, _, _ = await sdk_practitioner(server, tmp_path / "bob")
        try:
            seen = await bob.verify_account(alice_id)
            bob.pin(alice_id, seen.fingerprint)
            old_fingerprint = seen.fingerprint
            second_device = EcrinClient(server, Profile(tmp_path / "alice-tablet"))
            email = Profile(tmp_path / "alice").settings().email
            assert email
            await second_device.login(email, PASSPHRASE,
                                      recovery_code=alice_totp.recovery_codes[0])

            new_fingerprint = await alice.change_identity(
                PASSPHRASE, alice_recovery, totp_code=alice_totp.code())
            assert new_fingerprint != old_fingerprint

            # the directory serves the new key with the statement signed by the old one
            entry = (await alice.transport.request("GET", f"/v1/directory/{alice_id}")).json()
            assert "".join(entry["fingerprint"].split()) == "".join(new_fingerprint.split())
            (change,) = entry["key_changes"]
            old = PublicIdentity.from_json(change["previous_identity"])
            assert old.fingerprint_hex() == old_fingerprint
            KeyChange.from_json(change["statement"]).verify(
                old, PublicIdentity.from_json(entry["identity"]))

            # a peer who pinned the old key is refused the new one, and told why
            with pytest.raises(IdentityMismatch, match="replaced its key; the change is "
                                                       "signed by the key you verified") as err:
                await bob.get_directory(alice_id)
            assert err.value.exit_code == 7
            again = await bob.verify_account(alice_id, replacing=True)
            assert again.key_change_signed is True and again.replaces == old_fingerprint
            bob.replace_pin(alice_id, again.fingerprint, again.replaces)
            assert (await bob.get_directory(alice_id)).fingerprint_hex() == new_fingerprint

            # the account's other sessions ended; its other device takes the new key at login
            with pytest.raises(AuthError):
                await second_device.whoami()
            login = await second_device.login(email, PASSPHRASE,
                                              recovery_code=alice_totp.recovery_codes[1])
            assert login.fingerprint == new_fingerprint

            # the recovery wrap holds the new keys: recovery still works
            fresh = EcrinClient(server, Profile(tmp_path / "alice-recovering"))
            recovered = await fresh.recover(email, alice_recovery, PASSPHRASE + " renewed",
                                            recovery_code=alice_totp.recovery_codes[2])
            # the recovery spent its one-time code: signing in again takes another
            assert recovered is None
            recovered = await fresh.login(email, PASSPHRASE + " renewed",
                                          recovery_code=alice_totp.recovery_codes[3])
            assert recovered.fingerprint == new_fingerprint
            await second_device.aclose()
            await fresh.aclose()
        finally:
            await alice.aclose()
            await bob.aclose()
