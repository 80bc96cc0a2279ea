"""Forwards ``/v1/<area>/...`` to the owning service, streaming both ways.

Bodies are never buffered beyond ``SMALL_BODY`` bytes: a larger request body is read from
the client as the service consumes it, and a larger or unsized response body is relayed
chunk by chunk, so memory stays flat whatever the size. Client-supplied internal headers
are dropped; the gateway adds the internal token (audience = the target service) and the
request id.

Every request of the product crosses this code, so it is plain ASGI: ``ProxyDispatch``
sits inside the gateway's guards (request id, logs, metrics, header and body limits,
no-store) and hands the paths a service owns straight to ``Proxy.handle``, without
FastAPI's routing, dependency and response machinery. Paths no service owns go on to the
FastAPI app (the gateway's own routes, and its 404/405 answers).
"""

from __future__ import annotations

import json
import logging
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NamedTuple

import aiohttp
from fastapi import FastAPI
from multidict import CIMultiDict
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from yarl import URL

from ecrin_platform.guards import caused_by_body_limit
from ecrin_platform.keepalive import CLIENT_IDLE_S
from ecrin_platform.problems import ServiceError, problem_response
from ecrin_platform.tokens import HEADER as INTERNAL_HEADER
from ecrin_platform.tokens import InternalTokenIssuer, Principal
from ecrin_platform.tracing import inject as inject_trace
from gateway.routing import owner_of

log = logging.getLogger("ecrin.gateway.proxy")

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"host",
})
#: Never forwarded from a client: the gateway alone speaks for the user to services.
STRIPPED_REQUEST = frozenset({b"authorization", b"cookie", b"forwarded", b"x-forwarded-for",
                              b"x-forwarded-host", b"x-forwarded-proto", b"x-real-ip",
                              b"x-http-method-override", b"x-method-override",
                              b"x-http-method", b"x-request-id",
                              # The trace context is the gateway's own (tracing.py: the
                              # edge starts the trace; a client's is a link at most).
                              b"traceparent", b"tracestate", b"baggage"})
#: Upstream answer headers never relayed. ``clear-site-data``: only the gateway's own logout
#: may tell a browser to erase its storage (the sealed device state: pins, bindings,
#: rollback marks), never a service behind it, compromised or not.
STRIPPED_RESPONSE = frozenset({b"server", b"date", b"set-cookie", b"x-request-id",
                               b"clear-site-data"})
_BAD_PATH = re.compile(r"(%2f|%5c|%2e|%00|\\|/\.{1,2}(/|$)|//)", re.IGNORECASE)
#: Methods forwarded to a service; any other gets the app's 405, never a signed token.
PROXIED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
                             "TRACE"})
#: Request bodies announced at most this size are read whole and sent in one piece;
#: responses announced at most this size are relayed without a disconnect watcher.
SMALL_BODY = 1 << 20

#: What a gateway route may carry from a service in its own answer (``Proxy.get_for``, the
#: login's unlock answer: about 2 KB, more with many identity changes), and how long it
#: waits for it; beyond either the device fetches it itself.
CARRIED_BODY = 256 << 10
CARRIED_TIMEOUT_S = 3.0

PrincipalResolver = Callable[[Request], Awaitable[Principal | None]]


class BadPath(ServiceError):
    status, slug, title = 400, "bad-path", "Malformed path"


class ProxiedRoute(NamedTuple):
    """What the access log and metrics label a forwarded request with (bounded: one per
    area, never the ids in the path)."""

    path: str


#: What aiohttp would add on its own: the gateway relays the client's headers, not its own.
_NO_AUTO_HEADERS = frozenset({"User-Agent", "Accept", "Accept-Encoding", "Content-Type"})


