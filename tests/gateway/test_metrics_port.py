"""The gateway's public listener has no /metrics: per-route counts stay off the internet."""

from __future__ import annotations

from tests.support.apps import build_app, running


async def test_metrics_is_404_on_the_public_listener(database_url_for, internal_keys):
    app = build_app("gateway", database_url_for("gateway"), internal_keys)
    async with running(app) as client:
        response = await client.get("/metrics")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
