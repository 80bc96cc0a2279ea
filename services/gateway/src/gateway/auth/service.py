"""The rules of accounts and sessions. Endpoints parse and delegate; this module decides."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from ecrin_e2ee import AtRestKeyring, AuditSigningKey, E2EEError, PublicIdentity
from ecrin_platform.audit import AuditLog
from ecrin_platform.problems import Forbidden, NotFound, ServiceError
from ecrin_platform.tokens import Principal
from gateway.auth.errors import (
    IdempotencyKeyReused,
    InvalidCredentials,
    InvalidToken,
    RefreshTokenReused,
    SecondFactorRequired,
    StepUpRequired,
    WeakKdf,
    WrapMissing,
)
from gateway.auth.kms import KmsClient
from gateway.auth.repository import AuthRepository, SessionFacts, SpentChallenge
from gateway.auth.schemas import (
    AccountOut,
    ChallengeOut,
    DirectoryEntryOut,
    IdentityChangeIn,
    KdfIn,
    KdfOut,
    LoginIn,
    PassphraseChangeIn,
    SessionOut,
    SignupIn,
    SignupOut,
    StepUpIn,
    TokenPair,
    b64decode,
    b64encode,
)
from gateway.auth.second_factor import (
    accepted_step,
    find_recovery_code,
    hash_recovery_codes,
    needs_reseal,
    new_recovery_codes,
    open_totp_secret,
    seal_totp_secret,
)
from gateway.auth.tokens import AccessClaims, AccessTokens, hash_token
from gateway.models import Account, Session
from gateway.settings import Settings

log = logging.getLogger("ecrin.gateway.auth")

CHALLENGE_LABEL = "ecrin-auth-v1"
#: Expired challenges are deleted by one challenge request in this many seconds, not by
#: every one (they are refused by their expiry anyway; a DELETE per login was waste).
CHALLENGE_PURGE_EVERY_S = 30.0
RECOVERY_SESSION_TTL = timedelta(minutes=15)


class InvalidIdentity(ServiceError):
    status, slug, title = 422, "invalid-identity", "Invalid public identity"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass
class AuthContext:
    """What the auth rules need besides the database; built once per app."""

    settings: Settings
    tokens: AccessTokens
    kms: KmsClient
    audit: AuditLog
    #: Seals TOTP seeds at rest (settings ``totp_key``; ``second_factor.totp_keyring``).
    totp_keys: AtRestKeyring
    #: When this gateway last deleted expired challenges (``time.monotonic``).
    challenges_purged_at: float = field(default=float("-inf"), init=False)

    def challenge_purge_due(self) -> bool:
        now = time.monotonic()
        if now - self.challenges_purged_at < CHALLENGE_PURGE_EVERY_S:
            return False
        self.challenges_purged_at = now
        return True

    def fake_salt(self, email: str) -> bytes:
        return self.tokens.secret_for(b"fake-salt:" + email.encode())[:16]

    def default_params(self) -> dict[str, Any]:
        return {"alg": "argon2id13", "opslimit": self.settings.min_kdf_opslimit,
                "memlimit": self.settings.min_kdf_memlimit}


@dataclass
class Authenticated:
    account: Account
    session: Session


def _expect_live(session: Session | SessionFacts | None, claims: AccessClaims) -> None:
    """The token's session exists, is the token account's, and has neither ended nor
    expired."""
    if (session is None or session.revoked_at is not None
            or _aware(session.expires_at) < utcnow()
            or session.account_id != claims.account_id):
        raise InvalidToken("The session has ended.", headers={"WWW-Authenticate": "Bearer"})


def _digest(body: SignupIn) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def account_out(account: Account) -> AccountOut:
    return AccountOut(id=account.id, email=account.email, role=account.role,
                      second_factor_enabled=account.totp_enabled)


class AuthService:
    def __init__(self, repo: AuthRepository, ctx: AuthContext,
                 sessions_changed: Callable[[uuid.UUID], None] = lambda _account: None
                 ) -> None:
        self.repo = repo
        self.ctx = ctx
        #: Called, with the account, where a request ends a session of it or changes what a
        #: remembered session check holds (``gateway.auth.principal``): the gateway then
        #: tells its other replicas to forget that account's checks.
        self._sessions_changed = sessions_changed

    async def _log(self, account_id: uuid.UUID, action: str, *,
                   target: uuid.UUID | str | None = None, outcome: str = "ok") -> None:
        await self.ctx.audit.append(self.repo.session, chain=f"account:{account_id}",
                                    actor=account_id, action=action,
                                    target=target or account_id, outcome=outcome)

    async def audit_trail(self, auth: Authenticated, key: AuditSigningKey) -> dict[str, Any]:
        return await self.ctx.audit.served(self.repo.session, f"account:{auth.account.id}",
                                           key)

    # -- sign-up ----------------------------------------------------------------------------

    def _check_kdf(self, kdf: KdfIn) -> None:
        s = self.ctx.settings
        if kdf.params.opslimit < s.min_kdf_opslimit or kdf.params.memlimit < s.min_kdf_memlimit:
            raise WeakKdf(f"Argon2id needs opslimit >= {s.min_kdf_opslimit} and memlimit >= "
                          f"{s.min_kdf_memlimit}.")

    async def signup(self, body: SignupIn, idempotency_key: str) -> SignupOut:
        """Sign-up saga: the account row and the kms keys appear together or not at all.

        The account row is written in this request's transaction, the kms stores the keys
        (idempotent), and only then does the transaction commit. A kms failure rolls the
        row back; a crash after the kms step leaves inert keys that the retry reuses.

        No enumeration: a taken email (or a taken account id) creates nothing and gets the
        very answer a new account gets; the taken account's own history records the
        attempt, and whoever signed up learns it when the login fails (docs/accounts.md).
        The endpoint holds both answers to the same duration.
        """
        self._check_kdf(body.kdf)
        try:
            identity = PublicIdentity.from_json(body.identity)
            identity.verify()
        except (E2EEError, ValueError, TypeError, KeyError):
            raise InvalidIdentity("The identity's self-signature does not verify.") from None
        if identity.account_id != body.account_id:
            raise InvalidIdentity("The identity belongs to another account.")
        digest = _digest(body)
        email = body.email.lower()
        accepted = SignupOut(account_id=body.account_id, email=email, role=body.role)
        existing = await self.repo.account(body.account_id)
        if existing is not None:
            if existing.signup_digest == digest:
                return accepted  # the idempotent retry
            if existing.signup_key == idempotency_key:
                raise IdempotencyKeyReused("This idempotency key was used for another body.")
            await self._signup_refused(existing)
            return accepted
        taken = await self.repo.account_by_email(email)
        if taken is not None:
            await self._signup_refused(taken)
            return accepted
        now = utcnow()
        account = Account(
            id=body.account_id, email=email, role=body.role, status="pending",
            login_public_key=b64decode(body.login_public_key),
            recovery_public_key=b64decode(body.recovery_public_key),
            kdf_salt=b64decode(body.kdf.salt), kdf_params=body.kdf.params.model_dump(),
            signup_key=idempotency_key, signup_digest=digest, totp_enabled=False,
            recovery_code_hashes=[], created_at=now, updated_at=now)
        self.repo.add(account)
        await self.repo.flush()  # takes the email's unique slot before the kms call
        await self.ctx.kms.store_account_keys(body.account_id, {
            "identity": body.identity,
            "passphrase": {"key_id": body.kdf.salt, "wrap": body.wrapped_keys.passphrase},
            "recovery": body.wrapped_keys.recovery,
        })
        account.status = "active"
        await self.repo.flush()
        await self._log(account.id, "account.signup")
        return accepted

    async def _signup_refused(self, account: Account) -> None:
        """A sign-up for a taken email or id: only the account's own history says so."""
        await self.ctx.audit.append(self.repo.session, chain=f"account:{account.id}",
                                    actor=None, action="account.signup",
                                    target=account.id, outcome="refused:taken")

    # -- challenges and login --------------------------------------------------------------

    async def challenge(self, email: str, action: str, host: str) -> ChallengeOut:
        email = email.lower()
        now = utcnow()
        challenge_id = uuid.uuid4()
        expires = now + timedelta(seconds=self.ctx.settings.challenge_ttl_s)
        payload = "\n".join([CHALLENGE_LABEL, host, action, str(challenge_id),
                             b64encode(secrets.token_bytes(32)),
                             str(int(expires.timestamp()))]).encode()
        purge = now - timedelta(minutes=10) if self.ctx.challenge_purge_due() else None
        if self.repo.postgres:
            account = await self.repo.challenge_facts_adding(
                email, challenge_id, action, payload, expires, purge_before=purge)
        else:
            if purge is not None:
                await self.repo.purge_challenges(purge)
            account = await self.repo.challenge_facts(email)
            await self.repo.add_challenge(challenge_id, account.id if (
                account is not None and account.status == "active") else None,
                action, payload, expires)
        if account is not None and account.status == "active":
            salt, params = account.kdf_salt, account.kdf_params
        else:
            salt, params = self.ctx.fake_salt(email), self.ctx.default_params()
        return ChallengeOut(challenge_id=challenge_id, challenge=b64encode(payload),
                            expires_at=expires, kdf=KdfOut(salt=b64encode(salt), params=params))

    async def _refuse(self, account: Account, action: str, target: str,
                      error: ServiceError) -> ServiceError:
        """Keeps a refusal although the request fails: the challenge stays spent (one
        challenge, one guess) and the account's chain records it (ids only)."""
        await self._log(account.id, action, target=target, outcome="refused")
        await self.repo.session.commit()
        return error

    async def _consume_challenge(self, challenge_id: uuid.UUID, signature: str, action: str,
                                 *, recovery_key: bool = False) -> Account:
        """The account whose key signed this unused, unexpired challenge for ``action``.
        A signature checked, right or wrong, spends the challenge (a wrong one commits the
        spend: one challenge, one guess); a challenge refused before that (unknown,
        expired, another action's, an inactive account) is left as it was. The account
        row is locked, so two requests never both accept one TOTP step."""
        now = utcnow()
        # Spent in the statement that reads it; a refusal before ``_refuse`` rolls the
        # spend back, as the lookup it replaces left the challenge unspent.
        challenge, account = await self._spend(challenge_id, action, now)
        if challenge is None or account is None or account.status != "active":
            raise InvalidCredentials("The credentials are not valid.")
        key = account.recovery_public_key if recovery_key else account.login_public_key
        try:
            VerifyKey(key).verify(challenge.payload, b64decode(signature))
        except (BadSignatureError, ValueError):
            log.warning("login refused", extra={"account_id": str(account.id),
                                                "action": action, "reason": "bad-signature"})
            event = {"login": "auth.login", "recover": "auth.recover"}.get(action,
                                                                            "auth.step-up")
            raise await self._refuse(account, event, action, InvalidCredentials(
                "The credentials are not valid.")) from None
        return account

    async def _spend(self, challenge_id: uuid.UUID, action: str, now: datetime
                     ) -> tuple[SpentChallenge | None, Account | None]:
        """The challenge spent (only an unused, unexpired one for ``action``) and its
        account locked: one statement on PostgreSQL, two on SQLite."""
        if self.repo.postgres:
            return await self.repo.spend_challenge_locking_account(challenge_id, action,
                                                                   now) or (None, None)
        challenge = await self.repo.spend_challenge(challenge_id, action, now)
        if challenge is None or challenge.account_id is None:
            return challenge, None
        return challenge, await self.repo.account_for_update(challenge.account_id)

    async def _check_second_factor(self, account: Account, totp_code: str | None,
                                   recovery_code: str | None, *, action: str) -> bool:
        """True when a second factor was verified; False when none is enrolled. A wrong or
        missing one is refused, recorded, and (the challenge being spent) final for the
        challenge. A TOTP step is accepted once per account."""
        if not account.totp_enabled:
            return False
        if totp_code and account.totp_secret:
            keys = self.ctx.totp_keys
            secret = open_totp_secret(keys, account.id, account.totp_secret)
            step = accepted_step(secret, totp_code, account.totp_last_step)
            if step is not None:
                account.totp_last_step = step
                if needs_reseal(keys, account.totp_secret):  # older key, or a plain seed
                    account.totp_secret = seal_totp_secret(keys, account.id, secret)
                return True
        if recovery_code:
            index = await find_recovery_code(list(account.recovery_code_hashes), recovery_code)
            if index is not None:
                account.recovery_code_hashes = [h for i, h in
                                                enumerate(account.recovery_code_hashes)
                                                if i != index]
                return True
        log.warning("second factor refused", extra={"account_id": str(account.id),
                                                    "action": action})
        raise await self._refuse(account, "auth.second-factor", action, SecondFactorRequired(
            "This account needs its second factor (TOTP or a one-time recovery code)."))

    async def _step_up(self, auth: Authenticated, action: str, proof: StepUpIn) -> None:
        """A fresh proof for one sensitive action, beyond the access token: a challenge for
        ``action`` signed by this account's login key, and the second factor if enrolled."""
        signer = await self._consume_challenge(proof.challenge_id, proof.signature, action)
        if signer.id != auth.account.id:
            raise InvalidCredentials("The credentials are not valid.")
        await self._check_second_factor(signer, proof.totp_code, proof.recovery_code,
                                        action=action)
        await self._log(auth.account.id, "auth.step-up", target=action)

    async def login(self, body: LoginIn, *, recovery: bool = False) -> tuple[TokenPair, str]:
        """A new session for a signed challenge; with its tokens, the key id of the
        account's passphrase wrap (its KDF salt, b64), which the session may unlock next."""
        action = "recover" if recovery else "login"
        account = await self._consume_challenge(body.challenge_id, body.signature, action,
                                                recovery_key=recovery)
        verified = await self._check_second_factor(account, body.totp_code,
                                                   body.recovery_code, action=action)
        now = utcnow()
        ttl = (RECOVERY_SESSION_TTL if recovery
               else timedelta(seconds=self.ctx.settings.refresh_token_ttl_s))
        session_id = uuid.uuid4()
        await self._log(account.id, "auth.recover" if recovery else "auth.login",
                        target=session_id)
        # The session and its refresh token without the unit of work: nothing reads these
        # rows back here.
        refresh = secrets.token_urlsafe(32)
        await self.repo.add_session(
            session_id, account.id, kind="recovery" if recovery else "normal",
            device_name=body.device_name, second_factor_verified=verified, now=now,
            expires_at=now + ttl, refresh_token_hash=hash_token(refresh))
        return (self._pair(account, session_id, verified, refresh),
                b64encode(account.kdf_salt))

    async def _issue(self, account: Account, session_id: uuid.UUID,
                     second_factor_verified: bool) -> TokenPair:
        refresh = secrets.token_urlsafe(32)
        await self.repo.add_refresh_token(hash_token(refresh), session_id, utcnow())
        return self._pair(account, session_id, second_factor_verified, refresh)

    def _pair(self, account: Account, session_id: uuid.UUID, second_factor_verified: bool,
              refresh: str) -> TokenPair:
        return TokenPair(access_token=self.ctx.tokens.issue(account.id, session_id, account.role),
                         refresh_token=refresh, expires_in=self.ctx.tokens.ttl_s,
                         session_id=session_id, second_factor_verified=second_factor_verified,
                         account=account_out(account))

    async def refresh(self, token: str) -> TokenPair:
        row = await self.repo.refresh_token_for_update(hash_token(token))
        if row is None:
            raise InvalidToken("Unknown refresh token.")
        session = await self.repo.session_row(row.session_id)
        now = utcnow()
        if session is None or session.revoked_at is not None or _aware(session.expires_at) < now:
            raise InvalidToken("The session has ended.")
        if row.used_at is not None:
            # A stolen token and its legitimate holder both hold the family now: end it.
            session.revoked_at, session.revoked_reason = now, "refresh-reuse"
            await self.repo.session.commit()  # must persist although the request fails
            self._sessions_changed(session.account_id)
            raise RefreshTokenReused("This refresh token was already used; the session is "
                                     "revoked.")
        row.used_at = now
        session.last_used_at = now
        account = await self.repo.account(session.account_id)
        assert account is not None
        return await self._issue(account, session.id, session.second_factor_verified)

    # -- the authenticated user -------------------------------------------------------------

    def _claims(self, bearer: str | None) -> AccessClaims:
        if not bearer:
            raise InvalidToken("A bearer access token is required.",
                               headers={"WWW-Authenticate": "Bearer"})
        try:
            return self.ctx.tokens.verify(bearer)
        except Exception:
            raise InvalidToken("The access token is invalid or expired.",
                               headers={"WWW-Authenticate": "Bearer"}) from None

    async def authenticate(self, bearer: str | None) -> Authenticated:
        """The session and account rows behind an access token (the gateway's own routes,
        which may change them)."""
        claims = self._claims(bearer)
        session = await self.repo.session_row(claims.session_id)
        _expect_live(session, claims)
        assert session is not None
        account = await self.repo.account(claims.account_id)
        if account is None or account.status != "active":
            raise InvalidToken("The account is not active.")
        return Authenticated(account, session)

    async def principal(self, bearer: str | None) -> Principal:
        """Who a forwarded request acts for: the same checks as ``authenticate`` against
        the live session (a revoked session stops at once), in one read of two columns'
        worth of rows rather than two ORM loads."""
        claims = self._claims(bearer)
        facts = await self.repo.session_facts(claims.session_id)
        _expect_live(facts, claims)
        assert facts is not None
        if facts.status != "active":
            raise InvalidToken("The account is not active.")
        return Principal(account_id=str(claims.account_id), role=facts.role,
                         session_id=str(claims.session_id),
                         second_factor=facts.second_factor_verified, session_kind=facts.kind)

    async def logout(self, auth: Authenticated) -> None:
        auth.session.revoked_at, auth.session.revoked_reason = utcnow(), "logout"
        self._sessions_changed(auth.account.id)
        await self.repo.flush()
        await self._log(auth.account.id, "auth.logout", target=auth.session.id)

    async def sessions(self, auth: Authenticated) -> list[SessionOut]:
        rows = await self.repo.sessions_of(auth.account.id, utcnow())
        return [SessionOut(id=s.id, device_name=s.device_name, kind=s.kind,
                           created_at=_aware(s.created_at), last_used_at=_aware(s.last_used_at),
                           current=s.id == auth.session.id) for s in rows]

    async def revoke_session(self, auth: Authenticated, session_id: uuid.UUID,
                             proof: StepUpIn | None = None) -> None:
        """Ends a session of one's own. The current one ends with the access token (it is
        a logout); another takes a step-up, so a stolen token cannot log the owner out of
        his other devices."""
        row = await self.repo.session_row(session_id)
        if row is None or row.account_id != auth.account.id:
            raise NotFound("No such session.")
        if row.id != auth.session.id:
            if proof is None:
                raise StepUpRequired("Revoking another session takes a fresh 'sessions' "
                                     "challenge signed by the login key (and the second "
                                     "factor): POST /v1/auth/sessions/{id}/revoke.")
            await self._step_up(auth, "sessions", proof)
        if row.revoked_at is None:
            row.revoked_at, row.revoked_reason = utcnow(), "revoked"
            self._sessions_changed(auth.account.id)
        await self.repo.flush()
        await self._log(auth.account.id, "auth.session-revoke", target=row.id)

    # -- second factor ------------------------------------------------------------------------

    async def enrol_totp(self, auth: Authenticated) -> tuple[str, str]:
        if auth.account.totp_enabled:
            raise Forbidden("A second factor is already enabled.")
        secret = pyotp.random_base32()
        auth.account.totp_secret = seal_totp_secret(self.ctx.totp_keys, auth.account.id, secret)
        await self.repo.flush()
        uri = pyotp.TOTP(secret).provisioning_uri(name=auth.account.email, issuer_name="Écrin")
        return secret, uri

    async def confirm_totp(self, auth: Authenticated, code: str) -> list[str]:
        account = auth.account
        if account.totp_enabled or not account.totp_secret:
            raise Forbidden("Start the enrolment first.")
        secret = open_totp_secret(self.ctx.totp_keys, account.id, account.totp_secret)
        step = accepted_step(secret, code, account.totp_last_step)
        if step is None:
            raise SecondFactorRequired("The code does not match; check the device's clock.")
        codes = new_recovery_codes()
        account.totp_enabled = True
        account.totp_last_step = step  # the enrolment's code does not log in again
        account.recovery_code_hashes = await hash_recovery_codes(codes)
        account.updated_at = utcnow()
        auth.session.second_factor_verified = True
        self._sessions_changed(account.id)
        await self.repo.flush()
        await self._log(account.id, "2fa.enable")
        return codes

    # -- passphrase ---------------------------------------------------------------------------

    async def change_passphrase(self, auth: Authenticated, body: PassphraseChangeIn) -> None:
        account = auth.account
        if auth.session.kind == "normal":
            # A recovery session proved the recovery key and the second factor to open.
            if body.challenge_id is None or body.signature is None:
                raise StepUpRequired("Sign a 'passphrase' challenge with the current login "
                                     "key (and give the second factor).")
            await self._step_up(auth, "passphrase", StepUpIn(
                challenge_id=body.challenge_id, signature=body.signature,
                totp_code=body.totp_code, recovery_code=body.recovery_code))
        self._check_kdf(body.new_kdf)
        if not await self.ctx.kms.has_passphrase_wrap(account.id, body.new_kdf.salt):
            raise WrapMissing("Store the identity wrapped under the new KEK first.")
        now = utcnow()
        account.login_public_key = b64decode(body.new_login_public_key)
        account.kdf_salt = b64decode(body.new_kdf.salt)
        account.kdf_params = body.new_kdf.params.model_dump()
        account.updated_at = now
        keep = auth.session.id if auth.session.kind == "normal" else None
        await self.repo.revoke_sessions(account.id, now, "passphrase-change", except_id=keep)
        self._sessions_changed(account.id)
        await self.repo.flush()
        await self._log(account.id, "auth.passphrase-change")

    # -- identity -------------------------------------------------------------------------------

    async def change_identity(self, auth: Authenticated, body: IdentityChangeIn
                              ) -> DirectoryEntryOut:
        """Replace the account's identity: an access token alone never does.

        The caller signs a fresh ``identity`` challenge with the current login key (which
        only the passphrase derives) and gives the second factor when one is enrolled; the
        kms then checks the statement signed by the identity it publishes. The passphrase
        wrap named is the one of the account's current salt, never a client's choice.
        Every other session ends, so other devices pick up the new identity at their next
        login."""
        account = auth.account
        await self._step_up(auth, "identity", StepUpIn(
            challenge_id=body.challenge_id, signature=body.signature,
            totp_code=body.totp_code, recovery_code=body.recovery_code))
        principal = Principal(account_id=str(account.id), role=account.role,
                              session_id=str(auth.session.id),
                              second_factor=auth.session.second_factor_verified)
        entry = await self.ctx.kms.change_identity(principal, {
            "identity": body.identity,
            "key_change": body.key_change,
            "passphrase": {"key_id": b64encode(account.kdf_salt),
                           "wrap": body.wrapped_keys.passphrase},
            "recovery": body.wrapped_keys.recovery,
        })
        now = utcnow()
        account.updated_at = now
        await self.repo.revoke_sessions(account.id, now, "identity-change",
                                        except_id=auth.session.id)
        self._sessions_changed(account.id)
        await self.repo.flush()
        await self._log(account.id, "account.identity-change")
        return DirectoryEntryOut.model_validate(entry)