def upstream_session(timeout_s: float,
                     tls: ssl.SSLContext | bool = True) -> aiohttp.ClientSession:
    """The proxy's pool of keep-alive connections to the services. Bodies are relayed as
    they are (no decompression); no cookies are kept. ``tls``: the mutual-TLS context for
    https upstreams (ecrin_platform.tls.client_context)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256, limit_per_host=128, ttl_dns_cache=60,
                                       ssl=tls, keepalive_timeout=CLIENT_IDLE_S),
        timeout=aiohttp.ClientTimeout(total=None, connect=5, sock_read=timeout_s),
        auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=_NO_AUTO_HEADERS)


class Proxy:
    def __init__(self, *, client: aiohttp.ClientSession, issuer: InternalTokenIssuer,
                 upstream_url: Callable[[str], str], resolve_principal: PrincipalResolver) -> None:
        self.client = client
        self.issuer = issuer
        self.upstream_url = upstream_url
        self.resolve_principal = resolve_principal

    async def get_for(self, principal: Principal, service: str, path: str, request_id: str,
                      *, timeout_s: float = CARRIED_TIMEOUT_S) -> bytes | None:
        """The answer to ``GET path`` for ``principal``'s session (the internal token the
        proxy sends for that session's own requests), as strict JSON, if the service
        answers 200 with a JSON object of at most ``CARRIED_BODY`` bytes within
        ``timeout_s``; None otherwise (the service down, slow or refusing: the device then
        asks itself and learns why)."""
        headers = {INTERNAL_HEADER: self.issuer.issue(service, request_id=request_id,
                                                      principal=principal),
                   "x-request-id": request_id}
        inject_trace(headers)
        try:
            async with self.client.get(URL(self.upstream_url(service) + path, encoded=True),
                                       headers=headers, allow_redirects=False,
                                       timeout=aiohttp.ClientTimeout(total=timeout_s)
                                       ) as upstream:
                announced = upstream.headers.get("content-length", "")
                if (upstream.status != 200 or not announced.isdigit()
                        or int(announced) > CARRIED_BODY):
                    return None
                body = await upstream.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("upstream unavailable", extra={"upstream": service,
                                                       "error": type(exc).__name__})
            return None
        return _json_object(body)

    async def handle(self, scope: Scope, receive: Receive, send: Send, service: str) -> None:
        """Forward one request to ``service``; any refusal is a problem+json answer."""
        request = Request(scope, receive)
        try:
            response = await self._forward(request, service)
        except Exception as exc:
            if caused_by_body_limit(exc):
                raise  # the body limit guard answers 413
            response = await _error_response(request, exc)
        try:
            await response(scope, receive, send)
        finally:
            # also when the client left before the body started (idempotent)
            if isinstance(response, _Relayed | _Streamed):
                response.upstream.release()

    async def _forward(self, request: Request, service: str) -> Response:
        scope = request.scope
        raw_path = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        if _BAD_PATH.search(raw_path):
            raise BadPath("Encoded separators and dot segments are not accepted.")
        principal = await self.resolve_principal(request)
        request_id = scope["state"]["request_id"]

        # A header value that is not ASCII (HTTP allows obs-text) is decoded as latin-1 and
        # relayed (aiohttp sends it UTF-8 encoded, so its bytes change) rather than
        # refused with a 500.
        headers: CIMultiDict[str] = CIMultiDict()
        length: int | None = None
        chunked = False
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.lower()
            if name == b"content-length":
                length = int(raw_value) if raw_value.isdigit() else -1
            elif name == b"transfer-encoding":
                chunked = True
            if (name not in HOP_BY_HOP and name not in STRIPPED_REQUEST
                    and not name.startswith(b"x-ecrin-")):
                headers.add(name.decode("latin-1"), raw_value.decode("latin-1"))
        headers[INTERNAL_HEADER] = self.issuer.issue(service, request_id=request_id,
                                                     principal=principal)
        headers["x-request-id"] = request_id
        inject_trace(headers)  # W3C traceparent: the service's spans join this trace
        if scope.get("client"):
            headers["x-forwarded-for"] = scope["client"][0]

        query = scope.get("query_string", b"").decode("latin-1")
        url = self.upstream_url(service) + raw_path + (f"?{query}" if query else "")
        content: bytes | AsyncIterator[bytes] | None = None
        if length is not None and 0 <= length <= SMALL_BODY and not chunked:
            content = await request.body()
        elif length is not None or chunked:
            content = _relay(request)
        try:
            upstream = await self.client.request(
                request.method, URL(url, encoded=True), headers=headers,
                data=content, allow_redirects=False, compress=None)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            # Refused, reset, timed out, or closed under the request (a keep-alive
            # connection the service had just dropped): the service is unavailable for
            # this request, never an internal error of the gateway.
            if caused_by_body_limit(exc):
                raise  # the client's own body went over the limit: the guard says 413
            log.warning("upstream unavailable", extra={"upstream": service,
                                                       "error": type(exc).__name__})
            return problem_response(503, f"The {service} service is unavailable; retry shortly.",
                                    headers={"Retry-After": "2"}, request_id=request_id)
        response_headers = [(k.lower(), v) for k, v in upstream.raw_headers
                            if k.lower() not in HOP_BY_HOP
                            and k.lower() not in STRIPPED_RESPONSE]
        limits: dict[str, str] = scope["state"].get("rate_limit_headers") or {}
        if limits and 200 <= upstream.status < 300:
            # A route the gateway rate-limits (invitation look-ups and redemptions): its
            # successful answers say what is left, as the gateway's own limited routes do.
            response_headers += [(name.lower().encode(), value.encode())
                                 for name, value in limits.items()]
        announced = upstream.headers.get("content-length", "")
        if announced.isdigit() and int(announced) <= SMALL_BODY:
            return _Relayed(upstream, response_headers)
        return _Streamed(upstream, response_headers)


class _Relayed(Response):
    """A small upstream response, relayed as it arrives, with no disconnect watcher (the
    upstream closes it in a few chunks at most)."""

    def __init__(self, upstream: aiohttp.ClientResponse,
                 headers: list[tuple[bytes, bytes]]) -> None:
        self.upstream = upstream
        self.status_code = upstream.status
        self.raw_headers = headers
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            async for chunk in self.upstream.content.iter_any():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk,
                                "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.upstream.release()


class _Streamed(StreamingResponse):
    """A large or unsized upstream response, relayed chunk by chunk (bounded memory) with
    Starlette's disconnect watcher."""

    def __init__(self, upstream: aiohttp.ClientResponse,
                 headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__(_stream(upstream), status_code=upstream.status)
        self.raw_headers = headers
        self.upstream = upstream


class ProxyDispatch:
    """Pure ASGI: requests for a path a service owns go to the proxy; all others (the
    gateway's own routes, docs, unknown paths) to the app. ``on_own_write`` is called with
    the scope when a write the app serves is answered (its transaction has committed), and
    again when it ends: it forgets what the request says it changed. ``tell_replicas`` is
    awaited once
    per write the app answers, with its scope, before the answer leaves (or when the
    request ends without one): where the request ended a session, the other replicas
    forget their cached checks before the client can reach them with it."""

    SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

    def __init__(self, app: ASGIApp, *, proxy: Callable[[], Proxy],
                 on_own_write: Callable[[Scope], None] = lambda _scope: None,
                 tell_replicas: Callable[[Scope], Awaitable[None]] | None = None) -> None:
        self.app = app
        self.proxy = proxy
        self.on_own_write = on_own_write
        self.tell_replicas = tell_replicas

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        service = owner_of(raw_path)
        if service is not None and scope["method"] in PROXIED_METHODS:
            scope["route"] = ProxiedRoute("/v1/" + raw_path.split("/", 3)[2] + "/…")
            await self.proxy().handle(scope, receive, send, service)
            return
        if scope["method"] in self.SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        # (Unknown methods and paths reach the app, which answers 405 or 404.) What a write
        # changed is what the app marked in its scope (``sessions_changed_by``): a challenge,
        # a login or an anonymous write marks nothing, so it forgets and tells nothing.
        told = self.tell_replicas is None

        async def changed() -> None:
            nonlocal told
            self.on_own_write(scope)
            if not told and self.tell_replicas is not None:
                told = True
                await self.tell_replicas(scope)

        async def send_after_write(message: Message) -> None:
            if message["type"] == "http.response.start":
                await changed()
            await send(message)

        try:
            await self.app(scope, receive, send_after_write)
        finally:
            await changed()


async def _error_response(request: Request, exc: Exception) -> Response:
    """The answer the app's exception handlers give (problem+json), outside FastAPI's
    routing: a ServiceError, a database outage (503), anything else (500)."""
    if not isinstance(exc, ServiceError):
        log.warning("proxy error", extra={"error": type(exc).__name__})
    handlers = request.app.exception_handlers
    for cls in type(exc).__mro__:
        handler = handlers.get(cls)
        if handler is not None:
            answer = await handler(request, exc)
            assert isinstance(answer, Response)
            return answer
    raise exc


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _json_object(body: bytes) -> bytes | None:
    """``body`` encoded again as strict JSON (UTF-8 without a BOM, no NaN or Infinity,
    ASCII out) if it is a JSON object; None if not. Python's parser alone accepts more
    than JSON, and a splice of what it accepts could break the answer it goes into."""
    try:
        parsed = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
        if not isinstance(parsed, dict):
            return None
        return json.dumps(parsed, ensure_ascii=True, allow_nan=False,
                          separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        return None


def own_methods(app: FastAPI, path: str) -> set[str]:
    """Methods of the gateway's own routes whose path matches ``path``."""
    state = app.state
    patterns = getattr(state, "own_route_patterns", None)
    if patterns is None:
        patterns = []
        for route_path, operations in app.openapi().get("paths", {}).items():
            regex = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(route_path))
            patterns.append((re.compile(f"^{regex}$"), {m.upper() for m in operations}))
        state.own_route_patterns = patterns
    return {m for pattern, methods in patterns if pattern.match(path) for m in methods}


async def not_proxied(request: Request) -> Response:
    """A ``/v1/`` path no service owns: a gateway route with another method (PUT
    /v1/auth/me) is a 405 with Allow, as a service would say; anything else a 404."""
    raw_path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
    if _BAD_PATH.search(raw_path):
        raise BadPath("Encoded separators and dot segments are not accepted.")
    allowed = own_methods(request.app, request.url.path)
    if allowed:
        return problem_response(405, "Method not allowed.",
                                headers={"Allow": ", ".join(sorted(allowed))})
    return problem_response(404, "No such route.")


async def _relay(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


async def _stream(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.content.iter_chunked(1 << 16):
            yield chunk
    finally:
        upstream.release()


__all__ = ["BadPath", "Message", "Proxy", "ProxyDispatch", "not_proxied"]
