"""HTTP conventions applied by the platform to every service: WWW-Authenticate on 401,
Retry-After on 503, 304 for a matching If-None-Match, and an Allow naming every method of
the path on 405."""

from __future__ import annotations

from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ecrin_platform.conventions import HttpConventionsMiddleware, etag_matches
from ecrin_platform.deps import CurrentPrincipal, CurrentUser
from ecrin_platform.openapi import forbidding_operations
from ecrin_platform.tokens import HEADER, InternalTokenIssuer
from tests.support.apps import build_app


def _app() -> HttpConventionsMiddleware:
    async def record(request):
        return JSONResponse({"v": 3}, headers={"ETag": '"v3"', "Cache-Control": "no-store"})

    async def content(request):
        async def chunks():
            for _ in range(3):
                yield b"x" * 10

        return StreamingResponse(chunks(), headers={"ETag": '"v3"'})

    async def down(request):
        return Response(status_code=503)

    async def refused(request):
        return Response(status_code=401)

    return HttpConventionsMiddleware(Starlette(routes=[
        Route("/record", record), Route("/content", content), Route("/down", down),
        Route("/refused", refused)]))


@pytest.fixture
async def client():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()),
                                 base_url="http://test") as c:
        yield c


class TestConditionalReads:
    @pytest.mark.parametrize("path", ["/record", "/content"])
    async def test_a_matching_if_none_match_is_a_304_without_a_body(self, client, path):
        response = await client.get(path, headers={"If-None-Match": 'W/"v2", "v3"'})
        assert response.status_code == 304
        assert response.content == b""
        assert response.headers["etag"] == '"v3"'
        assert "content-length" not in response.headers or \
            response.headers["content-length"] == "0"

    async def test_another_version_is_read_in_full(self, client):
        response = await client.get("/record", headers={"If-None-Match": '"v2"'})
        assert response.status_code == 200 and response.json() == {"v": 3}

    def test_weak_comparison(self):
        assert etag_matches('W/"v3"', '"v3"') and etag_matches("*", '"v1"')
        assert not etag_matches('"v31"', '"v3"')


class TestChallengesAndRetries:
    async def test_401_names_the_bearer_scheme(self, client):
        response = await client.get("/refused")
        assert response.headers["www-authenticate"] == 'Bearer realm="ecrin"'

    async def test_503_says_when_to_retry(self, client):
        assert (await client.get("/down")).headers["retry-after"] == "1"


class TestAllow:
    @pytest.mark.parametrize("path,allowed", [
        ("/v1/records/3f0c6b1e-2d4a-4c8e-9b7a-5e6f7a8b9c0d", "DELETE, GET"),
        ("/v1/records/headers", "GET"),
        ("/v1/records", "GET, POST")])
    async def test_405_names_every_method_of_the_path_and_only_its_own(
            self, internal_keys, path, allowed):
        app = build_app("records-api", "sqlite+aiosqlite:///:memory:", internal_keys)
        token = InternalTokenIssuer(internal_keys[0]).issue("records-api")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test") as client:
            response = await client.patch(path, headers={HEADER: token})
        assert response.status_code == 405
        assert response.headers["allow"] == allowed



async def _owned(user: CurrentUser) -> str:  # a chained dependency
    return user.account_id


_things = APIRouter(prefix="/v1/things")


@_things.get("/{thing}")
async def _read(thing: str, owner: Annotated[str, Depends(_owned)]) -> None: ...


@_things.put("/{thing}")
async def _recover(thing: str, principal: CurrentPrincipal) -> None: ...


@_things.get("")
async def _public() -> None: ...


class TestDeclared403:
    def test_a_route_declares_403_when_a_dependency_of_it_can_refuse(self):
        assert forbidding_operations(_things.routes) == {("get", "/v1/things/{thing}")}
