"""Expired login challenges are deleted by the challenge route, once in a while rather than
by every request (a DELETE per login was one statement of a login's few, issue 21)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from gateway.auth import service as auth_service
from gateway.models import LoginChallenge
from tests.support.apps import build_app, running


async def _expired(app, n: int = 2) -> None:
    async with app.state.sessionmaker() as session:
        for _ in range(n):
            session.add(LoginChallenge(id=uuid.uuid4(), account_id=None, action="login",
                                       payload=b"old",
                                       expires_at=datetime.now(UTC) - timedelta(hours=1)))
        await session.commit()


async def _count_expired(app) -> int:
    async with app.state.sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(LoginChallenge).where(
            LoginChallenge.expires_at < datetime.now(UTC) - timedelta(minutes=30)))).scalar_one()


async def _challenge(client) -> None:
    response = await client.post("/v1/auth/challenge", json={
        "email": f"nobody-{uuid.uuid4().hex[:6]}@example.fr", "action": "login"})
    assert response.status_code == 200, response.text


async def test_expired_challenges_are_purged_at_most_once_per_interval(
        database_url_for, internal_keys, monkeypatch):
    app = build_app("gateway", database_url_for("gateway"), internal_keys)
    async with running(app, rollback=False) as client:
        await _expired(app)
        await _challenge(client)
        assert await _count_expired(app) == 0
        await _expired(app)
        await _challenge(client)  # within the interval: no DELETE
        assert await _count_expired(app) == 2
        monkeypatch.setattr(auth_service, "CHALLENGE_PURGE_EVERY_S", 0.0)
        await _challenge(client)
        assert await _count_expired(app) == 0
