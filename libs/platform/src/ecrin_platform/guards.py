"""Pure ASGI guards: internal authentication, request body and header limits, no-store."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ecrin_platform.problems import PROBLEM_JSON, problem_body
from ecrin_platform.tokens import HEADER, InternalTokenVerifier, InvalidInternalToken

#: /metrics is not among them: it is served on a listener of its own (observability).
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})


async def send_problem(send: Send, status: int, detail: str,
                       headers: Iterable[tuple[bytes, bytes]] = (), **extra: Any) -> None:
    body = json.dumps(problem_body(status, detail, **extra)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", PROBLEM_JSON.encode()),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class InternalAuthMiddleware:
    """Every call but the health checks must carry a valid internal token."""

    def __init__(self, app: ASGIApp, *, verifier: Callable[[], InternalTokenVerifier],
                 forwarded: dict[str, frozenset[str]] | None = None) -> None:
        self.app = app
        self.verifier = verifier
        #: path prefix -> other services whose token may be forwarded there (the caller's
        #: own token, proving who the user is; see the sharing service's access route).
        self.forwarded = forwarded or {}

    def _audiences(self, path: str) -> frozenset[str] | None:
        for prefix, callers in self.forwarded.items():
            if path.startswith(prefix):
                return callers | {self.verifier().audience}
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        token = b""
        for name, value in scope.get("headers") or []:
            if name == HEADER.encode():
                token = value
                break
        try:
            if not token:
                raise InvalidInternalToken("missing")
            claims = self.verifier().verify(token.decode("latin-1"),
                                            audiences=self._audiences(scope["path"]))
        except InvalidInternalToken:
            await send_problem(send, 401, "A valid internal token is required.",
                               [(b"www-authenticate", b'Bearer realm="ecrin-internal"')])
            return
        scope.setdefault("state", {})["internal"] = claims
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """413 for bodies over the limit, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, *, default_limit: int,
                 overrides: Iterable[tuple[str, int]] = ()) -> None:
        self.app = app
        self.default_limit = default_limit
        self.overrides = [(re.compile(pattern), limit) for pattern, limit in overrides]

    def limit_for(self, path: str) -> int:
        for pattern, limit in self.overrides:
            if pattern.match(path):
                return limit
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        for name, value in scope.get("headers") or []:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_problem(send, 400, "Invalid Content-Length.")
                    return
                if declared > limit:
                    await send_problem(send, 413, f"The body exceeds {limit} bytes.",
                                       max_bytes=limit)
                    return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await send_problem(send, 413, f"The body exceeds {limit} bytes.", max_bytes=limit)
        except Exception as exc:  # an app may wrap our signal in its own error
            if caused_by_body_limit(exc) and not response_started:
                await send_problem(send, 413, f"The body exceeds {limit} bytes.", max_bytes=limit)
            else:
                raise


class _BodyTooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so that the app renders it as a 413
    even when a framework wraps body-parsing errors."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The body exceeds {limit} bytes.")


def caused_by_body_limit(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, _BodyTooLarge):
            return True
        if isinstance(exc, BaseExceptionGroup):
            return any(caused_by_body_limit(e) for e in exc.exceptions)
        exc = exc.__cause__ or exc.__context__
    return False


class HeaderLimitMiddleware:
    """431 for a request whose headers exceed ``max_bytes`` in total or ``max_count`` in
    number. The HTTP parser (httptools) sets no bound of its own: a 1 MiB header used to
    reach the routes, and the gateway would have forwarded it to a service."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = 16 * 1024, max_count: int = 100
                 ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_count = max_count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope.get("headers") or []
            size = sum(len(k) + len(v) + 4 for k, v in headers)
            if len(headers) > self.max_count or size > self.max_bytes:
                await send_problem(send, 431, "Request headers are too large.",
                                   slug="request-header-fields-too-large",
                                   title="Request header fields too large")
                return
        await self.app(scope, receive, send)


class NoStoreMiddleware:
    """``Cache-Control: no-store`` on every response: they carry account data, wrapped keys,
    ciphertext or answers about them (a cached 404 would outlive a new grant), and nothing
    here is meant for a shared cache or a browser's disk."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"cache-control"]
                message["headers"] = [*headers, (b"cache-control", b"no-store")]
            await send(message)

        await self.app(scope, receive, send_no_store)
