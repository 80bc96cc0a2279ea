"""Redis unreachable: the limited routes answer 503 with Retry-After, never 500, and the
gateway says it is not ready (rate limits fail closed: docs/deploy.md)."""

from __future__ import annotations

import socket
import uuid

import httpx

from tests.support.apps import build_app, running
from tests.support.users import b64


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


async def test_limited_routes_are_503_and_readyz_503(database_url_for, internal_keys):
    app = build_app("gateway", database_url_for("gateway"), internal_keys,
                    redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    async with running(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            challenge = await client.post("/v1/auth/challenge",
                                          json={"email": "down@example.fr"})
            login = await client.post("/v1/auth/login", json={
                "challenge_id": str(uuid.uuid4()), "signature": b64(bytes(64))})
            ready = await client.get("/readyz")
            alive = await client.get("/healthz")
    for response in (challenge, login, ready):
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert int(response.headers["retry-after"]) >= 1
    assert "Redis" in ready.json()["detail"]
    assert alive.status_code == 200  # alive, only not ready: no restart loop
