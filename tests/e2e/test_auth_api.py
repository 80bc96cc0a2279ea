"""Accounts against the real services: what an attacker of the login would try."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from ecrin_e2ee import KdfParams, create_account
from ecrin_platform.tokens import generate_keypair_pem
from tests.e2e.records_support import ServiceDatabase
from tests.support.users import HTTP, b64, sign_up, signup_payload

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def _shape(value):
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    if isinstance(value, str):
        return ("str", len(value) if len(value) < 40 else "long")
    return type(value).__name__


class TestEnumeration:
    def test_unknown_and_known_email_get_the_same_shape(self, stack):
        gateway = stack.url("gateway")
        user = sign_up(gateway, "patient")
        known = HTTP.post(f"{gateway}/v1/auth/challenge", json={"email": user.email})
        unknown = HTTP.post(f"{gateway}/v1/auth/challenge",
                            json={"email": "nobody-" + user.email})
        assert known.status_code == unknown.status_code == 200
        assert _shape(known.json()) == _shape(unknown.json())
        assert set(known.headers) - {"date", "x-request-id", "content-length"} == \
            set(unknown.headers) - {"date", "x-request-id", "content-length"}

    def test_unknown_email_gets_a_stable_fake_salt(self, stack):
        gateway = stack.url("gateway")
        first = HTTP.post(f"{gateway}/v1/auth/challenge", json={"email": "ghost@example.fr"})
        second = HTTP.post(f"{gateway}/v1/auth/challenge", json={"email": "ghost@example.fr"})
        assert first.json()["kdf"] == second.json()["kdf"]
        assert first.json()["challenge_id"] != second.json()["challenge_id"]

    def test_login_for_unknown_email_is_the_generic_401(self, stack):
        gateway = stack.url("gateway")
        challenge = HTTP.post(f"{gateway}/v1/auth/challenge",
                              json={"email": "ghost2@example.fr"}).json()
        response = HTTP.post(f"{gateway}/v1/auth/login",
                             json={"challenge_id": challenge["challenge_id"],
                                   "signature": b64(bytes(64))})
        assert response.status_code == 401
        assert response.json()["type"].endswith("/invalid-credentials")


class TestLogin:
    def test_replayed_signature_is_rejected(self, stack):
        gateway = stack.url("gateway")
        user = sign_up(gateway, "patient")
        challenge = HTTP.post(f"{gateway}/v1/auth/challenge", json={"email": user.email}).json()
        from ecrin_e2ee import derive_account_keys
        from tests.support.users import unb64

        keys = derive_account_keys(user.passphrase, unb64(challenge["kdf"]["salt"]),
                                   KdfParams.from_json(challenge["kdf"]["params"]))
        body = {"challenge_id": challenge["challenge_id"],
                "signature": b64(keys.login_signing_key.sign(
                    unb64(challenge["challenge"])).signature)}
        assert HTTP.post(f"{gateway}/v1/auth/login", json=body).status_code == 200
        replay = HTTP.post(f"{gateway}/v1/auth/login", json=body)
        assert replay.status_code == 401

    def test_one_signed_challenge_sent_at_once_opens_one_session(self, stack):
        """A captured login body raced against its owner's: the challenge is spent by
        exactly one of them, whatever their order in the database."""
        gateway = stack.url("gateway")
        user = sign_up(gateway, "patient")
        body = user.step_up("login")  # a signed challenge, as a login sends it
        with httpx.Client() as one, httpx.Client() as other, \
                concurrent.futures.ThreadPoolExecutor(8) as pool:
            clients = [one, other] * 4
            statuses = sorted(pool.map(
                lambda c: c.post(f"{gateway}/v1/auth/login", json=body).status_code, clients))
        assert statuses == [200] + [401] * 7
        assert len(user.get("/v1/auth/sessions").json()) == 2  # the sign-up's, and one

    def test_a_wrong_signature_spends_the_challenge(self, stack):
        gateway = stack.url("gateway")
        user = sign_up(gateway, "patient")
        body = user.step_up("login")
        wrong = {**body, "signature": b64(bytes(64))}
        assert HTTP.post(f"{gateway}/v1/auth/login", json=wrong).status_code == 401
        assert HTTP.post(f"{gateway}/v1/auth/login", json=body).status_code == 401
        db = ServiceDatabase(stack.database_urls["gateway"])
        assert db.rows("SELECT used_at IS NOT NULL FROM login_challenges WHERE id = ?",
                       uuid.UUID(body["challenge_id"])) in ([(True,)], [(1,)])

    def test_a_recovery_challenge_does_not_log_in(self, stack):
        gateway = stack.url("gateway")
        user = sign_up(gateway, "patient")
        body = user.step_up("recover")
        assert HTTP.post(f"{gateway}/v1/auth/login", json=body).status_code == 401

    def test_an_expired_challenge_does_not_log_in(self, stack):
        gateway = stack.url("gateway")
        user = sign_up(gateway, "patient")
        body = user.step_up("login")
        db = ServiceDatabase(stack.database_urls["gateway"])
        # SQLite keeps the column as naive UTC text; asyncpg binds an aware datetime
        past = (datetime(2000, 1, 1, tzinfo=UTC) if db.postgres
                else "2000-01-01 00:00:00.000000")
        db.execute("UPDATE login_challenges SET expires_at = ? WHERE id = ?", past,
                   uuid.UUID(body["challenge_id"]))
        assert HTTP.post(f"{gateway}/v1/auth/login", json=body).status_code == 401
        # refused before its signature was checked: left as it was, not spent
        assert db.rows("SELECT used_at FROM login_challenges WHERE id = ?",
                       uuid.UUID(body["challenge_id"])) == [(None,)]

    def test_challenge_binds_host_and_action(self, stack):
        gateway = stack.url("gateway")
        user = sign_up(gateway, "patient")
        challenge = HTTP.post(f"{gateway}/v1/auth/challenge",
                              json={"email": user.email, "action": "recover"}).json()
        text = base64.urlsafe_b64decode(challenge["challenge"] + "==").decode()
        label, host, action, cid, _nonce, expires = text.split("\n")
        assert (label, action, cid) == ("ecrin-auth-v1", "recover", challenge["challenge_id"])
        assert host == gateway.removeprefix("http://")
        assert int(expires) - time.time() <= 600

    def test_wrong_passphrase_is_401(self, stack):
        user = sign_up(stack.url("gateway"), "patient")
        user.passphrase = "not the passphrase"
        assert user.login().status_code == 401

    def test_the_server_never_sees_the_passphrase(self, stack):
        user = sign_up(stack.url("gateway"), "patient", passphrase="canary-passphrase-3141")
        user.login()
        for db in stack.state.glob("*.db*"):
            assert b"canary-passphrase-3141" not in db.read_bytes()


class TestLoginWithTheKeys:
    """``unlock: true``: the login's answer carries what ``GET /v1/keys/me/unlock/{salt}``
    gives the new session, one request fewer; never to a login that is refused."""

    @staticmethod
    def _salt(user) -> str:
        return HTTP.post(f"{user.gateway}/v1/auth/challenge",
                         json={"email": user.email}).json()["kdf"]["salt"]

    def test_the_answer_carries_what_the_session_would_fetch(self, stack):
        user = sign_up(stack.url("gateway"), "practitioner")
        answer = user.login(unlock=True)
        assert answer.status_code == 200
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["ratelimit-policy"]  # the login's own headers, as without
        given = answer.json()["unlock"]
        assert given["wrap"]["account_id"] == str(user.account_id)
        assert given == user.get(f"/v1/keys/me/unlock/{self._salt(user)}").json()
        assert user.get("/v1/auth/me").json()["session_id"] == answer.json()["session_id"]

    def test_not_asked_for_not_given(self, stack):
        user = sign_up(stack.url("gateway"), "patient")
        answer = user.login()
        assert answer.status_code == 200
        assert answer.json()["unlock"] is None

    def test_a_wrong_passphrase_gets_no_keys(self, stack):
        user = sign_up(stack.url("gateway"), "patient")
        user.passphrase = "not the passphrase"
        answer = user.login(unlock=True)
        assert answer.status_code == 401
        assert "wrap" not in answer.text

    def test_the_passphrase_without_the_second_factor_gets_no_keys(self, stack):
        """Someone who knows the passphrase (so could open the wrap) but not the TOTP code
        is refused before the kms is asked."""
        user = sign_up(stack.url("gateway"), "practitioner")
        user.totp_secret = None
        answer = user.login(unlock=True)
        assert answer.status_code == 401
        assert answer.json()["type"].endswith("/second-factor-required")
        assert "wrap" not in answer.text

    def test_a_recovery_login_cannot_ask_for_them(self, stack):
        user = sign_up(stack.url("gateway"), "patient")
        body = {**user.step_up("recover"), "unlock": True}
        answer = HTTP.post(f"{user.gateway}/v1/auth/recover", json=body)
        assert answer.status_code == 422
        assert answer.headers["content-type"] == "application/problem+json"

    def test_with_the_kms_down_the_login_still_opens_without_them(self, stack):
        user = sign_up(stack.url("gateway"), "patient")
        stack.stop("kms")
        try:
            answer = user.login(unlock=True)
            assert answer.status_code == 200
            assert answer.json()["unlock"] is None
            assert user.get("/v1/auth/me").status_code == 200
        finally:
            stack.start("kms")
            stack.wait_ready(services=["kms"])


class TestRefreshAndSessions:
    def test_refresh_rotates_and_reuse_revokes_the_family(self, stack):
        gateway = stack.url("gateway")
        user = sign_up(gateway, "patient")
        old = user.tokens["refresh_token"]
        first = HTTP.post(f"{gateway}/v1/auth/refresh", json={"refresh_token": old})
        assert first.status_code == 200
        new_tokens = first.json()
        assert new_tokens["refresh_token"] != old
        reuse = HTTP.post(f"{gateway}/v1/auth/refresh", json={"refresh_token": old})
        assert reuse.status_code == 401
        assert reuse.json()["type"].endswith("/refresh-token-reused")
        # The whole family is gone: the newest refresh and access tokens too.
        assert HTTP.post(f"{gateway}/v1/auth/refresh",
                         json={"refresh_token": new_tokens["refresh_token"]}).status_code == 401
        assert HTTP.get(f"{gateway}/v1/auth/me", headers={
            "Authorization": f"Bearer {new_tokens['access_token']}"}).status_code == 401

    def test_revoking_a_session_stops_its_access_token_at_once(self, stack):
        gateway = stack.url("gateway")
        user = sign_up(gateway, "patient")
        other_device = dict(user.tokens)
        user.login(device_name="second")
        sessions = user.get("/v1/auth/sessions").json()
        assert len(sessions) == 2
        target = next(s for s in sessions if not s["current"])
        assert user.revoke_session(target["id"]).status_code == 204
        stale = {"Authorization": f"Bearer {other_device['access_token']}"}
        assert HTTP.get(f"{gateway}/v1/auth/me", headers=stale).status_code == 401
        assert user.get("/v1/auth/me").status_code == 200

    def test_logout_ends_the_session(self, stack):
        user = sign_up(stack.url("gateway"), "patient")
        assert user.post("/v1/auth/logout").status_code == 204
        assert user.get("/v1/auth/me").status_code == 401

    def test_logout_keeps_the_browsers_sealed_state_unless_asked(self, stack):
        """docs/web.md: a plain logout drops the cache and cookies, not the origin's storage
        (the sealed pins, bindings and rollback marks); forgetting the device drops it too."""
        user = sign_up(stack.url("gateway"), "patient")
        plain = user.post("/v1/auth/logout")
        assert plain.status_code == 204
        assert plain.headers["clear-site-data"] == '"cache", "cookies"'
        user.login()
        forget = user.post("/v1/auth/logout?forget_device=true")
        assert forget.status_code == 204
        assert forget.headers["clear-site-data"] == '"cache", "cookies", "storage"'
        assert user.get("/v1/auth/me").status_code == 401

    @pytest.mark.parametrize("how", ["logout", "revoke", "refresh-reuse"])
    def test_forwarded_requests_stop_as_soon_as_the_session_ends(self, stack, how):
        """The gateway reuses a session check for half a second on forwarded requests;
        its own routes that end sessions make it forget at once."""
        gateway = stack.url("gateway")
        user = sign_up(gateway, "patient")
        path = f"{gateway}/v1/directory/{user.account_id}"
        ended = {"Authorization": f"Bearer {user.tokens['access_token']}"}
        assert HTTP.get(path, headers=ended).status_code == 200  # checked, now remembered
        if how == "logout":
            assert user.post("/v1/auth/logout").status_code == 204
        elif how == "revoke":
            first = user.tokens["access_token"]
            user.login(device_name="second")
            sessions = user.get("/v1/auth/sessions").json()
            target = next(s for s in sessions if not s["current"])
            assert user.revoke_session(target["id"]).status_code == 204
            assert first == ended["Authorization"].split()[1]
        else:
            old = user.tokens["refresh_token"]
            assert HTTP.post(f"{gateway}/v1/auth/refresh",
                             json={"refresh_token": old}).status_code == 200
            assert HTTP.post(f"{gateway}/v1/auth/refresh",
                             json={"refresh_token": old}).status_code == 401
        assert HTTP.get(path, headers=ended).status_code == 401


def _forge(claims: dict, *, alg: str, key: bytes | None, kid: str | None = None) -> str:
    header = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid

    def enc(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    signing_input = f"{enc(header)}.{enc(claims)}"
    if alg == "none":
        return signing_input + "."
    sig = hmac.new(key or b"", signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def victim(stack):
    return sign_up(stack.url("gateway"), "patient")


class TestAccessTokenAttacks:
    def _claims(self, victim, **over) -> dict:
        now = int(time.time())
        claims = {"iss": "ecrin-gateway-auth", "aud": "ecrin-gateway",
                  "sub": str(victim.account_id), "sid": victim.tokens["session_id"],
                  "role": "patient", "iat": now, "nbf": now, "exp": now + 600, "jti": "x"}
        claims.update(over)
        return claims

    def _kid(self, victim) -> str:
        return jwt.get_unverified_header(victim.tokens["access_token"])["kid"]

    def _me(self, stack, token: str) -> int:
        return HTTP.get(stack.url("gateway") + "/v1/auth/me",
                        headers={"Authorization": f"Bearer {token}"}).status_code

    def test_genuine_token_works(self, stack, victim):
        assert self._me(stack, victim.tokens["access_token"]) == 200

    def test_alg_none(self, stack, victim):
        assert self._me(stack, _forge(self._claims(victim), alg="none", key=None,
                                      kid=self._kid(victim))) == 401

    def test_hs256_signed_with_the_public_key(self, stack, victim):
        public_pem = (stack.state / "keys" / "access-token.pub").read_bytes()
        token = _forge(self._claims(victim), alg="HS256", key=public_pem, kid=self._kid(victim))
        assert self._me(stack, token) == 401

    def _signed(self, victim, stack, **over) -> str:
        key = serialization.load_pem_private_key(
            (stack.state / "keys" / "access-token.key").read_bytes(), password=None)
        return jwt.encode(self._claims(victim, **over), key, algorithm="EdDSA",
                          headers={"kid": self._kid(victim)})

    def test_expired(self, stack, victim):
        now = int(time.time())
        assert self._me(stack, self._signed(victim, stack, iat=now - 2000, nbf=now - 2000,
                                            exp=now - 1000)) == 401

    def test_future_nbf(self, stack, victim):
        assert self._me(stack, self._signed(victim, stack, nbf=int(time.time()) + 3600)) == 401

    def test_wrong_audience(self, stack, victim):
        assert self._me(stack, self._signed(victim, stack, aud="kms")) == 401

    def test_wrong_issuer(self, stack, victim):
        assert self._me(stack, self._signed(victim, stack, iss="ecrin-gateway")) == 401

    def test_unknown_kid(self, stack, victim):
        key = serialization.load_pem_private_key(generate_keypair_pem()[0], password=None)
        token = jwt.encode(self._claims(victim), key, algorithm="EdDSA", headers={"kid": "zzz"})
        assert self._me(stack, token) == 401

    def test_signed_by_another_key_with_our_kid(self, stack, victim):
        key = serialization.load_pem_private_key(generate_keypair_pem()[0], password=None)
        token = jwt.encode(self._claims(victim), key, algorithm="EdDSA",
                           headers={"kid": self._kid(victim)})
        assert self._me(stack, token) == 401

    def test_internal_token_is_not_an_access_token(self, stack, victim):
        from ecrin_platform.tokens import InternalTokenIssuer

        internal = InternalTokenIssuer((stack.state / "keys" / "internal-token.key").read_bytes())
        assert self._me(stack, internal.issue("gateway")) == 401


class TestRateLimit:
    def test_challenge_per_account_limit_is_429_with_retry_after(self, stack):
        gateway = stack.url("gateway")
        email = f"flood-{uuid.uuid4().hex[:8]}@example.fr"
        statuses = [HTTP.post(f"{gateway}/v1/auth/challenge", json={"email": email}).status_code
                    for _ in range(12)]
        assert statuses[:10] == [200] * 10
        last = HTTP.post(f"{gateway}/v1/auth/challenge", json={"email": email})
        assert last.status_code == 429
        assert int(last.headers["retry-after"]) >= 1
        assert last.headers["content-type"] == "application/problem+json"


class TestSecondFactor:
    def test_practitioner_without_2fa_is_held_off_patient_data(self, stack):
        user = sign_up(stack.url("gateway"), "practitioner", totp=False)
        response = user.get("/v1/files")
        assert response.status_code == 403
        assert response.json()["type"].endswith("/second-factor-required")
        assert user.get("/v1/auth/me").status_code == 200  # not patient data

    def test_practitioner_with_2fa_reaches_patient_data(self, stack):
        user = sign_up(stack.url("gateway"), "practitioner", totp=False)
        codes = user.enable_totp()
        assert len(codes) == 10
        assert user.get("/v1/files").status_code == 200

    def test_login_then_needs_the_code(self, stack):
        user = sign_up(stack.url("gateway"), "practitioner")
        secret, user.totp_secret = user.totp_secret, None
        response = user.login()
        assert response.status_code == 401
        assert response.json()["type"].endswith("/second-factor-required")
        user.totp_secret = secret
        assert user.login().status_code == 200
        assert user.tokens["second_factor_verified"] is True

    def test_one_time_recovery_code_works_once(self, stack):
        user = sign_up(stack.url("gateway"), "practitioner", totp=False)
        codes = user.enable_totp()
        secret, user.totp_secret = user.totp_secret, None
        assert user.login(recovery_code=codes[0]).status_code == 200
        assert user.login(recovery_code=codes[0]).status_code == 401
        user.totp_secret = secret


class TestSignupSaga:
    def _payload(self, role="patient"):
        account_id = uuid.uuid4()
        setup = create_account(account_id, "pass phrase", KdfParams.insecure_for_tests())
        return signup_payload(setup, f"saga-{account_id.hex[:8]}@example.fr", role)

    def test_retry_with_same_key_is_idempotent(self, stack):
        gateway = stack.url("gateway")
        body, key = self._payload(), uuid.uuid4().hex
        first = HTTP.post(f"{gateway}/v1/auth/signup", json=body, headers={"Idempotency-Key": key})
        again = HTTP.post(f"{gateway}/v1/auth/signup", json=body, headers={"Idempotency-Key": key})
        assert first.status_code == again.status_code == 202
        assert first.json() == again.json()

    def test_same_key_other_body_is_409(self, stack):
        gateway = stack.url("gateway")
        body, key = self._payload(), uuid.uuid4().hex
        HTTP.post(f"{gateway}/v1/auth/signup", json=body, headers={"Idempotency-Key": key})
        body["role"] = "representative"
        response = HTTP.post(f"{gateway}/v1/auth/signup", json=body,
                             headers={"Idempotency-Key": key})
        assert response.status_code == 409

    def test_weak_kdf_is_refused(self, stack):
        body = self._payload()
        body["kdf"]["params"]["memlimit"] = 4096
        response = HTTP.post(stack.url("gateway") + "/v1/auth/signup", json=body,
                             headers={"Idempotency-Key": uuid.uuid4().hex})
        assert response.status_code == 422

    def test_bad_self_signature_is_refused(self, stack):
        body = self._payload()
        body["identity"]["self_signature"] = b64(bytes(64))
        response = HTTP.post(stack.url("gateway") + "/v1/auth/signup", json=body,
                             headers={"Idempotency-Key": uuid.uuid4().hex})
        assert response.status_code == 422

    def test_kms_down_leaves_no_account_and_the_retry_succeeds(self, stack):
        gateway = stack.url("gateway")
        body, key = self._payload(), uuid.uuid4().hex
        stack.stop("kms")
        try:
            down = HTTP.post(f"{gateway}/v1/auth/signup", json=body,
                             headers={"Idempotency-Key": key})
            assert down.status_code == 503
            assert down.headers["retry-after"]
            challenge = HTTP.post(f"{gateway}/v1/auth/challenge",
                                  json={"email": body["email"]}).json()
            # No account: the answer carries the fake salt, not the account's.
            assert challenge["kdf"]["salt"] != body["kdf"]["salt"]
        finally:
            stack.start("kms")
            stack.wait_ready(services=["kms"])
        again = HTTP.post(f"{gateway}/v1/auth/signup", json=body,
                          headers={"Idempotency-Key": key})
        assert again.status_code == 202


class TestAccountAudit:
    def test_logins_and_changes_form_a_verifiable_chain(self, stack):
        from ecrin_platform.audit import verify_chain

        user = sign_up(stack.url("gateway"), "practitioner", totp=False)
        user.enable_totp()
        user.login()
        events = user.get("/v1/auth/audit").json()["events"]
        assert [e["action"] for e in events] == ["account.signup", "auth.login", "2fa.enable",
                                                 "auth.login"]
        assert all(e["actor"] == str(user.account_id) for e in events)
        assert verify_chain(events)
        assert "passphrase" not in str(events).lower().replace("auth.passphrase-change", "")
