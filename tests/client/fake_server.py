"""An in-memory gateway + kms that follows docs/accounts.md, behind httpx.MockTransport.

It checks what the real servers check (signatures, one-time challenges, refresh rotation,
wraps present before a passphrase switch) so the SDK's flows run for real against it, and
it has knobs to misbehave (tamper, expire, rate-limit, go down).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from ecrin_e2ee import KdfParams, PublicIdentity

HOST = "ecrin.test"
URL = f"https://{HOST}"
TOTP_CODE = "123456"


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def problem(status: int, slug: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "application/problem+json",
                                           **(headers or {})},
                          content=json.dumps({"type": f"{URL}/problems/{slug}",
                                              "title": slug, "status": status}))


@dataclass
class FakeAccount:
    id: str
    email: str
    role: str
    login_public_key: bytes
    salt: str
    params: dict[str, Any]
    recovery_public_key: bytes
    totp_enabled: bool = False
    totp_pending: bool = False
    recovery_codes: set[str] = field(default_factory=set)


@dataclass
class FakeSession:
    id: str
    account_id: str
    device_name: str | None
    recovery: bool = False
    live: bool = True
    second_factor_verified: bool = False


class FakeEcrin:
    def __init__(self, params: KdfParams | None = None) -> None:
        self.params = (params or KdfParams.insecure_for_tests()).to_json()
        self.accounts: dict[str, FakeAccount] = {}  # by email
        self.signups: dict[str, tuple[str, dict[str, Any]]] = {}  # idempotency key
        self.challenges: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, FakeSession] = {}
        self.access: dict[str, str] = {}  # access token -> session id
        self.refresh: dict[str, tuple[str, bool]] = {}  # refresh token -> (session, used)
        self.passphrase_wraps: dict[tuple[str, str], dict[str, Any]] = {}
        self.recovery_wraps: dict[str, dict[str, Any]] = {}
        self.directory: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        # knobs
        self.challenge_host = HOST
        self.down_times = 0  # answer 503 this many times
        self.down_paths: set[str] = set()  # only for these paths (empty: every path)
        self.rate_limited = False
        self.login_unlock = True  # the login's answer carries the unlock bundle when asked
        self.login_unlock_known = True  # False: a gateway older than the login's ``unlock``

    # -- plumbing --------------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        method, path = request.method, request.url.path
        self.calls.append((method, path))
        if self.down_times > 0 and (not self.down_paths or path in self.down_paths):
            self.down_times -= 1
            return problem(503, "service-unavailable", {"retry-after": "0"})
        if self.rate_limited:
            return problem(429, "rate-limited", {"retry-after": "17"})
        body = json.loads(request.content) if request.content else None
        parts = path.strip("/").split("/")
        route = getattr(self, "route_" + "_".join(
            p for p in parts[1:] if not self._is_param(p)).replace("-", "_") + "_"
            + method.lower(), None)
        if route is None:
            return problem(404, "not-found")
        return route(request, body, [p for p in parts[1:] if self._is_param(p)])

    @staticmethod
    def _is_param(part: str) -> bool:
        if part in ("auth", "keys", "directory", "me", "wraps", "passphrase", "recovery",
                    "unlock", "challenge", "login", "signup", "refresh", "logout", "sessions",
                    "2fa", "totp", "confirm", "recover", "revoke"):
            return False
        return True

    def session_of(self, request: httpx.Request) -> FakeSession | None:
        header = request.headers.get("authorization", "")
        session_id = self.access.get(header.removeprefix("Bearer "))
        session = self.sessions.get(session_id or "")
        return session if session and session.live else None

    def account_by_id(self, account_id: str) -> FakeAccount:
        return next(a for a in self.accounts.values() if a.id == account_id)

    def issue(self, account: FakeAccount, device: str | None, *, recovery: bool = False,
              verified: bool = False, session: FakeSession | None = None) -> httpx.Response:
        if session is None:
            session = FakeSession(str(uuid.uuid4()), account.id, device, recovery,
                                  second_factor_verified=verified)
            self.sessions[session.id] = session
        access, refresh = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        self.access[access] = session.id
        self.refresh[refresh] = (session.id, False)
        return httpx.Response(200, json={
            "access_token": access, "refresh_token": refresh, "token_type": "Bearer",
            "expires_in": 900, "session_id": session.id,
            "second_factor_verified": session.second_factor_verified,
            "account": self.account_json(account)})

    @staticmethod
    def account_json(account: FakeAccount) -> dict[str, Any]:
        return {"id": account.id, "email": account.email, "role": account.role,
                "second_factor_enabled": account.totp_enabled}

    def expire_access_tokens(self) -> None:
        self.access.clear()

    def use_challenge(self, body: dict[str, Any], action: str) -> dict[str, Any] | None:
        challenge = self.challenges.pop(body.get("challenge_id", ""), None)
        if challenge is None or challenge["action"] != action:
            return None
        return challenge

    @staticmethod
    def verifies(public_key: bytes, data: bytes, signature: str) -> bool:
        try:
            VerifyKey(public_key).verify(data, b64d(signature))
            return True
        except (BadSignatureError, ValueError):
            return False

    def second_factor_ok(self, account: FakeAccount, body: dict[str, Any]) -> bool:
        if not account.totp_enabled:
            return True
        if body.get("totp_code") == TOTP_CODE:
            return True
        code = body.get("recovery_code")
        if code in account.recovery_codes:
            account.recovery_codes.discard(code)
            return True
        return False

    # -- gateway ---------------------------------------------------------------------------

    def route_auth_signup_post(self, request, body, _):
        key = request.headers.get("idempotency-key")
        if not key:
            return problem(422, "validation-error")
        if key in self.signups:
            prior_body, result = self.signups[key]
            if prior_body != request.content.decode():
                return problem(409, "idempotency-key-reused")
            return httpx.Response(202, json=result)
        accepted = {"account_id": body["account_id"], "email": body["email"],
                    "role": body["role"], "status": "accepted"}
        if body["email"] in self.accounts:
            # As the gateway: a taken email gets the same answer and creates nothing.
            self.signups[key] = (request.content.decode(), accepted)
            return httpx.Response(202, json=accepted)
        PublicIdentity.from_json(body["identity"])
        account = FakeAccount(body["account_id"], body["email"], body["role"],
                              b64d(body["login_public_key"]), body["kdf"]["salt"],
                              body["kdf"]["params"], b64d(body["recovery_public_key"]))
        self.accounts[account.email] = account
        self.passphrase_wraps[(account.id, account.salt)] = body["wrapped_keys"]["passphrase"]
        self.recovery_wraps[account.id] = body["wrapped_keys"]["recovery"]
        identity = PublicIdentity.from_json(body["identity"])
        self.directory[account.id] = {"identity": body["identity"],
                                      "fingerprint": identity.fingerprint().hex(),
                                      "updated_at": "2025-01-01T00:00:00Z"}
        self.signups[key] = (request.content.decode(), accepted)
        return httpx.Response(202, json=accepted)

    def route_auth_challenge_post(self, request, body, _):
        account = self.accounts.get(body["email"])
        if account is not None:
            salt, params = account.salt, account.params
        else:
            salt = b64e(hashlib.blake2b(body["email"].encode(), digest_size=16).digest())
            params = self.params
        challenge_id = str(uuid.uuid4())
        data = (f"ecrin-auth-v1\n{self.challenge_host}\n{body['action']}\n{challenge_id}\n"
                f"{b64e(secrets.token_bytes(16))}\n{int(time.time()) + 120}").encode()
        self.challenges[challenge_id] = {"data": data, "email": body["email"],
                                         "action": body["action"]}
        return httpx.Response(200, json={
            "challenge_id": challenge_id, "challenge": b64e(data),
            "expires_at": "2030-01-01T00:00:00Z", "kdf": {"salt": salt, "params": params}})

    def route_auth_login_post(self, request, body, _):
        if "unlock" in body and not self.login_unlock_known:
            # A gateway older than ``unlock``: its strict body refuses the field, as
            # FastAPI words it, before the challenge is read.
            return httpx.Response(422, headers={"content-type": "application/problem+json"},
                                  json={"type": f"{URL}/problems/validation-error",
                                        "title": "Validation error", "status": 422,
                                        "detail": "The request does not match the schema.",
                                        "errors": [{"loc": ["body", "unlock"],
                                                    "msg": "Extra inputs are not permitted",
                                                    "type": "extra_forbidden"}]})
        challenge = self.use_challenge(body, "login")
        account = self.accounts.get(challenge["email"]) if challenge else None
        if account is None or not self.verifies(account.login_public_key, challenge["data"],
                                                body["signature"]):
            return problem(401, "invalid-credentials")
        if not self.second_factor_ok(account, body):
            return problem(401, "second-factor-required")
        issued = self.issue(account, body.get("device_name"), verified=account.totp_enabled)
        if not body.get("unlock"):
            return issued
        # As the gateway: the unlock answer for the new session, or null when the kms
        # would not give it (``login_unlock`` off: the kms down).
        answer = json.loads(issued.content)
        unlocked = (self.route_keys_me_unlock_get(
            httpx.Request("GET", "/", headers={"authorization": "Bearer "
                                               + answer["access_token"]}),
            None, [account.salt]) if self.login_unlock else None)
        answer["unlock"] = (unlocked.json() if unlocked is not None
                            and unlocked.status_code == 200 else None)
        return httpx.Response(200, json=answer)

    def route_auth_recover_post(self, request, body, _):
        challenge = self.use_challenge(body, "recover")
        account = self.accounts.get(challenge["email"]) if challenge else None
        if account is None or not self.verifies(account.recovery_public_key, challenge["data"],
                                                body["signature"]):
            return problem(401, "invalid-credentials")
        if not self.second_factor_ok(account, body):
            return problem(401, "second-factor-required")
        return self.issue(account, None, recovery=True)

    def route_auth_refresh_post(self, request, body, _):
        entry = self.refresh.get(body.get("refresh_token", ""))
        if entry is None:
            return problem(401, "invalid-credentials")
        session_id, used = entry
        session = self.sessions[session_id]
        if used:
            session.live = False
            return problem(401, "refresh-token-reused")
        if not session.live:
            return problem(401, "session-revoked")
        self.refresh[body["refresh_token"]] = (session_id, True)
        return self.issue(self.account_by_id(session.account_id), None, session=session)

    def _authed(self, request, *, recovery_ok: bool = False):
        session = self.session_of(request)
        if session is None:
            return None, problem(401, "invalid-token")
        if session.recovery and not recovery_ok:
            return None, problem(403, "recovery-session")
        return session, None

    def route_auth_logout_post(self, request, body, _):
        session, error = self._authed(request)
        if error:
            return error
        session.live = False
        return httpx.Response(204)

    def route_auth_me_get(self, request, body, _):
        session, error = self._authed(request)
        if error:
            return error
        return httpx.Response(200, json={
            "account": self.account_json(self.account_by_id(session.account_id)),
            "session_id": session.id, "second_factor_verified": session.second_factor_verified})

    def route_auth_sessions_get(self, request, body, _):
        session, error = self._authed(request)
        if error:
            return error
        return httpx.Response(200, json=[
            {"id": s.id, "device_name": s.device_name, "created_at": "2025-01-01T00:00:00Z",
             "last_used_at": "2025-01-01T00:00:00Z", "current": s.id == session.id}
            for s in self.sessions.values() if s.account_id == session.account_id and s.live])

    def route_auth_sessions_delete(self, request, body, params):
        session, error = self._authed(request)
        if error:
            return error
        target = self.sessions.get(params[0])
        if target is None or target.account_id != session.account_id:
            return problem(404, "not-found")
        if target.id != session.id:
            return problem(403, "step-up-required")
        target.live = False
        return httpx.Response(204)

    def route_auth_sessions_revoke_post(self, request, body, params):
        session, error = self._authed(request)
        if error:
            return error
        target = self.sessions.get(params[0])
        if target is None or target.account_id != session.account_id:
            return problem(404, "not-found")
        account = self.account_by_id(session.account_id)
        challenge = self.use_challenge(body, "sessions")
        if challenge is None or not self.verifies(account.login_public_key, challenge["data"],
                                                  body["signature"]):
            return problem(401, "invalid-credentials")
        if not self.second_factor_ok(account, body):
            return problem(401, "second-factor-required")
        target.live = False
        return httpx.Response(204)

    def route_auth_2fa_totp_post(self, request, body, _):
        session, error = self._authed(request)
        if error:
            return error
        self.account_by_id(session.account_id).totp_pending = True
        uri = f"otpauth://totp/Ecrin:{session.account_id}?secret=JBSWY3DPEHPK3PXP&issuer=Ecrin"
        return httpx.Response(200, json={"secret": "JBSWY3DPEHPK3PXP", "otpauth_uri": uri,
                                         "qr_svg": "<svg/>"})

    def route_auth_2fa_totp_confirm_post(self, request, body, _):
        session, error = self._authed(request)
        if error:
            return error
        account = self.account_by_id(session.account_id)
        if not account.totp_pending or body.get("code") != TOTP_CODE:
            return problem(422, "invalid-code")
        account.totp_enabled, account.totp_pending = True, False
        account.recovery_codes = {f"rc-{i:02d}-{secrets.token_hex(3)}" for i in range(10)}
        session.second_factor_verified = True
        return httpx.Response(200, json={"recovery_codes": sorted(account.recovery_codes)})

    def route_auth_passphrase_post(self, request, body, _):
        session, error = self._authed(request, recovery_ok=True)
        if error:
            return error
        account = self.account_by_id(session.account_id)
        if not session.recovery:
            challenge = self.use_challenge(body, "passphrase")
            if challenge is None or not self.verifies(account.login_public_key,
                                                      challenge["data"], body["signature"]):
                return problem(401, "invalid-credentials")
            if not self.second_factor_ok(account, body):
                return problem(401, "second-factor-required")
        if (account.id, body["new_kdf"]["salt"]) not in self.passphrase_wraps:
            return problem(409, "wrap-missing")
        account.login_public_key = b64d(body["new_login_public_key"])
        account.salt, account.params = body["new_kdf"]["salt"], body["new_kdf"]["params"]
        for other in self.sessions.values():
            if other.account_id == account.id and (session.recovery or other.id != session.id):
                other.live = False
        return httpx.Response(204)

    # -- kms -------------------------------------------------------------------------------

    def route_keys_me_wraps_passphrase_get(self, request, body, params):
        session, error = self._authed(request)
        if error:
            return error
        wrap = self.passphrase_wraps.get((session.account_id, params[0]))
        return httpx.Response(200, json=wrap) if wrap else problem(404, "not-found")

    def route_keys_me_unlock_get(self, request, body, params):
        session, error = self._authed(request)
        if error:
            return error
        wrap = self.passphrase_wraps.get((session.account_id, params[0]))
        entry = self.directory.get(session.account_id)
        if not wrap or not entry:
            return problem(404, "not-found")
        return httpx.Response(200, json={"wrap": wrap, "directory": entry})

    def route_keys_me_wraps_passphrase_put(self, request, body, params):
        session, error = self._authed(request, recovery_ok=True)
        if error:
            return error
        self.passphrase_wraps[(session.account_id, params[0])] = body
        return httpx.Response(204)

    def route_keys_me_wraps_passphrase_delete(self, request, body, params):
        session, error = self._authed(request)
        if error:
            return error
        if self.passphrase_wraps.pop((session.account_id, params[0]), None) is None:
            return problem(404, "not-found")
        return httpx.Response(204)

    def route_keys_me_wraps_recovery_get(self, request, body, _):
        session, error = self._authed(request, recovery_ok=True)
        if error:
            return error
        return httpx.Response(200, json=self.recovery_wraps[session.account_id])

    def route_directory_get(self, request, body, params):
        session, error = self._authed(request)
        if error:
            return error
        entry = self.directory.get(params[0])
        return httpx.Response(200, json=entry) if entry else problem(404, "not-found")

    def route_directory_put(self, request, body, params):
        session, error = self._authed(request)
        if error:
            return error
        if params[0] != session.account_id:
            return problem(403, "forbidden")
        identity = PublicIdentity.from_json(body)
        self.directory[params[0]] = {"identity": body,
                                     "fingerprint": identity.fingerprint().hex(),
                                     "updated_at": "2025-01-01T00:00:00Z"}
        return httpx.Response(200, json=self.directory[params[0]])
