"""A service that fails under a forwarded request is a 503 with Retry-After, never a 500."""

from __future__ import annotations

import httpx
import pytest

from tests.support.apps import build_app, running


@pytest.mark.parametrize("error", [httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError,
                                   httpx.ConnectError, httpx.ReadTimeout, httpx.WriteTimeout,
                                   httpx.PoolTimeout])
async def test_an_upstream_transport_failure_is_a_503(database_url_for, internal_keys, error):
    def fail(request: httpx.Request) -> httpx.Response:
        raise error("connection reset by peer", request=request)

    app = build_app("gateway", database_url_for("gateway"), internal_keys)
    async with running(app, rollback=False) as client:
        app.state.proxy.client = httpx.AsyncClient(transport=httpx.MockTransport(fail))
        for method, body in (("GET", None), ("POST", b'{"a": 1}')):
            response = await client.request(method, "/v1/directory/anyone", content=body,
                                            headers={"content-type": "application/json"})
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "2"
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["x-request-id"]
