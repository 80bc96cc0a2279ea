"""Real accounts made through the gateway with ecrin_e2ee, for server-side tests."""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyotp

from ecrin_e2ee import (
    IdentityKeys,
    KdfParams,
    KeyringEntry,
    Permission,
    Relationship,
    Scope,
    ScopeKey,
    SearchKey,
    create_account,
    derive_account_keys,
)
from ecrin_e2ee.keyring import seal_entry

#: One pooled client for the whole test process. ``httpx.get`` and the like build a client,
#: an SSL context and a connection for each call: 52 ms of CPU per request against 3 ms on
#: a kept-alive connection, and the server-side tests send thousands of requests.
HTTP = httpx.Client()


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


#: Seconds before a step ends within which its previous step is no longer offered: the
#: gateway must still find it within the drift window when the request reaches it.
TOTP_MARGIN_S = 5


def next_totp_code(secret: str, last_step: int) -> tuple[str, int]:
    """(code, step) for the first step after ``last_step`` the gateway accepts now. The
    gateway allows one step of drift either side of now and takes each step once, so the
    previous, the current and the next step give three codes at once; a fourth waits for
    the next step."""
    now = time.time()
    current = int(now) // 30
    earliest = current - 1 if now % 30 < 30 - TOTP_MARGIN_S else current
    step = max(earliest, last_step + 1)
    while step > int(time.time()) // 30 + 1:
        time.sleep(0.5)
    return pyotp.TOTP(secret).at(step * 30), step


@dataclass
class TotpDevice:
    """An authenticator app for SDK-driven tests: each code of a step not used yet."""

    secret: str
    last_step: int = -1
    recovery_codes: list[str] = field(default_factory=list)

    def code(self) -> str:
        code, self.last_step = next_totp_code(self.secret, self.last_step)
        return code


@dataclass
class ApiUser:
    gateway: str
    email: str
    passphrase: str
    role: str
    account_id: uuid.UUID
    identity: IdentityKeys
    recovery_text: str
    tokens: dict[str, Any] = field(default_factory=dict)
    totp_secret: str | None = None
    #: The last TOTP time step this account had accepted: the gateway takes each once.
    totp_last_step: int = -1

    def totp_code(self) -> str:
        """A code of a time step this account has not used yet (the gateway takes each
        step once)."""
        assert self.totp_secret is not None
        code, self.totp_last_step = next_totp_code(self.totp_secret, self.totp_last_step)
        return code

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}

    def step_up(self, action: str) -> dict[str, str]:
        """A fresh proof for one sensitive action: a challenge for it signed by the login
        key, and a TOTP code when enrolled."""
        challenge = HTTP.post(f"{self.gateway}/v1/auth/challenge",
                              json={"email": self.email, "action": action}).json()
        keys = derive_account_keys(self.passphrase, unb64(challenge["kdf"]["salt"]),
                                   KdfParams.from_json(challenge["kdf"]["params"]))
        signature = keys.login_signing_key.sign(unb64(challenge["challenge"])).signature
        proof = {"challenge_id": challenge["challenge_id"], "signature": b64(signature)}
        if self.totp_secret:
            proof["totp_code"] = self.totp_code()
        return proof

    def revoke_session(self, session_id: str) -> httpx.Response:
        return self.post(f"/v1/auth/sessions/{session_id}/revoke",
                         json=self.step_up("sessions"))

    def login(self, **extra: Any) -> httpx.Response:
        challenge = HTTP.post(f"{self.gateway}/v1/auth/challenge",
                              json={"email": self.email}).json()
        keys = derive_account_keys(self.passphrase, unb64(challenge["kdf"]["salt"]),
                                   KdfParams.from_json(challenge["kdf"]["params"]))
        signature = keys.login_signing_key.sign(unb64(challenge["challenge"])).signature
        if self.totp_secret and "totp_code" not in extra:
            extra["totp_code"] = self.totp_code()
        response = HTTP.post(f"{self.gateway}/v1/auth/login",
                             json={"challenge_id": challenge["challenge_id"],
                                   "signature": b64(signature), **extra})
        if response.status_code == 200:
            self.tokens = response.json()
        return response

    def enable_totp(self) -> list[str]:
        enrolment = HTTP.post(f"{self.gateway}/v1/auth/2fa/totp", headers=self.headers).json()
        self.totp_secret = enrolment["secret"]
        response = HTTP.post(f"{self.gateway}/v1/auth/2fa/totp/confirm", headers=self.headers,
                             json={"code": self.totp_code()})
        response.raise_for_status()
        return response.json()["recovery_codes"]

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return HTTP.get(self.gateway + path, headers=self.headers, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return HTTP.post(self.gateway + path, headers=self.headers, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return HTTP.put(self.gateway + path, headers=self.headers, **kwargs)

    def create_file(self, name: str = "Dupont") -> tuple[uuid.UUID, dict[Scope, ScopeKey]]:
        file_id = uuid.uuid4()
        token = SearchKey.for_owner(self.identity).name_token(name)
        self.post("/v1/files", json={"file_id": str(file_id), "search_tokens": [token]}
                  ).raise_for_status()
        keys = {scope: ScopeKey.generate(file_id, scope) for scope in Scope}
        entries = [seal_entry(k, self.identity.public_identity(),
                              relationship=Relationship.OWNER,
                              permissions={Permission.READ, Permission.APPEND},
                              granter=self.identity).to_json() for k in keys.values()]
        self.put(f"/v1/keyrings/{file_id}/initial", json={"entries": entries}).raise_for_status()
        return file_id, keys


def signup_payload(setup: Any, email: str, role: str) -> dict[str, Any]:
    return {
        "account_id": str(setup.account_id), "email": email, "role": role,
        "login_public_key": b64(setup.login_public_key),
        "kdf": {"salt": b64(setup.salt), "params": setup.params.to_json()},
        "recovery_public_key": b64(setup.recovery_key.login_public_key),
        "identity": setup.public_identity.to_json(),
        "wrapped_keys": {"passphrase": setup.wrapped_by_passphrase.to_json(),
                         "recovery": setup.wrapped_by_recovery.to_json()},
    }


def sign_up(gateway: str, role: str = "practitioner", *, totp: bool | None = None,
            passphrase: str = "une phrase de passe solide") -> ApiUser:
    account_id = uuid.uuid4()
    email = f"{role}-{account_id.hex[:10]}@example.fr"
    setup = create_account(account_id, passphrase, KdfParams.insecure_for_tests())
    response = HTTP.post(f"{gateway}/v1/auth/signup", json=signup_payload(setup, email, role),
                         headers={"Idempotency-Key": uuid.uuid4().hex})
    response.raise_for_status()
    user = ApiUser(gateway, email, passphrase, role, account_id, setup.identity_keys,
                   setup.recovery_key.to_text())
    user.login().raise_for_status()
    if totp if totp is not None else role == "practitioner":
        user.enable_totp()
    return user


def open_entries(user: ApiUser, entries: list[dict[str, Any]]) -> list[ScopeKey]:
    from ecrin_e2ee import open_entry

    return [open_entry(KeyringEntry.from_json(e), user.identity, user.identity.public_identity())
            for e in entries]
