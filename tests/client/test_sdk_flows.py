"""The SDK's flows against the fake gateway + kms: two devices, one account."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest
from ecrin_client import (
    Conflict,
    IdentityMismatch,
    IntegrityError,
    InvalidCredentials,
    InvalidInput,
    NotLoggedIn,
    RateLimited,
    SecondFactorRequired,
    ServerError,
    SessionRevoked,
    Unavailable,
)

from ecrin_e2ee import IdentityKeys, KdfParams
from tests.client.conftest import EMAIL, NEW_PASSPHRASE, PASSPHRASE
from tests.client.fake_server import TOTP_CODE, b64e


async def signed_up(open_client, profile, email=EMAIL, role="practitioner"):
    client = open_client(profile)
    account, recovery_text = await client.signup(email, PASSPHRASE, role)
    return client, account, recovery_text


class TestSignup:
    async def test_returns_account_and_a_recovery_key_once(self, fake, open_client, device_a):
        _, account, recovery_text = await signed_up(open_client, device_a)
        assert account.email == EMAIL and account.role == "practitioner"
        assert recovery_text.startswith("ecrin-rk-")
        settings = device_a.settings()
        assert settings.account_id == account.account_id
        assert device_a.tokens() is None  # sign-up alone does not sign in

    async def test_retries_with_the_same_idempotency_key_while_unavailable(
            self, fake, open_client, device_a):
        fake.down_times, fake.down_paths = 2, {"/v1/auth/signup"}
        _, account, _ = await signed_up(open_client, device_a)
        assert fake.calls.count(("POST", "/v1/auth/signup")) == 3
        assert len(fake.signups) == 1 and EMAIL in fake.accounts

    async def test_email_taken_is_not_revealed(self, fake, open_client, device_a, device_b):
        _, first, _ = await signed_up(open_client, device_a)
        _, second, _ = await signed_up(open_client, device_b)  # no Conflict: no enumeration
        assert second.email == first.email and second.account_id != first.account_id
        assert fake.accounts[EMAIL].id == first.account_id  # nothing was created

    async def test_unknown_role_is_refused_before_any_request(self, fake, open_client,
                                                              device_a):
        with pytest.raises(InvalidInput):
            await open_client(device_a).signup(EMAIL, PASSPHRASE, "admin")
        assert fake.calls == []


class TestLogin:
    async def test_second_device_logs_in_and_unwraps(self, fake, open_client, device_a,
                                                     device_b):
        _, account, _ = await signed_up(open_client, device_a)
        client_b = open_client(device_b)
        result = await client_b.login(EMAIL, PASSPHRASE, device_name="tablet")
        assert result.account.id == account.account_id
        assert device_b.tokens() is not None
        assert device_b.pinned(account.account_id) == result.fingerprint
        me = await client_b.whoami()
        assert me.session_id == result.session_id
        identity = await client_b.unlock(PASSPHRASE)
        assert isinstance(identity, IdentityKeys)

    async def test_wrong_passphrase_and_unknown_account_are_one_error(
            self, open_client, device_a, device_b):
        await signed_up(open_client, device_a)
        client_b = open_client(device_b)
        with pytest.raises(InvalidCredentials) as wrong:
            await client_b.login(EMAIL, "not the passphrase")
        with pytest.raises(InvalidCredentials) as unknown:
            await client_b.login("nobody@example.fr", PASSPHRASE)
        assert wrong.value.message == unknown.value.message
        assert device_b.tokens() is None

    async def test_second_factor_required_then_accepted(self, fake, open_client, device_a,
                                                        device_b):
        client_a, _, _ = await signed_up(open_client, device_a)
        await client_a.login(EMAIL, PASSPHRASE)
        await client_a.enable_totp()
        codes = await client_a.confirm_totp(TOTP_CODE)
        assert len(codes) == 10
        client_b = open_client(device_b)
        with pytest.raises(SecondFactorRequired):
            await client_b.login(EMAIL, PASSPHRASE)
        assert (await client_b.login(EMAIL, PASSPHRASE, totp_code=TOTP_CODE)
                ).second_factor_verified
        await client_b.logout()
        assert (await client_b.login(EMAIL, PASSPHRASE, recovery_code=codes[0])).account

    async def test_challenge_for_another_host_is_not_signed(self, fake, open_client,
                                                            device_a, device_b):
        await signed_up(open_client, device_a)
        fake.challenge_host = "phishing.example"
        with pytest.raises(IntegrityError, match="another server"):
            await open_client(device_b).login(EMAIL, PASSPHRASE)
        assert ("POST", "/v1/auth/login") not in fake.calls

    async def test_weakened_kdf_parameters_are_refused(self, fake, open_client, device_a,
                                                       device_b, monkeypatch):
        await signed_up(open_client, device_a)
        monkeypatch.setenv("ECRIN_KDF_PROFILE", "moderate")
        with pytest.raises(IntegrityError, match="weaker"):
            await open_client(device_b).login(EMAIL, PASSPHRASE)
        assert ("POST", "/v1/auth/login") not in fake.calls

    async def test_a_tampered_wrap_fails_the_login_and_ends_the_session(
            self, fake, open_client, device_a, device_b):
        _, account, _ = await signed_up(open_client, device_a)
        key = (account.account_id, fake.accounts[EMAIL].salt)
        wrap = dict(fake.passphrase_wraps[key])
        raw = bytearray(base64.urlsafe_b64decode(wrap["ciphertext"] + "=="))
        raw[0] ^= 1
        wrap["ciphertext"] = b64e(bytes(raw))
        fake.passphrase_wraps[key] = wrap
        with pytest.raises(IntegrityError):
            await open_client(device_b).login(EMAIL, PASSPHRASE)
        assert device_b.tokens() is None
        assert not any(s.live for s in fake.sessions.values())

    async def test_two_requests_the_keys_come_with_the_login(
            self, fake, open_client, device_a, device_b):
        await signed_up(open_client, device_a)
        fake.calls.clear()
        result = await open_client(device_b).login(EMAIL, PASSPHRASE)
        assert fake.calls == [("POST", "/v1/auth/challenge"), ("POST", "/v1/auth/login")]
        assert device_b.pinned(result.account.id) is not None

    async def test_a_gateway_older_than_unlock_still_logs_in(
            self, fake, open_client, device_a, device_b):
        """It refuses the field (422) before it reads the challenge: the same signed body
        goes again without it, and the keys come in a request apart."""
        await signed_up(open_client, device_a)
        fake.login_unlock_known = False
        fake.calls.clear()
        result = await open_client(device_b).login(EMAIL, PASSPHRASE)
        salt = fake.accounts[EMAIL].salt
        assert fake.calls == [("POST", "/v1/auth/challenge"), ("POST", "/v1/auth/login"),
                              ("POST", "/v1/auth/login"), ("GET", f"/v1/keys/me/unlock/{salt}")]
        assert device_b.pinned(result.account.id) is not None

    async def test_without_the_keys_in_the_answer_the_device_asks_for_them(
            self, fake, open_client, device_a, device_b):
        """A kms that did not give them to the gateway: the keys come in a third request,
        which says why if they cannot come at all."""
        await signed_up(open_client, device_a)
        fake.login_unlock = False
        fake.calls.clear()
        await open_client(device_b).login(EMAIL, PASSPHRASE)
        salt = fake.accounts[EMAIL].salt
        assert fake.calls == [("POST", "/v1/auth/challenge"), ("POST", "/v1/auth/login"),
                              ("GET", f"/v1/keys/me/unlock/{salt}")]

    async def test_a_malformed_bundle_in_the_login_answer_is_refused(
            self, fake, open_client, device_a, device_b, monkeypatch):
        await signed_up(open_client, device_a)
        route = fake.route_auth_login_post

        def malformed(request, body, params):
            answer = route(request, body, params).json()
            answer["unlock"] = {"wrap": "not a wrap"}
            return httpx.Response(200, json=answer)

        monkeypatch.setattr(fake, "route_auth_login_post", malformed)
        with pytest.raises(ServerError, match="does not follow the API"):
            await open_client(device_b).login(EMAIL, PASSPHRASE)

    async def test_a_swapped_own_directory_entry_fails_the_login(
            self, fake, open_client, device_a, device_b):
        """The entry served beside the wrap is still checked against the keys it opens."""
        import uuid

        _, account, _ = await signed_up(open_client, device_a)
        forged = IdentityKeys.generate(uuid.UUID(account.account_id)).public_identity()
        fake.directory[account.account_id] = {
            "identity": forged.to_json(), "fingerprint": forged.fingerprint().hex(),
            "updated_at": "2025-01-01T00:00:00Z"}
        with pytest.raises(IdentityMismatch, match="another key for your own account"):
            await open_client(device_b).login(EMAIL, PASSPHRASE)
        assert device_b.tokens() is None
        assert device_b.pinned(account.account_id) is None

    async def test_rate_limited(self, fake, open_client, device_a):
        fake.rate_limited = True
        with pytest.raises(RateLimited) as caught:
            await open_client(device_a).login(EMAIL, PASSPHRASE)
        assert caught.value.retry_after == 17


class TestTokens:
    async def test_expired_access_token_is_refreshed_once(self, fake, open_client, device_a):
        client, _, _ = await signed_up(open_client, device_a)
        await client.login(EMAIL, PASSPHRASE)
        before = device_a.tokens()
        fake.expire_access_tokens()
        await client.whoami()
        after = device_a.tokens()
        assert after.refresh_token != before.refresh_token
        assert fake.calls.count(("POST", "/v1/auth/refresh")) == 1

    async def test_concurrent_401s_refresh_only_once(self, fake, open_client, device_a):
        client, _, _ = await signed_up(open_client, device_a)
        await client.login(EMAIL, PASSPHRASE)
        fake.expire_access_tokens()
        await asyncio.gather(client.whoami(), client.sessions(), client.whoami())
        assert fake.calls.count(("POST", "/v1/auth/refresh")) == 1

    async def test_reused_refresh_token_ends_the_session(self, fake, open_client, device_a):
        client, _, _ = await signed_up(open_client, device_a)
        await client.login(EMAIL, PASSPHRASE)
        stolen = device_a.tokens()
        await client.refresh()
        fake.refresh[stolen.refresh_token] = (stolen.session_id, True)
        # the attacker replays the old refresh token: the whole session is revoked
        fake.route_auth_refresh_post(None, {"refresh_token": stolen.refresh_token}, [])
        fake.expire_access_tokens()
        with pytest.raises(SessionRevoked):
            await client.whoami()
        assert device_a.tokens() is None

    async def test_logout_and_revoke(self, fake, open_client, device_a, device_b):
        client_a, _, _ = await signed_up(open_client, device_a)
        await client_a.login(EMAIL, PASSPHRASE, device_name="desk")
        client_b = open_client(device_b)
        b = await client_b.login(EMAIL, PASSPHRASE, device_name="tablet")
        sessions = await client_a.sessions()
        assert {s.device_name for s in sessions} == {"desk", "tablet"}
        assert [s.current for s in sessions].count(True) == 1
        with pytest.raises(InvalidInput):  # another device's session needs a step-up
            await client_a.revoke_session(b.session_id)
        await client_a.revoke_session(b.session_id, PASSPHRASE)
        with pytest.raises(SessionRevoked):
            await client_b.whoami()
        await client_a.logout()
        assert device_a.tokens() is None
        with pytest.raises(NotLoggedIn):
            await client_a.whoami()


class TestPassphraseChange:
    async def test_new_works_old_fails_and_the_old_wrap_is_gone(
            self, fake, open_client, device_a, device_b):
        client_a, account, _ = await signed_up(open_client, device_a)
        await client_a.login(EMAIL, PASSPHRASE)
        client_b = open_client(device_b)
        await client_b.login(EMAIL, PASSPHRASE)
        old_salt = fake.accounts[EMAIL].salt
        await client_a.change_passphrase(PASSPHRASE, NEW_PASSPHRASE)
        assert fake.accounts[EMAIL].salt != old_salt
        assert [salt for (_, salt) in fake.passphrase_wraps] == [fake.accounts[EMAIL].salt]
        with pytest.raises(SessionRevoked):  # the other device was signed out
            await client_b.whoami()
        with pytest.raises(InvalidCredentials):
            await client_b.login(EMAIL, PASSPHRASE)
        await client_b.login(EMAIL, NEW_PASSPHRASE)
        await client_a.whoami()  # this device stays signed in
        await client_a.unlock(NEW_PASSPHRASE)

    async def test_wrong_current_passphrase_changes_nothing(self, fake, open_client, device_a):
        client, _, _ = await signed_up(open_client, device_a)
        await client.login(EMAIL, PASSPHRASE)
        with pytest.raises(InvalidCredentials):
            await client.change_passphrase("wrong passphrase!", NEW_PASSPHRASE)
        assert len(fake.passphrase_wraps) == 1
        assert ("PUT", f"/v1/keys/me/wraps/passphrase/{fake.accounts[EMAIL].salt}") \
            not in fake.calls

    async def test_a_crash_before_the_switch_keeps_the_old_passphrase(
            self, fake, open_client, device_a, device_b):
        client, _, _ = await signed_up(open_client, device_a)
        await client.login(EMAIL, PASSPHRASE)
        fake.down_times, fake.down_paths = 1, {"/v1/auth/passphrase"}
        with pytest.raises(Unavailable):
            await client.change_passphrase(PASSPHRASE, NEW_PASSPHRASE)
        await open_client(device_b).login(EMAIL, PASSPHRASE)

    async def test_steps_run_in_the_contract_order(self, fake, open_client, device_a):
        client, _, _ = await signed_up(open_client, device_a)
        await client.login(EMAIL, PASSPHRASE)
        old_salt = fake.accounts[EMAIL].salt
        fake.calls.clear()
        await client.change_passphrase(PASSPHRASE, NEW_PASSPHRASE)
        new_salt = fake.accounts[EMAIL].salt
        order = [c for c in fake.calls if c[0] != "GET"]
        assert order[-4:] == [
            ("PUT", f"/v1/keys/me/wraps/passphrase/{new_salt}"),
            ("POST", "/v1/auth/challenge"),
            ("POST", "/v1/auth/passphrase"),
            ("DELETE", f"/v1/keys/me/wraps/passphrase/{old_salt}"),
        ]


class TestRecovery:
    async def test_forgotten_passphrase(self, fake, open_client, device_a, device_b):
        client_a, account, recovery_text = await signed_up(open_client, device_a)
        await client_a.login(EMAIL, PASSPHRASE)
        client_b = open_client(device_b)
        result = await client_b.recover(EMAIL, recovery_text, NEW_PASSPHRASE)
        assert result is not None and result.account.id == account.account_id
        with pytest.raises(SessionRevoked):
            await client_a.whoami()
        with pytest.raises(InvalidCredentials):
            await client_a.login(EMAIL, PASSPHRASE)
        await client_a.login(EMAIL, NEW_PASSPHRASE)
        assert len(fake.passphrase_wraps) == 1  # the forgotten passphrase's wrap is deleted

    async def test_wrong_recovery_key_is_invalid_credentials(self, open_client, device_a,
                                                             device_b):
        await signed_up(open_client, device_a)
        _, _, other_key = await signed_up(open_client, device_b, email="other@example.fr")
        with pytest.raises(InvalidCredentials):
            await open_client(device_b).recover(EMAIL, other_key, NEW_PASSPHRASE)

    async def test_a_typo_in_the_recovery_key_is_invalid_input(self, open_client, device_a):
        _, _, text = await signed_up(open_client, device_a)
        typo = text[:-1] + ("0" if text[-1] != "0" else "1")
        with pytest.raises(InvalidInput, match="recovery key"):
            await open_client(device_a).recover(EMAIL, typo, NEW_PASSPHRASE)

    async def test_with_a_second_factor_returns_none_when_login_needs_a_new_code(
            self, fake, open_client, device_a, device_b):
        client_a, _, text = await signed_up(open_client, device_a)
        await client_a.login(EMAIL, PASSPHRASE)
        await client_a.enable_totp()
        codes = await client_a.confirm_totp(TOTP_CODE)
        client_b = open_client(device_b)
        with pytest.raises(SecondFactorRequired):
            await client_b.recover(EMAIL, text, NEW_PASSPHRASE)
        assert await client_b.recover(EMAIL, text, NEW_PASSPHRASE,
                                      recovery_code=codes[0]) is None
        await client_b.login(EMAIL, NEW_PASSPHRASE, totp_code=TOTP_CODE)


class TestDirectoryAndPins:
    async def two_accounts(self, open_client, device_a, device_b):
        client_a, a, _ = await signed_up(open_client, device_a)
        await client_a.login(EMAIL, PASSPHRASE)
        client_b, b, _ = await signed_up(open_client, device_b, email="patient@example.fr",
                                         role="patient")
        await client_b.login("patient@example.fr", PASSPHRASE)
        return client_a, a.account_id, client_b, b.account_id

    async def test_safety_number_is_the_same_on_both_sides(self, open_client, device_a,
                                                          device_b):
        client_a, a, client_b, b = await self.two_accounts(open_client, device_a, device_b)
        seen_by_a = await client_a.verify_account(b)
        seen_by_b = await client_b.verify_account(a)
        assert seen_by_a.safety_number == seen_by_b.safety_number
        assert len(seen_by_a.safety_number.replace(" ", "")) == 60
        assert not seen_by_a.pinned

    async def test_a_changed_key_is_refused_after_pinning(self, fake, open_client, device_a,
                                                          device_b):
        client_a, _, client_b, b = await self.two_accounts(open_client, device_a, device_b)
        seen = await client_a.verify_account(b)
        client_a.pin(b, seen.fingerprint)
        assert (await client_a.verify_account(b)).pinned
        # the server substitutes another (validly self-signed) identity for b
        import uuid

        forged = IdentityKeys.generate(uuid.UUID(b)).public_identity()
        fake.directory[b] = {"identity": forged.to_json(),
                             "fingerprint": forged.fingerprint().hex()}
        with pytest.raises(IdentityMismatch, match="CHANGED"):
            await client_a.verify_account(b)
        with pytest.raises(IdentityMismatch):
            await client_a.get_directory(b)
        with pytest.raises(IdentityMismatch):
            client_a.pin(b, forged.fingerprint_hex())

    async def test_another_accounts_identity_is_refused(self, fake, open_client, device_a,
                                                        device_b):
        client_a, a, _, b = await self.two_accounts(open_client, device_a, device_b)
        fake.directory[b] = fake.directory[a]
        with pytest.raises(IdentityMismatch, match="another account"):
            await client_a.get_directory(b)

    async def test_a_wrong_fingerprint_claim_is_refused(self, fake, open_client, device_a,
                                                        device_b):
        client_a, _, _, b = await self.two_accounts(open_client, device_a, device_b)
        fake.directory[b] = {**fake.directory[b], "fingerprint": "00" * 32}
        with pytest.raises(IntegrityError):
            await client_a.get_directory(b)

    async def _pinned_then_changed(self, fake, open_client, device_a, device_b, *,
                                   signed_by_old: bool):
        """a pins b; b's identity is then replaced, with a statement signed by b's old key
        (the honest change) or by the new key (what a server could make up)."""
        import uuid

        from ecrin_e2ee import KeyChange

        client_a, _, client_b, b = await self.two_accounts(open_client, device_a, device_b)
        client_a.pin(b, (await client_a.verify_account(b)).fingerprint)
        old = await client_b.unlock(PASSPHRASE)
        new = IdentityKeys.generate(uuid.UUID(b))
        statement = KeyChange.sign(old, new.public_identity())
        if not signed_by_old:
            statement = KeyChange(statement.account_id, statement.old_fingerprint,
                                  statement.new_fingerprint, statement.changed_at,
                                  new.sign(statement.signed_bytes()))
        fake.directory[b] = {
            "identity": new.public_identity().to_json(),
            "fingerprint": new.public_identity().fingerprint().hex(),
            "key_changes": [{"previous_identity": old.public_identity().to_json(),
                             "statement": statement.to_json()}]}
        return client_a, b, old.public_identity(), new.public_identity()

    async def test_a_change_signed_by_the_pinned_key_is_named_and_still_refused(
            self, fake, open_client, device_a, device_b):
        client_a, b, old, new = await self._pinned_then_changed(
            fake, open_client, device_a, device_b, signed_by_old=True)
        with pytest.raises(IdentityMismatch, match="replaced its key; the change is signed by "
                                                   "the key you verified") as refused:
            await client_a.get_directory(b)
        assert refused.value.exit_code == 7 and f"ecrin verify {b}" in str(refused.value)
        with pytest.raises(IdentityMismatch):
            await client_a.verify_account(b)  # not without --replace
        seen = await client_a.verify_account(b, replacing=True)
        assert (seen.pinned, seen.key_change_signed) == (False, True)
        assert seen.replaces == old.fingerprint_hex() and seen.fingerprint == new.fingerprint_hex()
        with pytest.raises(IdentityMismatch):
            await client_a.get_directory(b)  # still refused until the user re-pins
        client_a.replace_pin(b, seen.fingerprint, seen.replaces)
        assert await client_a.get_directory(b) == new

    async def test_a_change_not_signed_by_the_pinned_key_says_so(self, fake, open_client,
                                                                 device_a, device_b):
        client_a, b, old, _ = await self._pinned_then_changed(
            fake, open_client, device_a, device_b, signed_by_old=False)
        with pytest.raises(IdentityMismatch, match="no statement signed by the key you "
                                                   "verified"):
            await client_a.get_directory(b)
        seen = await client_a.verify_account(b, replacing=True)
        assert seen.key_change_signed is False and seen.replaces == old.fingerprint_hex()
        with pytest.raises(Conflict):
            client_a.replace_pin(b, seen.fingerprint, "00" * 32)  # not the pin shown


class TestKdfProfile:
    def test_insecure_test_profile_maps_to_the_libsodium_minimum(self, monkeypatch):
        from ecrin_client import kdf_policy

        assert kdf_policy.default_params() == KdfParams.insecure_for_tests()
        monkeypatch.setenv("ECRIN_KDF_PROFILE", "moderate")
        assert kdf_policy.default_params() == KdfParams.moderate()
        monkeypatch.delenv("ECRIN_KDF_PROFILE")
        assert kdf_policy.default_params() == KdfParams.moderate()
        monkeypatch.setenv("ECRIN_KDF_PROFILE", "fast")
        with pytest.raises(InvalidInput):
            kdf_policy.default_params()
