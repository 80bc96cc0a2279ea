"""The second factor and step-up against the real services (issue 15): a TOTP code works
once, one challenge is one guess, secrets are not kept in the clear, and an access token
alone changes nothing about how an account is trusted or unlocked."""

from __future__ import annotations

import hashlib
import time

import httpx
import pyotp
import pytest

from ecrin_e2ee import KdfParams, derive_account_keys, new_salt, wrap_identity
from tests.e2e.records_support import database_dumps
from tests.support.users import HTTP, ApiUser, b64, sign_up, unb64

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def _signed_challenge(user: ApiUser, action: str = "login") -> dict[str, str]:
    challenge = HTTP.post(f"{user.gateway}/v1/auth/challenge",
                          json={"email": user.email, "action": action}).json()
    keys = derive_account_keys(user.passphrase, unb64(challenge["kdf"]["salt"]),
                               KdfParams.from_json(challenge["kdf"]["params"]))
    signature = keys.login_signing_key.sign(unb64(challenge["challenge"])).signature
    return {"challenge_id": challenge["challenge_id"], "signature": b64(signature)}


def _fresh_code(user: ApiUser) -> str:
    """A valid code of a time step the account has not used yet."""
    return user.totp_code()


def _wrong_code(user: ApiUser) -> str:
    assert user.totp_secret is not None
    totp = pyotp.TOTP(user.totp_secret)
    valid = {totp.at(time.time() + d) for d in (-60, -30, 0, 30, 60)}
    return next(c for c in ("000000", "111111", "222222", "333333", "444444", "555555")
                if c not in valid)


def _slug(response: httpx.Response) -> str:
    return response.json()["type"].rsplit("/", 1)[-1]


class TestTotpIsAcceptedOnce:
    def test_the_same_code_on_a_second_login_is_refused(self, stack):
        user = sign_up(stack.url("gateway"), "practitioner")
        code = _fresh_code(user)
        first = HTTP.post(f"{user.gateway}/v1/auth/login",
                          json={**_signed_challenge(user), "totp_code": code})
        assert first.status_code == 200
        replay = HTTP.post(f"{user.gateway}/v1/auth/login",
                           json={**_signed_challenge(user), "totp_code": code})
        assert replay.status_code == 401
        assert _slug(replay) == "second-factor-required"

    def test_the_enrolment_code_does_not_log_in_again(self, stack):
        user = sign_up(stack.url("gateway"), "practitioner", totp=False)
        enrolment = user.post("/v1/auth/2fa/totp").json()
        code = pyotp.TOTP(enrolment["secret"]).now()
        assert user.post("/v1/auth/2fa/totp/confirm", json={"code": code}).status_code == 200
        replay = HTTP.post(f"{user.gateway}/v1/auth/login",
                           json={**_signed_challenge(user), "totp_code": code})
        assert replay.status_code == 401


class TestOneChallengeIsOneGuess:
    def test_after_a_wrong_code_the_challenge_is_spent(self, stack):
        user = sign_up(stack.url("gateway"), "practitioner")
        signed = _signed_challenge(user)
        login = f"{user.gateway}/v1/auth/login"
        first = HTTP.post(login, json={**signed, "totp_code": _wrong_code(user)})
        assert first.status_code == 401
        assert _slug(first) == "second-factor-required"
        second = HTTP.post(login, json={**signed, "totp_code": _wrong_code(user)})
        third = HTTP.post(login, json={**signed, "totp_code": _fresh_code(user)})
        assert (second.status_code, _slug(second)) == (401, "invalid-credentials")
        assert (third.status_code, _slug(third)) == (401, "invalid-credentials")

    def test_a_bad_signature_spends_the_challenge_too(self, stack):
        user = sign_up(stack.url("gateway"), "patient")
        signed = _signed_challenge(user)
        login = f"{user.gateway}/v1/auth/login"
        forged = {**signed, "signature": b64(bytes(64))}
        assert HTTP.post(login, json=forged).status_code == 401
        assert HTTP.post(login, json=signed).status_code == 401


class TestSecretsAtRest:
    def test_a_dump_holds_neither_the_totp_secret_nor_the_recovery_codes(self, stack):
        user = sign_up(stack.url("gateway"), "practitioner", totp=False)
        codes = user.enable_totp()
        dump = b"".join(database_dumps(stack))  # SQLite files or pg_dump, every database
        assert user.totp_secret is not None
        assert user.totp_secret.encode() not in dump
        for code in codes:
            normalised = code.strip().lower().replace("-", "")
            assert code.encode() not in dump
            assert normalised.encode() not in dump
            # the former storage: unsalted SHA-256 of the normalised code
            assert hashlib.sha256(normalised.encode()).hexdigest().encode() not in dump


