"""A login, statement by statement. On PostgreSQL the challenge is one statement outside
any transaction block that reads the account's KDF facts and stores the challenge (four
round trips with BEGIN and COMMIT before, issue 21), and the login five statements: the
challenge spent with its account locked, the audit chain's lock, end and event, the session
with its refresh token (seven before). SQLite keeps its own way. Either way the challenge
belongs to the account only when it is active, an unknown email gets a challenge that can
never succeed, and a signed challenge opens one session, once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, select, update

from ecrin_e2ee import KdfParams, create_account, derive_account_keys
from gateway.auth.repository import AuthRepository
from gateway.auth.service import AuthService
from gateway.models import Account, LoginChallenge
from tests.support.apps import build_app, running
from tests.support.users import b64, unb64


@contextmanager
def statements(app: Any) -> Iterator[list[tuple[str, object]]]:
    """Each statement the gateway's engine runs, with its isolation level."""
    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, context.execution_options.get("isolation_level")))

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", capture)


async def _stored(app: Any, challenge_id: str) -> LoginChallenge:
    async with app.state.sessionmaker() as session:
        row = await session.get(LoginChallenge, uuid.UUID(challenge_id))
        assert row is not None
        return row


async def _active_account(app: Any, setup: Any, email: str) -> None:
    """The account's row as a finished signup leaves it."""
    async with app.state.sessionmaker() as session:
        now = datetime.now(UTC)
        session.add(Account(
            id=setup.account_id, email=email, role="patient", status="active",
            login_public_key=setup.login_public_key,
            recovery_public_key=setup.recovery_key.login_public_key,
            kdf_salt=setup.salt, kdf_params=setup.params.to_json(),
            signup_key=uuid.uuid4().hex, signup_digest="0" * 64,
            created_at=now, updated_at=now))
        await session.commit()


async def test_fewer_statements_on_postgresql_and_the_challenge_opens_one_session(
        database_url_for, internal_keys):
    app = build_app("gateway", database_url_for("gateway"), internal_keys)
    passphrase = "une phrase de passe solide"
    setup = create_account(uuid.uuid4(), passphrase, KdfParams.insecure_for_tests())
    email = f"kine-{uuid.uuid4().hex[:8]}@example.fr"
    async with running(app, rollback=False) as c:
        await _active_account(app, setup, email)
        app.state.auth.challenge_purge_due()  # the first call purges: not this one's
        with statements(app) as seen:
            got = await c.post("/v1/auth/challenge", json={"email": email.upper()})
        assert got.status_code == 200, got.text
        challenge = got.json()
        if app.state.engine.dialect.name == "postgresql":
            assert len(seen) == 1, seen
            assert seen[0][1] == "AUTOCOMMIT", seen
        else:  # BEGIN IMMEDIATE, the look-up, the INSERT
            assert [q.split()[0] for q, _ in seen] == ["BEGIN", "SELECT", "INSERT"], seen
        assert unb64(challenge["kdf"]["salt"]) == setup.salt
        assert (await _stored(app, challenge["challenge_id"])).account_id == setup.account_id

        stranger = await c.post("/v1/auth/challenge",
                                json={"email": f"x-{uuid.uuid4().hex[:8]}@example.fr"})
        assert stranger.status_code == 200
        assert set(stranger.json()) == set(challenge)
        assert (await _stored(app, stranger.json()["challenge_id"])).account_id is None

        keys = derive_account_keys(passphrase, setup.salt, setup.params)
        signature = keys.login_signing_key.sign(unb64(challenge["challenge"])).signature
        with statements(app) as seen:
            login = await c.post("/v1/auth/login", json={
                "challenge_id": challenge["challenge_id"], "signature": b64(signature)})
        assert login.status_code == 200, login.text
        assert login.json()["account"]["id"] == str(setup.account_id)
        if app.state.engine.dialect.name == "postgresql":
            # the challenge spent with its account locked; the audit chain's lock, its end
            # and the event; the session with its refresh token (seven before)
            assert len(seen) == 5, seen
            assert "FOR UPDATE OF accounts" in seen[0][0] and "UPDATE login_challenges" in (
                seen[0][0]), seen[0]
            assert "INSERT INTO sessions" in seen[-1][0] and "INTO refresh_tokens" in (
                seen[-1][0]), seen[-1]
        refreshed = await c.post("/v1/auth/refresh",
                                 json={"refresh_token": login.json()["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        again = await c.post("/v1/auth/login", json={  # one challenge, one session
            "challenge_id": challenge["challenge_id"], "signature": b64(signature)})
        assert again.status_code == 401, again.text

        # An account that is not active gets a challenge bound to no one: signed by
        # its own key, it opens nothing.
        async with app.state.sessionmaker() as session:
            await session.execute(update(Account).where(Account.id == setup.account_id)
                                  .values(status="pending"))
            await session.commit()
        refused = (await c.post("/v1/auth/challenge", json={"email": email})).json()
        assert (await _stored(app, refused["challenge_id"])).account_id is None
        signature = keys.login_signing_key.sign(unb64(refused["challenge"])).signature
        denied = await c.post("/v1/auth/login", json={
            "challenge_id": refused["challenge_id"], "signature": b64(signature)})
        assert denied.status_code == 401, denied.text
        assert (await _stored(app, refused["challenge_id"])).used_at is None  # rolled back
        async with app.state.sessionmaker() as session:
            assert (await session.scalar(select(Account.status).where(
                Account.id == setup.account_id))) == "pending"


async def test_a_spend_waits_for_the_accounts_lock_and_reads_what_its_holder_wrote(
        database_url_for, internal_keys):
    """Two logins of one account at once: the second spends its challenge only once the
    first has committed, and reads the account as the first left it (the last TOTP step
    it accepted), so one TOTP code never opens two sessions."""
    app = build_app("gateway", database_url_for("gateway"), internal_keys)
    setup = create_account(uuid.uuid4(), "une phrase de passe", KdfParams.insecure_for_tests())
    email = f"kine-{uuid.uuid4().hex[:8]}@example.fr"
    async with running(app, rollback=False) as c:
        await _active_account(app, setup, email)
        challenge = (await c.post("/v1/auth/challenge", json={"email": email})).json()

        async def spend() -> tuple[Any, int | None]:
            """The challenge spent, and the last TOTP step its account had then."""
            async with app.state.sessionmaker() as session:
                service = AuthService(AuthRepository(session), app.state.auth)
                try:
                    spent, account = await service._spend(
                        uuid.UUID(challenge["challenge_id"]), "login", datetime.now(UTC))
                    return spent, None if account is None else account.totp_last_step
                finally:
                    await session.rollback()

        async with app.state.engine.connect() as holder:  # a login holding the account
            await holder.begin()
            await holder.execute(update(Account).where(Account.id == setup.account_id)
                                 .values(totp_last_step=424242))
            waiting = asyncio.create_task(spend())
            await asyncio.sleep(0.5)
            assert not waiting.done()
            await holder.commit()
        spent, last_step = await asyncio.wait_for(waiting, 10)
    assert spent is not None and last_step == 424242
