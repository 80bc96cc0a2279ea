"""Migration 0004: recovery codes kept as bare SHA-256 become salted Argon2id, and the
codes users hold keep working."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import uuid
from datetime import UTC, datetime

from alembic import command
from sqlalchemy import text

from ecrin_e2ee import AtRestKey, AtRestKeyring
from ecrin_platform.db import create_engine, create_sessionmaker
from ecrin_platform.migrations import alembic_config
from gateway.auth.second_factor import (
    find_recovery_code,
    open_totp_secret,
    reseal_totp_secrets,
)
from tests.support.databases import fresh_database, in_thread, migrations_of

CODES = ["a1b2c3-d4e5f6", "0a0b0c-0d0e0f"]


def _legacy(code: str) -> str:
    return hashlib.sha256(code.strip().lower().replace("-", "").encode()).hexdigest()


async def _insert_legacy(url: str, account_id: uuid.UUID) -> None:
    engine = create_engine(url)
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO accounts (id, email, role, status, login_public_key, "
            "recovery_public_key, kdf_salt, kdf_params, signup_key, signup_digest, "
            "totp_secret, totp_enabled, recovery_code_hashes, created_at, updated_at) VALUES "
            "(:id, 'legacy@example.fr', 'practitioner', 'active', :k, :k, :s, '{}', 'key', "
            "'digest', 'JBSWY3DPEHPK3PXP', :on, :hashes, :now, :now)"),
            {"id": account_id if url.startswith("postgres") else account_id.hex,
             "k": bytes(32), "s": bytes(16), "on": True, "now": now,
             "hashes": '["' + '","'.join(_legacy(c) for c in CODES) + '"]'})
    await engine.dispose()


async def _stored(url: str) -> tuple[list[str], int | None]:
    engine = create_engine(url)
    async with engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT recovery_code_hashes, totp_last_step FROM accounts"))).one()
    await engine.dispose()
    hashes = row[0] if isinstance(row[0], list) else json.loads(row[0])
    return hashes, row[1]


class TestRecoveryCodesUpgrade:
    def test_legacy_hashes_become_argon2id_and_still_match(self, backend, tmp_path,
                                                           worker_id_safe):
        url = fresh_database(backend, f"ecrin_test_{worker_id_safe}_gw0004", tmp_path)
        cfg = alembic_config(migrations_of("gateway"), url)
        in_thread(command.upgrade, cfg, "0003")
        in_thread(asyncio.run, _insert_legacy(url, uuid.uuid4()))
        in_thread(command.upgrade, cfg, "head")
        hashes, last_step = in_thread(asyncio.run, _stored(url))
        assert last_step is None
        assert all(h.startswith("$argon2id$") for h in hashes)
        assert not any(_legacy(c) in h for c in CODES for h in hashes)
        assert in_thread(asyncio.run, find_recovery_code(hashes, CODES[1])) == 1


async def _reseal_twice(url: str, keys: AtRestKeyring) -> tuple[int, int, str, str]:
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    first = await reseal_totp_secrets(sessionmaker, keys)
    second = await reseal_totp_secrets(sessionmaker, keys)
    async with engine.connect() as conn:
        stored, raw_id = (await conn.execute(text("SELECT totp_secret, id FROM accounts"))).one()
    await engine.dispose()
    return first, second, stored, str(raw_id)


class TestTotpSecretsSealedAtStart:
    def test_a_seed_stored_in_clear_is_sealed_at_start_without_a_sign_in(
            self, backend, tmp_path, worker_id_safe):
        """A dump taken right after the upgrade holds no TOTP seed: the gateway seals every
        seed still in clear when it starts, not only at its owner's next login."""
        url = fresh_database(backend, f"ecrin_test_{worker_id_safe}_gwseal", tmp_path)
        cfg = alembic_config(migrations_of("gateway"), url)
        in_thread(command.upgrade, cfg, "0003")
        account_id = uuid.uuid4()
        in_thread(asyncio.run, _insert_legacy(url, account_id))
        in_thread(command.upgrade, cfg, "head")
        keys = AtRestKeyring(AtRestKey(secrets.token_bytes(32)))
        first, second, stored, _ = in_thread(asyncio.run, _reseal_twice(url, keys))
        assert (first, second) == (1, 0)  # idempotent
        assert "JBSWY3DPEHPK3PXP" not in stored and AtRestKeyring.is_sealed(stored)
        assert open_totp_secret(keys, account_id, stored) == "JBSWY3DPEHPK3PXP"
