"""Forwards ``/v1/<area>/...`` to the owning service, streaming both ways.

Bodies are never buffered: the request body is read from the client as the service
consumes it, and the response body is relayed chunk by chunk, so memory stays flat
whatever the size. Client-supplied internal headers are dropped; the gateway adds the
internal token (audience = the target service) and the request id.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from ecrin_platform.problems import ServiceError, problem_response
from ecrin_platform.tokens import HEADER as INTERNAL_HEADER
from ecrin_platform.tokens import InternalTokenIssuer, Principal
from gateway.routing import owner_of

log = logging.getLogger("ecrin.gateway.proxy")

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade", "host",
})
#: Never forwarded from a client: the gateway alone speaks for the user to services.
STRIPPED_REQUEST = frozenset({"authorization", "cookie", "forwarded", "x-forwarded-for",
                              "x-forwarded-host", "x-forwarded-proto", "x-real-ip",
                              "x-http-method-override", "x-method-override",
                              "x-http-method"})
STRIPPED_RESPONSE = frozenset({"server", "date", "set-cookie"})
_BAD_PATH = re.compile(r"(%2f|%5c|%2e|%00|\\|/\.{1,2}(/|$)|//)", re.IGNORECASE)

PrincipalResolver = Callable[[Request], Awaitable[Principal | None]]


class BadPath(ServiceError):
    status, slug, title = 400, "bad-path", "Malformed path"


class Proxy:
    def __init__(self, *, client: httpx.AsyncClient, issuer: InternalTokenIssuer,
                 upstream_url: Callable[[str], str], resolve_principal: PrincipalResolver) -> None:
        self.client = client
        self.issuer = issuer
        self.upstream_url = upstream_url
        self.resolve_principal = resolve_principal

    async def forward(self, request: Request) -> Response:
        raw_path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
        if _BAD_PATH.search(raw_path):
            raise BadPath("Encoded separators and dot segments are not accepted.")
        service = owner_of(raw_path)
        if service is None:
            allowed = _own_methods(request)
            if allowed:
                # A gateway route with another method (PUT /v1/auth/me): say so, as a
                # service would, rather than pretend the path does not exist.
                return problem_response(405, "Method not allowed.",
                                        headers={"Allow": ", ".join(sorted(allowed))})
            return problem_response(404, "No such route.")
        principal = await self.resolve_principal(request)
        request_id = request.scope["state"]["request_id"]

        # Raw bytes both ways: a header value that is not ASCII (HTTP allows obs-text) is
        # relayed as received; decoded to str, httpx could not encode it again (a 500).
        headers: list[tuple[bytes, bytes]] = []
        for raw_name, value in request.headers.raw:
            name = raw_name.decode("latin-1").lower()
            if (name not in HOP_BY_HOP and name not in STRIPPED_REQUEST
                    and not name.startswith("x-ecrin-") and name != "x-request-id"):
                headers.append((name.encode("latin-1"), value))
        headers.append((INTERNAL_HEADER.encode(), self.issuer.issue(
            service, request_id=request_id, principal=principal).encode()))
        headers.append((b"x-request-id", request_id.encode()))
        if request.client:
            headers.append((b"x-forwarded-for", request.client.host.encode()))

        query = request.scope.get("query_string", b"").decode("latin-1")
        url = self.upstream_url(service) + raw_path + (f"?{query}" if query else "")
        has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
        upstream_request = self.client.build_request(
            request.method, url, headers=headers,
            content=_relay(request) if has_body else None)
        try:
            upstream = await self.client.send(upstream_request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout,
                httpx.RemoteProtocolError, httpx.ReadTimeout) as exc:
            log.warning("upstream unavailable", extra={"upstream": service,
                                                       "error": type(exc).__name__})
            return problem_response(503, f"The {service} service is unavailable; retry shortly.",
                                    headers={"Retry-After": "2"}, request_id=request_id)
        response_headers = {k: v for k, v in upstream.headers.items()
                            if k not in HOP_BY_HOP and k not in STRIPPED_RESPONSE
                            and k != "x-request-id"}
        return StreamingResponse(_stream(upstream), status_code=upstream.status_code,
                                 headers=response_headers,
                                 background=BackgroundTask(upstream.aclose))


def _own_methods(request: Request) -> set[str]:
    """Methods of the gateway's own routes whose path matches this request's."""
    app = request.app
    patterns = getattr(app.state, "own_route_patterns", None)
    if patterns is None:
        patterns = []
        for path, operations in app.openapi().get("paths", {}).items():
            regex = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(path))
            patterns.append((re.compile(f"^{regex}$"), {m.upper() for m in operations}))
        app.state.own_route_patterns = patterns
    path = request.url.path
    return {m for pattern, methods in patterns if pattern.match(path) for m in methods}


async def _relay(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


async def _stream(upstream: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    finally:
        await upstream.aclose()
