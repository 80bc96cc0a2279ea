"""The second factor's secrets: TOTP seeds sealed at rest, each time step accepted once,
one-time recovery codes kept as slow salted hashes. The cryptography is ``ecrin_e2ee``'s
(``AtRestKeyring``, ``OneTimeCodeHash``); this module decides what is stored."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
import uuid

import pyotp
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrin_e2ee import AtRestKey, AtRestKeyring, OneTimeCodeHash
from gateway.auth.tokens import AccessTokens
from gateway.models import Account
from gateway.settings import Settings

log = logging.getLogger("ecrin.gateway.auth")

STEP_S = 30
#: Steps either side of now that a code may belong to (clock drift).
DRIFT_STEPS = 1


def totp_keyring(settings: Settings, tokens: AccessTokens) -> AtRestKeyring:
    """The key that seals TOTP seeds, and the former ones that still open them.

    Required outside the development profile; there, without one, a key is derived from
    the access-token signing key (stable across restarts of one dev stack)."""
    text = settings.totp_key_text()
    if text:
        current = AtRestKey.from_text(text)
    elif settings.development_profile:
        current = AtRestKey(tokens.secret_for(b"totp-at-rest-v1"))
        log.warning("no ECRIN_GATEWAY_TOTP_KEY: TOTP secrets are sealed under a key derived "
                    "from the access-token key (development profile only)")
    else:
        raise RuntimeError("ECRIN_GATEWAY_TOTP_KEY (or _FILE) is required: it seals the TOTP "
                           "secrets at rest")
    old_text = settings.totp_old_keys.get_secret_value() if settings.totp_old_keys else ""
    old = [AtRestKey.from_text(k) for k in old_text.split(",") if k.strip()]
    return AtRestKeyring(current, old)


def _context(account_id: uuid.UUID) -> bytes:
    return b"totp-secret\n" + account_id.bytes


def seal_totp_secret(keys: AtRestKeyring, account_id: uuid.UUID, secret: str) -> str:
    return keys.seal(secret.encode(), _context(account_id))


def open_totp_secret(keys: AtRestKeyring, account_id: uuid.UUID, stored: str) -> str:
    """The base32 seed. A row from before sealing (plain base32) is still read; the caller
    re-seals it (``needs_reseal``)."""
    if not AtRestKeyring.is_sealed(stored):
        return stored
    return keys.open(stored, _context(account_id)).decode()


def needs_reseal(keys: AtRestKeyring, stored: str) -> bool:
    return not keys.is_current(stored)


def accepted_step(secret: str, code: str, last_step: int | None,
                  now: float | None = None) -> int | None:
    """The time step ``code`` belongs to, if it is within the drift window and later than
    the last step this account had accepted; else None. Each step is accepted once."""
    code = code.strip()
    if not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = int((time.time() if now is None else now) // STEP_S)
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # Every candidate is compared, so the time taken does not say which one matched.
        if hmac.compare_digest(totp.at(step * STEP_S), code) and found is None:
            found = step
    if found is None or (last_step is not None and found <= last_step):
        return None
    return found


def new_recovery_codes() -> list[str]:
    return [f"{secrets.token_hex(3)}-{secrets.token_hex(3)}" for _ in range(10)]


def _code_digest(code: str) -> bytes:
    """SHA-256 (hex) of the normalised code: what the stored Argon2id hash is taken over,
    so that the rows kept as bare SHA-256 before could be upgraded in place (0004)."""
    normalised = code.strip().lower().replace("-", "")
    return hashlib.sha256(normalised.encode()).hexdigest().encode()


def _hash_all(codes: list[str]) -> list[str]:
    return [OneTimeCodeHash.hash(_code_digest(c)) for c in codes]


def _find(stored: list[str], code: str) -> int | None:
    digest = _code_digest(code)
    found = None
    for i, hashed in enumerate(stored):  # all of them: the time says nothing
        if OneTimeCodeHash.verify(hashed, digest) and found is None:
            found = i
    return found


async def hash_recovery_codes(codes: list[str]) -> list[str]:
    """Argon2id (salted, ~20 ms each) off the event loop."""
    return await asyncio.to_thread(_hash_all, codes)


async def find_recovery_code(stored: list[str], code: str) -> int | None:
    """The index of the stored hash ``code`` matches, off the event loop."""
    if not code.strip() or len(code) > 32:
        return None
    return await asyncio.to_thread(_find, stored, code)


async def reseal_totp_secrets(sessionmaker: async_sessionmaker[AsyncSession],
                              keys: AtRestKeyring) -> int:
    """At start: seal every TOTP seed still in clear (stored before sealing) or under an
    old key, so that a dump never holds one, whether or not its owner signed in since.
    Idempotent; two replicas starting together write equally valid ciphertexts.
    -> how many were re-sealed."""
    async with sessionmaker() as session, session.begin():
        rows = (await session.execute(
            select(Account.id, Account.totp_secret).where(Account.totp_secret.is_not(None))
        )).all()
        stale = [(account_id, stored) for account_id, stored in rows
                 if stored is not None and needs_reseal(keys, stored)]
        for account_id, stored in stale:
            secret = open_totp_secret(keys, account_id, stored)
            await session.execute(update(Account).where(Account.id == account_id)
                                  .values(totp_secret=seal_totp_secret(keys, account_id,
                                                                       secret)))
    return len(stale)
