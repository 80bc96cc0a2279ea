"""Who a forwarded request acts for, and the gateway's own gates before forwarding."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Collection

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Scope

from ecrin_platform.db import read_only_session
from ecrin_platform.pg_channel import PgChannel
from ecrin_platform.problems import Forbidden, ServiceError
from ecrin_platform.tokens import Principal
from gateway.auth.errors import CurrentWrapProtected, SecondFactorMissing
from gateway.auth.repository import AuthRepository
from gateway.auth.schemas import b64decode, b64encode
from gateway.auth.service import AuthService
from gateway.settings import Settings

#: Areas holding patient data: practitioners need a verified second factor there.
PATIENT_DATA_AREAS = frozenset({"records", "keyrings", "files", "grants", "invitations",
                                "rotations"})
#: The only public paths a recovery session may reach.
RECOVERY_PREFIXES = ("/v1/keys/me/wraps/",)
_INVITATION_REDEEM = re.compile(r"^/v1/invitations/(lookup/[^/]+|[^/]+/redeem)$")
#: A passphrase wrap, named by its KDF salt (b64). Matched on the decoded path: the kms
#: decodes ``%41`` to ``A`` before it looks the key id up.
_PASSPHRASE_WRAP = re.compile(r"^/v1/keys/me/wraps/passphrase/([^/]+)$")


class PrincipalCache:
    """Access token -> the principal its live session gave, for ``ttl_s`` seconds.

    Every forwarded request used to verify the token's signature and read the session
    row: a database round trip per request, the largest item of the gateway's CPU. Within
    ``ttl_s`` a token seen again reuses the answer. A request that ends a session of an
    account, or changes what a check of it holds, says so (``sessions_changed_by``), and
    every replica, this one included, forgets that account's checks (``forget``); ``clear``
    forgets everything (a replica that may have missed a notice). Failures are never
    cached."""

    MAX_ENTRIES = 50_000

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, Principal]] = {}
        #: Account id -> the tokens cached for it (an entry may have expired meanwhile).
        self._tokens: dict[str, set[str]] = {}
        #: Counts ``clear`` and ``forget`` calls.
        self.generation = 0

    def get(self, token: str) -> Principal | None:
        hit = self._entries.get(token)
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            self._drop(token)
            return None
        return hit[1]

    def put(self, token: str, principal: Principal, generation: int) -> None:
        """Remember a check made since ``generation`` (read before the check): a check
        that overlapped a ``clear`` or a ``forget`` (of any account) may have read a
        session that has ended since, and is not kept."""
        if self.ttl_s <= 0 or generation != self.generation:
            return
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
            self._tokens.clear()
        self._drop(token)
        self._entries[token] = (time.monotonic() + self.ttl_s, principal)
        self._tokens.setdefault(principal.account_id, set()).add(token)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._tokens.clear()

    def forget(self, account_ids: Collection[str]) -> None:
        """Forget every check of these accounts' sessions; the others stay. No account:
        nothing happens (an anonymous write must not keep new checks out by moving the
        generation)."""
        if not account_ids:
            return
        self.generation += 1
        for account_id in account_ids:
            for token in self._tokens.pop(account_id, ()):
                self._entries.pop(token, None)

    def _drop(self, token: str) -> None:
        hit = self._entries.pop(token, None)
        if hit is not None:
            tokens = self._tokens.get(hit[1].account_id)
            if tokens is not None:
                tokens.discard(token)
                if not tokens:
                    del self._tokens[hit[1].account_id]


#: The gateway's replicas say on it that one of them changed account or session state:
#: each notice is the id of an account whose sessions changed.
SESSIONS_CHANNEL = "ecrin_sessions_changed"
#: The request state's entry: the accounts whose sessions this request changed.
SESSIONS_CHANGED = "sessions_changed"


def replicas_channel(engine: AsyncEngine, cache: PrincipalCache) -> PgChannel | None:
    """On PostgreSQL (where replicas share the database), the channel on which a request
    that ended a session (``sessions_changed_by``) through any replica makes every
    replica's ``cache`` forget that account's checks; a notice that is not an account id
    (a replica of an older version says ``changed``) empties it, and so does a lost
    listening connection, which may have missed a notice. None on SQLite, which has one
    process."""
    if engine.dialect.name != "postgresql":
        return None
    return PgChannel(engine, SESSIONS_CHANNEL, on_message=lambda payload: _heard(cache, payload),
                     on_lost=cache.clear)


def _heard(cache: PrincipalCache, payload: str) -> None:
    try:
        account_id = str(uuid.UUID(payload))
    except ValueError:
        cache.clear()
        return
    cache.forget([account_id])


def sessions_changed_by(request: Request) -> Callable[[uuid.UUID], None]:
    """What ``AuthService`` calls, with the account, where this request ends a session of
    it (a logout, a revocation, a reused refresh token, a passphrase or identity change) or
    changes what a remembered check holds (a second factor verified): only then are the
    other replicas told, and only of that account, so that no anonymous or failed request
    empties their caches, and one user's logout leaves the others' checks."""

    def changed(account_id: uuid.UUID) -> None:
        accounts: set[str] = getattr(request.state, SESSIONS_CHANGED, set())
        accounts.add(str(account_id))
        setattr(request.state, SESSIONS_CHANGED, accounts)

    return changed


def sessions_changed_in(scope: Scope) -> list[str]:
    """The accounts whose sessions the request of ``scope`` changed (none: tell nobody)."""
    return sorted(scope.get("state", {}).get(SESSIONS_CHANGED, ()))


async def resolve_principal(request: Request) -> Principal | None:
    """Anonymous without a bearer token; 401 for a bad one; the gates otherwise."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    app = request.app
    cache: PrincipalCache = app.state.principal_cache
    principal = cache.get(token) if scheme.lower() == "bearer" else None
    if principal is None:
        generation = cache.generation
        async with read_only_session(app.state.engine) as session:
            service = AuthService(AuthRepository(session), app.state.auth)
            principal = await service.principal(token if scheme.lower() == "bearer" else None)
        cache.put(token, principal, generation)
    path = request.url.path
    recovery_gate(principal, path)
    if _INVITATION_REDEEM.match(path):
        # Redemption attempts are rate-limited like logins: a code is 120 bits, but a
        # flood of lookups should still stop early.
        host = request.client.host if request.client else "unknown"
        # The proxy adds the limit's state to the service's successful answer.
        request.state.rate_limit_headers = await app.state.rate_limiter.check(
            "invitation", host, principal.account_id)
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        wrap = _PASSPHRASE_WRAP.match(path)
        if wrap is not None:
            await _refuse_current_wrap(app.state.engine, principal, wrap.group(1))
    second_factor_gate(app.state.settings, principal, path)
    return principal


