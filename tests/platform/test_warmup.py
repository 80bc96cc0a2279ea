"""The routing state is built when a service starts, not by its first request
(``ecrin_platform.warmup``)."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi import routing as fastapi_routing
from starlette.responses import PlainTextResponse
from starlette.routing import Mount

from ecrin_platform.warmup import warm_routes
from tests.support.apps import build_app, running


@pytest.fixture
def builds(monkeypatch):
    """How many route states FastAPI has built: it builds them through this (private)
    method, which is what the warm-up relies on. A FastAPI that stops calling it fails
    ``test_a_service_serves_its_first_request_on_routes_built_at_start``: check the
    warm-up against that version."""
    built: list[str] = []
    build = fastapi_routing._IncludedRouter._build_effective_context

    def counting(self, route):
        built.append(getattr(route, "path", "?"))
        return build(self, route)

    monkeypatch.setattr(fastapi_routing._IncludedRouter, "_build_effective_context", counting)
    return built


def greedy_app(called: list[str]) -> FastAPI:
    """Routes that match a great deal: a parameter at the root, a catch-all path, a
    mount at the root, nested routers."""
    inner = APIRouter(prefix="/keys")
    outer = APIRouter(prefix="/v1")

    @inner.get("/{key_id}")
    async def key(key_id: str) -> dict[str, str]:
        called.append("key")
        return {"key": key_id}

    outer.include_router(inner)

    @outer.api_route("/{path:path}", methods=["GET", "POST"])
    async def anything(path: str) -> dict[str, str]:
        called.append("anything")
        return {"path": path}

    app = FastAPI()
    app.include_router(outer)

    @app.get("/{name}")
    async def root(name: str) -> dict[str, str]:
        called.append("root")
        return {"name": name}

    async def mounted(scope, receive, send) -> None:
        called.append("mount")
        await PlainTextResponse("mounted")(scope, receive, send)

    app.router.routes.append(Mount("/", app=mounted))
    return app


class TestWarmRoutes:
    async def test_builds_every_router_and_runs_no_endpoint(self, builds):
        called: list[str] = []
        app = greedy_app(called)
        assert await warm_routes(app.router, "test") == 404
        assert called == []
        assert "/keys/{key_id}" in builds and "/v1/{path:path}" in builds
        built = len(builds)
        # a real request after it builds nothing more
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t") as client:
            assert (await client.get("/v1/keys/k1")).json() == {"key": "k1"}
        assert len(builds) == built
        assert called == ["key"]

    async def test_a_route_that_answers_is_logged(self, caplog):
        async def answers_everything(scope, receive, send) -> None:
            await PlainTextResponse("hello")(scope, receive, send)

        with caplog.at_level(logging.WARNING, logger="ecrin.warmup"):
            assert await warm_routes(answers_everything, "test") == 200
        assert [r.getMessage() for r in caplog.records] == ["route warm-up was answered"]


@pytest.mark.parametrize("service", ["gateway", "records-api", "sharing", "kms"])
async def test_a_service_serves_its_first_request_on_routes_built_at_start(
        service, builds, database_url_for, internal_keys, caplog):
    app = build_app(service, database_url_for(service), internal_keys)
    with caplog.at_level(logging.INFO):
        async with running(app) as client:
            assert builds, "the start built no routing state"
            built = len(builds)
            started = len(caplog.records)
            # through every middleware, to the first router (which the first request built)
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 200
            assert len(builds) == built
    # the warm-up itself went past the middleware: no access log line, no warning
    before = [r for r in caplog.records[:started] if r.name.endswith(".access")
              or r.name == "ecrin.warmup"]
    assert before == []