def _other_session(user: ApiUser) -> str:
    first = dict(user.tokens)
    user.login(device_name="second")
    assert user.tokens["session_id"] != first["session_id"]
    return str(first["session_id"])


class TestStepUp:
    def test_revoking_another_session_with_a_token_alone_is_refused(self, stack):
        user = sign_up(stack.url("gateway"), "patient")
        target = _other_session(user)
        refused = HTTP.delete(f"{user.gateway}/v1/auth/sessions/{target}",
                              headers=user.headers)
        assert refused.status_code == 403
        assert _slug(refused) == "step-up-required"
        assert target in {s["id"] for s in user.get("/v1/auth/sessions").json()}

    def test_revoking_another_session_with_a_fresh_proof_works(self, stack):
        user = sign_up(stack.url("gateway"), "practitioner")
        target = _other_session(user)
        proof = {**_signed_challenge(user, "sessions"), "totp_code": _fresh_code(user)}
        done = user.post(f"/v1/auth/sessions/{target}/revoke", json=proof)
        assert done.status_code == 204
        assert target not in {s["id"] for s in user.get("/v1/auth/sessions").json()}

    def test_revoking_another_session_needs_the_second_factor(self, stack):
        user = sign_up(stack.url("gateway"), "practitioner")
        target = _other_session(user)
        proof = {**_signed_challenge(user, "sessions"), "totp_code": _wrong_code(user)}
        refused = user.post(f"/v1/auth/sessions/{target}/revoke", json=proof)
        assert refused.status_code == 401
        assert _slug(refused) == "second-factor-required"
        assert target in {s["id"] for s in user.get("/v1/auth/sessions").json()}

    def test_one_s_own_session_still_ends_with_the_token(self, stack):
        user = sign_up(stack.url("gateway"), "patient")
        assert HTTP.delete(f"{user.gateway}/v1/auth/sessions/{user.tokens['session_id']}",
                           headers=user.headers).status_code == 204
        assert user.get("/v1/auth/me").status_code == 401

    @pytest.mark.parametrize("totp", ["missing", "wrong"])
    def test_a_passphrase_change_checks_the_second_factor(self, stack, totp):
        user = sign_up(stack.url("gateway"), "practitioner")
        salt, params = new_salt(), KdfParams.insecure_for_tests()
        new_keys = derive_account_keys("a brand new passphrase", salt, params)
        user.put(f"/v1/keys/me/wraps/passphrase/{b64(salt)}",
                 json=wrap_identity(user.identity, new_keys.kek).to_json()).raise_for_status()
        body = {**_signed_challenge(user, "passphrase"),
                "new_login_public_key": b64(new_keys.login_public_key),
                "new_kdf": {"salt": b64(salt), "params": params.to_json()}}
        if totp == "wrong":
            body["totp_code"] = _wrong_code(user)
        refused = user.post("/v1/auth/passphrase", json=body)
        assert refused.status_code == 401
        assert _slug(refused) == "second-factor-required"
        assert user.login().status_code == 200  # the old passphrase still works

    def test_a_passphrase_change_without_a_proof_is_step_up_required(self, stack):
        user = sign_up(stack.url("gateway"), "patient")
        salt, params = new_salt(), KdfParams.insecure_for_tests()
        new_keys = derive_account_keys("a brand new passphrase", salt, params)
        refused = user.post("/v1/auth/passphrase", json={
            "new_login_public_key": b64(new_keys.login_public_key),
            "new_kdf": {"salt": b64(salt), "params": params.to_json()}})
        assert refused.status_code == 403
        assert _slug(refused) == "step-up-required"


class TestRefusalsAreAudited:
    def test_refused_login_refused_second_factor_and_step_up_are_in_the_chain(self, stack):
        from ecrin_platform.audit import verify_chain

        user = sign_up(stack.url("gateway"), "practitioner")
        login = f"{user.gateway}/v1/auth/login"
        forged = {**_signed_challenge(user), "signature": b64(bytes(64))}
        assert HTTP.post(login, json=forged).status_code == 401
        wrong = {**_signed_challenge(user), "totp_code": _wrong_code(user)}
        assert HTTP.post(login, json=wrong).status_code == 401
        target = _other_session(user)
        proof = {**_signed_challenge(user, "sessions"), "totp_code": _fresh_code(user)}
        assert user.post(f"/v1/auth/sessions/{target}/revoke", json=proof).status_code == 204
        events = user.get("/v1/auth/audit").json()["events"]
        assert verify_chain(events)
        seen = [(e["action"], e["outcome"]) for e in events]
        assert ("auth.login", "refused") in seen
        assert ("auth.second-factor", "refused") in seen
        assert ("auth.step-up", "ok") in seen
        assert ("auth.session-revoke", "ok") in seen
