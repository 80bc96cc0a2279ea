"""The async SDK: every flow of docs/accounts.md, with all cryptography in ``ecrin_e2ee``.

Secrets (passphrases, the recovery key, the KEK, identity private keys) live only in local
variables of these coroutines; the profile receives ids, public values and tokens only.
Argon2id runs in a worker thread (``asyncio.to_thread``), never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import TypeAdapter, ValidationError

from ecrin_client import kdf_policy, pinning
from ecrin_client.challenge import check_challenge
from ecrin_client.checks import check_email
from ecrin_client.encoding import b64d, b64e
from ecrin_client.errors import (
    AuthError,
    Conflict,
    EcrinError,
    IdentityMismatch,
    IntegrityError,
    InvalidCredentials,
    InvalidInput,
    NotFound,
    NotLoggedIn,
    SecondFactorRequired,
    ServerError,
    Unavailable,
)
from ecrin_client.models import (
    Account,
    Challenge,
    DirectoryEntry,
    LoggedIn,
    LoginResult,
    Me,
    RecoveryCodes,
    SessionInfo,
    SignupResult,
    TokenPair,
    TotpEnrolment,
    UnlockBundle,
    Verification,
)
from ecrin_client.pinning import account_uuid, check_pin, compact, grouped
from ecrin_client.profile import Profile, StoredTokens
from ecrin_client.transport import GatewayTransport, parse, validated
from ecrin_e2ee import (
    AccountKeys,
    DecryptionError,
    FormatError,
    IdentityKeys,
    IdentityMismatchError,
    InvalidCode,
    KdfParams,
    KeyChange,
    KeyEncryptionKey,
    PublicIdentity,
    RecoveryKey,
    WrappedIdentity,
    create_account,
    derive_account_keys,
    key_change_links,
    new_salt,
    unwrap_identity,
    wrap_identity,
)

__all__ = ["ROLES", "EcrinClient"]

ROLES = ("practitioner", "staff", "patient", "representative")
T = TypeVar("T")
Progress = Callable[[str], AbstractContextManager[Any]]


@dataclass(frozen=True, slots=True)
class _IssuedChallenge:
    challenge_id: str
    data: bytes
    salt: bytes
    params: KdfParams


class EcrinClient:
    """An account on one device: ``EcrinClient(server_url, profile)``.

    ``server_url`` may be ``None`` to use the one saved in the profile. ``transport`` is an
    ``httpx`` transport (tests pass ``httpx.MockTransport``); ``kdf_progress(label)`` returns
    a context manager shown while Argon2id runs (the CLI's spinner).
    """

    def __init__(self, server_url: str | None, profile: Profile, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 kdf_progress: Progress | None = None, timeout: float = 30.0) -> None:
        self.profile = profile
        url = server_url or profile.settings().server_url
        if not url:
            raise InvalidInput("no server: pass --server or set ECRIN_SERVER")
        if not url.startswith(("http://", "https://")):
            raise InvalidInput("the server URL must start with https:// (or http://)")
        self.server_url = url.rstrip("/")
        self._transport_arg = transport
        self._timeout = timeout
        self._progress: Progress = kdf_progress or (lambda _label: contextlib.nullcontext())
        self._t = GatewayTransport(self.server_url, tokens=profile.tokens(),
                                   on_tokens=profile.save_tokens, transport=transport,
                                   timeout=timeout)

    @property
    def transport(self) -> GatewayTransport:
        """The authenticated HTTP session (used by :mod:`ecrin_client.records`)."""
        return self._t

    async def __aenter__(self) -> EcrinClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._t.aclose()
        self.profile.close()  # the profile's state.db, opened again if used later

    # -- helpers -------------------------------------------------------------------------

    async def _derive(self, passphrase: str, salt: bytes, params: KdfParams) -> AccountKeys:
        with self._progress("Deriving keys (Argon2id)…"):
            return await asyncio.to_thread(derive_account_keys, passphrase, salt, params)

    async def _challenge(self, email: str, action: str) -> _IssuedChallenge:
        response = await self._t.request("POST", "/v1/auth/challenge", auth=False,
                                         json={"email": email, "action": action})
        challenge = parse(Challenge, response)
        data = b64d(challenge.challenge, what="challenge")
        check_challenge(data, server_url=self.server_url, action=action,
                        challenge_id=challenge.challenge_id)
        try:
            params = KdfParams.from_json(challenge.kdf.params)
        except FormatError:
            raise ServerError("the server sent invalid key-derivation parameters") from None
        if action != "recover":  # a recovery signature does not involve the passphrase
            kdf_policy.check_server_params(params)
        return _IssuedChallenge(challenge.challenge_id, data,
                                b64d(challenge.kdf.salt, what="salt"), params)

    @staticmethod
    async def _retrying(call: Callable[[], Awaitable[T]], attempts: int = 3) -> T:
        """Retry an idempotent call while the server is unavailable."""
        for attempt in range(attempts):
            try:
                return await call()
            except Unavailable as exc:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(min(exc.retry_after or 0.5 * 2**attempt, 5.0))
        raise AssertionError("unreachable")

    def _require_account(self) -> tuple[str, str]:
        settings = self.profile.settings()
        if not settings.account_id or not settings.email or self._t.tokens is None:
            raise NotLoggedIn()
        return settings.account_id, settings.email

    async def _fetch_wrap(self, path: str, transport: GatewayTransport | None = None
                          ) -> WrappedIdentity:
        response = await (transport or self._t).request("GET", path)
        try:
            return WrappedIdentity.from_json(response.json())
        except (ValueError, FormatError):
            raise ServerError("the kms sent a malformed key wrap") from None

    @staticmethod
    def _unwrap(wrapped: WrappedIdentity, key: KeyEncryptionKey | RecoveryKey, account_id: str,
                on_failure: EcrinError) -> IdentityKeys:
        purpose = "passphrase" if isinstance(key, KeyEncryptionKey) else "recovery"
        if str(wrapped.account_id) != account_id or wrapped.purpose != purpose:
            raise IntegrityError("the kms sent a key wrap of another account or purpose")
        try:
            return unwrap_identity(wrapped, key)
        except DecryptionError:
            raise on_failure from None

    async def _open_passphrase_wrap(self, account_id: str, salt: bytes, kek: KeyEncryptionKey,
                                    *, on_failure: EcrinError) -> IdentityKeys:
        try:
            wrapped = await self._fetch_wrap(f"/v1/keys/me/wraps/passphrase/{b64e(salt)}")
        except NotFound:
            raise IntegrityError(
                "the kms holds no key wrap for this passphrase: keys unavailable") from None
        return self._unwrap(wrapped, kek, account_id, on_failure)

    async def _unlock_identity(self, account_id: str, salt: bytes, kek: KeyEncryptionKey,
                               *, on_failure: EcrinError, given: dict[str, Any] | None = None
                               ) -> tuple[IdentityKeys, DirectoryEntry]:
        """The passphrase wrap opened, and the account's own directory entry: ``given``
        (the login's answer carried them) or one request (``GET /v1/keys/me/unlock/{salt}``);
        either gets the same checks, and the entry is trusted only once
        :meth:`_adopt_identity` has compared it with the keys the wrap held."""
        if given is None:
            try:
                response = await self._t.request("GET", f"/v1/keys/me/unlock/{b64e(salt)}")
            except NotFound:
                raise IntegrityError(
                    "the kms holds no key wrap for this passphrase: keys unavailable") from None
            bundle = parse(UnlockBundle, response)
        else:
            bundle = validated(UnlockBundle, given)
        try:
            wrapped = WrappedIdentity.from_json(bundle.wrap)
        except (ValueError, FormatError):
            raise ServerError("the kms sent a malformed key wrap") from None
        return self._unwrap(wrapped, kek, account_id, on_failure), bundle.directory

    async def _adopt_identity(self, identity: IdentityKeys,
                              entry: DirectoryEntry | None = None) -> str:
        """Check the directory publishes the identity we just unwrapped; pin it. -> fingerprint

        ``entry`` is the directory entry served with the wrap, if it was; it gets the same
        checks as one fetched here."""
        account_id = str(identity.account_id)
        mine = identity.public_identity()
        pinned = self.profile.pinned(account_id)
        if entry is None:
            published, entry = await self._directory_entry(account_id)
        else:
            published = self._checked_entry(account_id, entry)
        if published.fingerprint() != mine.fingerprint():
            raise IdentityMismatch(
                "the directory publishes another key for your own account: refusing it")
        if pinned is not None and compact(pinned) != mine.fingerprint().hex():
            # The account's identity was changed on another device: the new keys opened
            # under this passphrase, and a statement signed by the key pinned here must
            # lead to them (an older key served again is refused).
            if not self._signed_change(pinned, entry, mine):
                check_pin(mine, pinned)
            self.profile.unpin(account_id)
        pinning.pin(self.profile, account_id, mine.fingerprint_hex())
        return mine.fingerprint_hex()

    async def _delete_stale_wraps(self) -> None:
        settings = self.profile.settings()
        remaining = []
        for salt in settings.stale_wrap_salts:
            if salt == settings.kdf_salt:
                continue
            try:
                await self._t.request("DELETE", f"/v1/keys/me/wraps/passphrase/{salt}",
                                      ok=(200, 204, 404))
            except EcrinError:
                remaining.append(salt)  # retried after the next login
        if remaining != settings.stale_wrap_salts:
            self.profile.update_settings(stale_wrap_salts=remaining)

    async def _finish_login(self, email: str, challenge: _IssuedChallenge, keys: AccountKeys, *,
                            totp_code: str | None, recovery_code: str | None,
                            device_name: str | None) -> LoginResult:
        body: dict[str, Any] = {
            "challenge_id": challenge.challenge_id,
            "signature": b64e(keys.login_signing_key.sign(challenge.data).signature),
            "unlock": True,  # the keys come with the answer: one request fewer
        }
        for name, value in (("totp_code", totp_code), ("recovery_code", recovery_code),
                            ("device_name", device_name)):
            if value:
                body[name] = value
        try:
            response = await self._t.request("POST", "/v1/auth/login", json=body, auth=False)
        except InvalidInput as exc:
            if "unlock" not in exc.fields:
                raise
            # A gateway older than ``unlock`` refuses the field before it reads the
            # challenge: the same signed body without it, and the keys in a request apart.
            del body["unlock"]
            response = await self._t.request("POST", "/v1/auth/login", json=body, auth=False)
        pair = parse(LoggedIn, response)
        previous = self.profile.settings()
        if previous.account_id and previous.account_id != pair.account.id:
            self.profile.update_settings(stale_wrap_salts=[])
        self._t.adopt(pair)
        self.profile.update_settings(
            server_url=self.server_url, account_id=pair.account.id, email=pair.account.email,
            role=pair.account.role, kdf_salt=b64e(challenge.salt),
            kdf_params=challenge.params.to_json())
        try:
            identity, entry = await self._unlock_identity(
                pair.account.id, challenge.salt, keys.kek,
                on_failure=IntegrityError("the key wrap does not open with the key that just "
                                          "signed in: the kms data was altered"),
                given=pair.unlock)
            fingerprint = await self._adopt_identity(identity, entry)
        except IntegrityError:
            with contextlib.suppress(EcrinError):
                await self.logout()
            raise
        await self._delete_stale_wraps()
        return LoginResult(account=pair.account, session_id=pair.session_id,
                           second_factor_verified=pair.second_factor_verified,
                           fingerprint=fingerprint)

    # -- accounts ------------------------------------------------------------------------

    async def signup(self, email: str, passphrase: str, role: str,
                     kdf_params: KdfParams | None = None) -> tuple[SignupResult, str]:
        """Create the account. Returns its info and the recovery key text, shown only once.

        The gateway accepts (202) every well-formed sign-up, so that nobody can learn which
        emails have accounts: if this email already had one, nothing was created and the
        first login with this passphrase fails as invalid credentials (docs/accounts.md).
        """
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
        check_email(email)  # before Argon2id: the gateway would refuse it anyway
        params = kdf_params or kdf_policy.default_params()
        account_id = uuid.uuid4()
        with self._progress("Creating keys (Argon2id)…"):
            setup = await asyncio.to_thread(create_account, account_id, passphrase, params)
        body = {
            "account_id": str(account_id),
            "email": email,
            "role": role,
            "login_public_key": b64e(setup.login_public_key),
            "kdf": {"salt": b64e(setup.salt), "params": setup.params.to_json()},
            "recovery_public_key": b64e(setup.recovery_key.login_public_key),
            "identity": setup.public_identity.to_json(),
            "wrapped_keys": {"passphrase": setup.wrapped_by_passphrase.to_json(),
                             "recovery": setup.wrapped_by_recovery.to_json()},
        }
        idempotency_key = secrets.token_urlsafe(24)  # the same key for every retry

        async def send() -> httpx.Response:
            return await self._t.request("POST", "/v1/auth/signup", json=body, auth=False,
                                         headers={"idempotency-key": idempotency_key},
                                         ok=(200, 201, 202))

        result = parse(SignupResult, await self._retrying(send))
        if account_uuid(result.account_id) != str(account_id):
            raise ServerError("the server created an account with another id")
        self._t.set_tokens(None)
        self.profile.save_settings(self.profile.settings().model_copy(update={
            "server_url": self.server_url, "account_id": str(account_id), "email": email,
            "role": role, "kdf_salt": b64e(setup.salt), "kdf_params": setup.params.to_json(),
            "stale_wrap_salts": []}))
        pinning.pin(self.profile, str(account_id), setup.public_identity.fingerprint_hex())
        return result, setup.recovery_key.to_text()

    async def login(self, email: str, passphrase: str, totp_code: str | None = None,
                    recovery_code: str | None = None, device_name: str | None = None
                    ) -> LoginResult:
        """Challenge, Argon2id, sign, tokens; then check the passphrase wrap opens here."""
        challenge = await self._challenge(email, "login")
        keys = await self._derive(passphrase, challenge.salt, challenge.params)
        return await self._finish_login(email, challenge, keys, totp_code=totp_code,
                                        recovery_code=recovery_code, device_name=device_name)

    async def unlock(self, passphrase: str) -> IdentityKeys:
        """The identity private keys, for the flows that decrypt or sign (kept in memory)."""
        account_id, email = self._require_account()
        settings = self.profile.settings()
        if settings.kdf_salt and settings.kdf_params:
            salt, params = b64d(settings.kdf_salt, what="salt"), KdfParams.from_json(
                settings.kdf_params)
        else:
            challenge = await self._challenge(email, "login")
            salt, params = challenge.salt, challenge.params
        kdf_policy.check_server_params(params)
        keys = await self._derive(passphrase, salt, params)
        identity, entry = await self._unlock_identity(account_id, salt, keys.kek,
                                                      on_failure=InvalidCredentials())
        await self._adopt_identity(identity, entry)
        return identity

    def held_identity(self, account_id: str, key_bytes: bytes) -> IdentityKeys | None:
        """Identity keys an unlock agent kept in memory, if they are this profile's: the
        signed-in account's, and matching the fingerprint pinned here at the last unlock.
        ``None`` otherwise (another account, or keys replaced since): unlock again.
        No Argon2id and no request: the pin was checked against the directory when the
        keys were first unlocked with the passphrase."""
        current, _ = self._require_account()
        pinned = self.profile.pinned(current)
        if account_id != current or pinned is None:
            return None
        try:
            identity = IdentityKeys.from_bytes(uuid.UUID(account_id), key_bytes)
        except ValueError:
            return None
        if identity.public_identity().fingerprint().hex() != compact(pinned):
            return None
        return identity

    async def refresh(self) -> None:
        """Rotate the tokens now (requests also do it once, automatically, on a 401)."""
        if self._t.tokens is None:
            raise NotLoggedIn()
        await self._t._refreshed(after=self._t.tokens.access_token)

    async def logout(self) -> None:
        """Revoke this session at the gateway and forget its tokens."""
        if self._t.tokens is None:
            return
        try:
            await self._t.request("POST", "/v1/auth/logout", ok=(200, 204))
        except AuthError:
            pass  # already revoked or expired: nothing left to end
        self._t.set_tokens(None)

    async def whoami(self) -> Me:
        return parse(Me, await self._t.request("GET", "/v1/auth/me"))

    async def sessions(self) -> list[SessionInfo]:
        response = await self._t.request("GET", "/v1/auth/sessions")
        try:
            return TypeAdapter(list[SessionInfo]).validate_python(response.json())
        except (ValueError, ValidationError):
            raise ServerError("the server sent a malformed session list") from None

    async def revoke_session(self, session_id: str, passphrase: str | None = None,
                             totp_code: str | None = None,
                             recovery_code: str | None = None) -> None:
        """End a session of this account. This device's own session ends with its token;
        another one takes a step-up: a fresh ``sessions`` challenge signed with the login
        key (so the passphrase) and the second factor when enrolled."""
        session_id = account_uuid(session_id, "session id")
        current = self._t.tokens is not None and self._t.tokens.session_id == session_id
        if current:
            await self._t.request("DELETE", f"/v1/auth/sessions/{session_id}", ok=(200, 204))
            self._t.set_tokens(None)
            return
        if passphrase is None:
            raise InvalidInput("revoking another session needs the passphrase (step-up)")
        proof = await self._step_up("sessions", passphrase, totp_code, recovery_code)
        await self._t.request("POST", f"/v1/auth/sessions/{session_id}/revoke", json=proof,
                              ok=(200, 204))

    async def _step_up(self, action: str, passphrase: str, totp_code: str | None,
                       recovery_code: str | None) -> dict[str, Any]:
        """A fresh proof for one sensitive action: a challenge for ``action`` signed with
        the login key, and the second factor if given."""
        _, email = self._require_account()
        challenge = await self._challenge(email, action)
        keys = await self._derive(passphrase, challenge.salt, challenge.params)
        proof: dict[str, Any] = {
            "challenge_id": challenge.challenge_id,
            "signature": b64e(keys.login_signing_key.sign(challenge.data).signature)}
        for name, value in (("totp_code", totp_code), ("recovery_code", recovery_code)):
            if value:
                proof[name] = value
        return proof

    async def enable_totp(self) -> TotpEnrolment:
        return parse(TotpEnrolment, await self._t.request("POST", "/v1/auth/2fa/totp"))

    async def confirm_totp(self, code: str) -> list[str]:
        response = await self._t.request("POST", "/v1/auth/2fa/totp/confirm",
                                         json={"code": code.strip()})
        return parse(RecoveryCodes, response).recovery_codes

    # -- passphrase and recovery ---------------------------------------------------------

    async def change_passphrase(self, old: str, new: str, totp_code: str | None = None,
                                recovery_code: str | None = None) -> None:
        """The four steps of the contract, in an order where a crash keeps the old one working.

        1. store a wrap under the new KEK (new salt); 2. sign a fresh ``passphrase`` challenge
        with the current login key; 3. switch the account; 4. delete the old wrap.
        """
        account_id, email = self._require_account()
        current = await self._challenge(email, "passphrase")
        old_keys = await self._derive(old, current.salt, current.params)
        identity = await self._open_passphrase_wrap(account_id, current.salt, old_keys.kek,
                                                    on_failure=InvalidCredentials(
                                                        "the current passphrase is wrong"))
        params = kdf_policy.default_params()
        salt = new_salt()
        new_keys = await self._derive(new, salt, params)
        new_wrap_path = f"/v1/keys/me/wraps/passphrase/{b64e(salt)}"
        # 1
        await self._t.request("PUT", new_wrap_path, json=wrap_identity(identity, new_keys.kek)
                              .to_json(), ok=(200, 201, 204))
        # 2
        challenge = await self._challenge(email, "passphrase")
        if challenge.salt != current.salt:
            raise Conflict("the passphrase was changed meanwhile on another device")
        body: dict[str, Any] = {
            "challenge_id": challenge.challenge_id,
            "signature": b64e(old_keys.login_signing_key.sign(challenge.data).signature),
            "new_login_public_key": b64e(new_keys.login_public_key),
            "new_kdf": {"salt": b64e(salt), "params": params.to_json()},
        }
        # the step-up's second factor, when the account has one
        if totp_code:
            body["totp_code"] = totp_code
        if recovery_code:
            body["recovery_code"] = recovery_code
        # 3
        try:
            await self._t.request("POST", "/v1/auth/passphrase", json=body, ok=(200, 204))
        except (AuthError, SecondFactorRequired, InvalidInput, Conflict):
            # Refused for sure: the new wrap is an orphan, remove it (best effort).
            with contextlib.suppress(EcrinError):
                await self._t.request("DELETE", new_wrap_path, ok=(200, 204, 404))
            raise
        settings = self.profile.settings()
        self.profile.update_settings(
            kdf_salt=b64e(salt), kdf_params=params.to_json(),
            stale_wrap_salts=[*settings.stale_wrap_salts, b64e(current.salt)])
        # 4
        await self._delete_stale_wraps()

    async def recover(self, email: str, recovery_key_text: str, new_passphrase: str,
                      totp_code: str | None = None, recovery_code: str | None = None,
                      device_name: str | None = None) -> LoginResult | None:
        """Set a new passphrase with the recovery key; then sign in with it.

        Returns ``None`` if the account is recovered but signing in again needs a fresh
        second-factor code (every session, the recovery one included, ends at step 4).
        """
        try:
            recovery_key = RecoveryKey.from_text(recovery_key_text)
        except InvalidCode as exc:
            raise InvalidInput(f"not a valid recovery key: {exc}") from None
        # 1
        challenge = await self._challenge(email, "recover")
        body: dict[str, Any] = {
            "challenge_id": challenge.challenge_id,
            "signature": b64e(recovery_key.login_signing_key().sign(challenge.data).signature),
        }
        if totp_code:
            body["totp_code"] = totp_code
        if recovery_code:
            body["recovery_code"] = recovery_code
        # 2: a recovery session, kept in memory only
        pair = parse(TokenPair, await self._t.request("POST", "/v1/auth/recover", json=body,
                                                      auth=False))
        account_id = account_uuid(pair.account.id)
        session = GatewayTransport(
            self.server_url, on_tokens=lambda _tokens: None, transport=self._transport_arg,
            timeout=self._timeout,
            tokens=StoredTokens(access_token=pair.access_token,
                                refresh_token=pair.refresh_token, session_id=pair.session_id))
        try:
            # 3
            wrapped = await self._fetch_wrap("/v1/keys/me/wraps/recovery", session)
            identity = self._unwrap(wrapped, recovery_key, account_id, IntegrityError(
                "the recovery wrap does not open with the recovery key the gateway accepted"))
            pinned = self.profile.pinned(account_id)
            if pinned is not None:
                check_pin(identity.public_identity(), pinned)
            # 4
            params = kdf_policy.default_params()
            salt = new_salt()
            new_keys = await self._derive(new_passphrase, salt, params)
            await session.request("PUT", f"/v1/keys/me/wraps/passphrase/{b64e(salt)}",
                                  json=wrap_identity(identity, new_keys.kek).to_json(),
                                  ok=(200, 201, 204))
            await session.request("POST", "/v1/auth/passphrase", ok=(200, 204), json={
                "new_login_public_key": b64e(new_keys.login_public_key),
                "new_kdf": {"salt": b64e(salt), "params": params.to_json()}})
        finally:
            await session.aclose()
        self._t.set_tokens(None)
        settings = self.profile.settings()
        stale = settings.stale_wrap_salts if settings.account_id == account_id else []
        self.profile.save_settings(settings.model_copy(update={
            "server_url": self.server_url, "account_id": account_id,
            "email": pair.account.email, "role": pair.account.role, "kdf_salt": b64e(salt),
            "kdf_params": params.to_json(), "stale_wrap_salts": [*stale, b64e(challenge.salt)]}))
        login = await self._challenge(email, "login")
        if login.salt != salt:
            raise IntegrityError("the gateway did not switch to the new passphrase")
        try:
            return await self._finish_login(email, login, new_keys, totp_code=totp_code,
                                            recovery_code=None, device_name=device_name)
        except SecondFactorRequired:
            return None

    # -- directory and verification -------------------------------------------------------

    async def _directory_identity(self, account_id: str) -> PublicIdentity:
        identity, _ = await self._directory_entry(account_id)
        return identity

    async def _directory_entry(self, account_id: str) -> tuple[PublicIdentity, DirectoryEntry]:
        response = await self._t.request("GET", f"/v1/directory/{account_id}")
        entry = parse(DirectoryEntry, response)
        return self._checked_entry(account_id, entry), entry

    @staticmethod
    def _signed_change(pinned: str, entry: DirectoryEntry, current: PublicIdentity) -> bool:
        """Whether the key changes the directory serves lead from the pinned fingerprint to
        ``current``, each signed by the key it replaced (``key_change_links`` refuses any
        gap, reordering or forgery; an unparseable history leads nowhere)."""
        try:
            history = [(PublicIdentity.from_json(c.previous_identity),
                        KeyChange.from_json(c.statement)) for c in entry.key_changes]
            return key_change_links(bytes.fromhex(compact(pinned)), history, current)
        except (FormatError, IdentityMismatchError, ValueError):
            return False

    @classmethod
    def _changed_key(cls, account_id: str, pinned: str, identity: PublicIdentity,
                     entry: DirectoryEntry) -> IdentityMismatch:
        """The loud refusal of a pinned account whose key changed, saying whether the key
        the user verified signed the change. Either way the new key is not used until the
        user compares safety numbers again."""
        signed = cls._signed_change(pinned, entry, identity)
        how = (f"account {account_id} replaced its key; the change is signed by the key you "
               "verified" if signed else
               "no statement signed by the key you verified vouches for the new one")
        return IdentityMismatch(
            f"the public key of account {account_id} CHANGED since you verified it: {how}. "
            "Refusing to use it: compare safety numbers again, in person, with "
            f"`ecrin verify {account_id} --replace`")

    @staticmethod
    def _checked_entry(account_id: str, entry: DirectoryEntry) -> PublicIdentity:
        try:
            identity = PublicIdentity.from_json(entry.identity)
        except IdentityMismatchError:
            raise IdentityMismatch("the directory entry's self-signature does not verify") \
                from None
        except FormatError:
            raise ServerError("the directory sent a malformed identity") from None
        if str(identity.account_id) != account_id:
            raise IdentityMismatch("the directory answered with another account's identity")
        claimed = compact(entry.fingerprint)
        fingerprint = identity.fingerprint()
        if claimed != fingerprint.hex():  # the kms publishes hex; base64 is case-sensitive
            raise IntegrityError("the directory's fingerprint does not match the identity")
        return identity

    async def get_directory(self, account_id: str) -> PublicIdentity:
        """An account's public identity, verified, and checked against its pin if pinned.

        A pinned account whose key changed raises :class:`IdentityMismatch`, which says
        whether the change is signed by the key that was verified (it is still refused)."""
        account_id = account_uuid(account_id)
        identity, entry = await self._directory_entry(account_id)
        pinned = self.profile.pinned(account_id)
        if pinned is not None and compact(pinned) != identity.fingerprint().hex():
            raise self._changed_key(account_id, pinned, identity, entry)
        return identity

    async def change_identity(self, passphrase: str, recovery_key_text: str,
                              totp_code: str | None = None,
                              recovery_code: str | None = None) -> str:
        """Replace this account's identity keys with new random ones. -> new fingerprint

        The old identity signs a :class:`KeyChange` naming the new one; a fresh ``identity``
        challenge signed with the login key (the passphrase) and the second factor authorise
        it; the new keys are wrapped under the current KEK and under the recovery key, which
        is therefore needed too (it is checked against the current recovery wrap first, so
        that recovery keeps working). Peers who pinned the old key are refused it until they
        compare safety numbers again; the account's other sessions end.
        """
        account_id, email = self._require_account()
        try:
            recovery_key = RecoveryKey.from_text(recovery_key_text)
        except InvalidCode as exc:
            raise InvalidInput(f"not a valid recovery key: {exc}") from None
        first = await self._challenge(email, "identity")
        keys = await self._derive(passphrase, first.salt, first.params)
        old, entry = await self._unlock_identity(account_id, first.salt, keys.kek,
                                                 on_failure=InvalidCredentials(
                                                     "the passphrase is wrong"))
        await self._adopt_identity(old, entry)  # the directory publishes the key we hold
        recovered = self._unwrap(await self._fetch_wrap("/v1/keys/me/wraps/recovery"),
                                 recovery_key, account_id,
                                 InvalidInput("this is not the account's recovery key"))
        if recovered.to_bytes() != old.to_bytes():
            raise IntegrityError("the recovery wrap holds another identity than the "
                                 "passphrase wrap")
        new = IdentityKeys.generate(uuid.UUID(account_id))
        published = new.public_identity()
        challenge = await self._challenge(email, "identity")  # fresh: Argon2 took a while
        if challenge.salt != first.salt:
            raise Conflict("the passphrase was changed meanwhile on another device")
        body: dict[str, Any] = {
            "challenge_id": challenge.challenge_id,
            "signature": b64e(keys.login_signing_key.sign(challenge.data).signature),
            "identity": published.to_json(),
            "key_change": KeyChange.sign(old, published).to_json(),
            "wrapped_keys": {"passphrase": wrap_identity(new, keys.kek).to_json(),
                             "recovery": wrap_identity(new, recovery_key).to_json()},
        }
        for name, value in (("totp_code", totp_code), ("recovery_code", recovery_code)):
            if value:
                body[name] = value.strip()
        response = await self._t.request("POST", "/v1/auth/identity", json=body)
        if self._checked_entry(account_id, parse(DirectoryEntry, response)) != published:
            raise IntegrityError("the directory did not publish the new identity")
        self.profile.unpin(account_id)
        pinning.pin(self.profile, account_id, published.fingerprint_hex())
        return published.fingerprint_hex()

    async def verify_account(self, account_id: str, *, replacing: bool = False
                             ) -> Verification:
        """Their fingerprint and our safety number, to compare in person before pinning.

        Raises :class:`IdentityMismatch` if the account is pinned and its key changed,
        unless ``replacing``: then the new key is shown for a fresh comparison, with the
        pin it would replace and whether the key verified before signed the change
        (:meth:`replace_pin` pins it once the user confirms).
        """
        my_id, _ = self._require_account()
        account_id = account_uuid(account_id)
        replaces: str | None = None
        signed: bool | None = None
        theirs, entry = await self._directory_entry(account_id)
        pinned = self.profile.pinned(account_id)
        if pinned is not None and compact(pinned) != theirs.fingerprint().hex():
            if not replacing or account_id == my_id:
                raise self._changed_key(account_id, pinned, theirs, entry)
            replaces = grouped(compact(pinned))
            signed = self._signed_change(pinned, entry, theirs)
        mine = await self.get_directory(my_id)
        return Verification(account_id=str(theirs.account_id),
                            fingerprint=theirs.fingerprint_hex(),
                            safety_number=mine.safety_number(theirs),
                            pinned=pinned is not None and replaces is None,
                            replaces=replaces, key_change_signed=signed)

    def replace_pin(self, account_id: str, fingerprint: str, replaces: str) -> None:
        """Pin the new key of an account the user verified again in person (after
        ``verify_account(..., replacing=True)``); only over the pin it was shown to
        replace."""
        account_id = account_uuid(account_id)
        pinned = self.profile.pinned(account_id)
        if pinned is None or compact(pinned) != compact(replaces):
            raise Conflict("the pin changed meanwhile; run `ecrin verify` again")
        self.profile.unpin(account_id)
        pinning.pin(self.profile, account_id, fingerprint)

    def pin(self, account_id: str, fingerprint: str) -> None:
        """Remember a fingerprint the user verified; later changes are refused loudly."""
        pinning.pin(self.profile, account_id, fingerprint)

    def pinned_account(self) -> Account | None:
        settings = self.profile.settings()
        if not settings.account_id:
            return None
        return Account(id=settings.account_id, email=settings.email or "",
                       role=settings.role or "")