def recovery_gate(principal: Principal, path: str) -> None:
    """A recovery session reaches only the paths that reset the passphrase."""
    if principal.session_kind != "normal" and not path.startswith(RECOVERY_PREFIXES):
        raise Forbidden("A recovery session may only reset the passphrase.")


def second_factor_gate(settings: Settings, principal: Principal, path: str) -> None:
    """A practitioner reaches patient data only with a verified second factor (when the
    deployment requires it)."""
    area = path.split("/")[2] if path.count("/") >= 2 else ""
    if (settings.require_practitioner_2fa and principal.role == "practitioner"
            and not principal.second_factor and area in PATIENT_DATA_AREAS):
        raise SecondFactorMissing("Enable and verify a second factor (ecrin 2fa enable) to "
                                  "reach patient data.")


def passes_gates(settings: Settings, principal: Principal, path: str) -> bool:
    """Whether a ``GET path`` of ``principal``'s session would pass the gates above, for a
    gateway route that fetches it on the session's behalf (the login's unlock answer)."""
    try:
        recovery_gate(principal, path)
        second_factor_gate(settings, principal, path)
    except ServiceError:
        return False
    return True


async def _refuse_current_wrap(engine: AsyncEngine, principal: Principal, key_id: str) -> None:
    """An access token alone may store a wrap for a new salt (a passphrase change, step 1)
    and delete the wraps of old salts, never replace or delete the wrap of the current
    passphrase: that would lock the account out, or swap its identity keys. The current
    wrap changes only with the passphrase or the identity, which take a fresh proof."""
    async with read_only_session(engine) as session:
        salt = await AuthRepository(session).kdf_salt(uuid.UUID(principal.account_id))
    if salt is None:
        return
    try:
        same = key_id == b64encode(salt) or b64decode(key_id) == salt
    except ValueError:
        same = False
    if same:
        raise CurrentWrapProtected(
            "This is the wrap of the current passphrase: it changes only with the passphrase "
            "(POST /v1/auth/passphrase) or the identity (POST /v1/auth/identity).")
