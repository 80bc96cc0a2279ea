"""A malicious server in transit: an httpx transport between the real client SDK and the
real gateway that forwards every request and lets a test rewrite the answer (status,
headers, JSON body or raw content bytes) before the SDK sees it.

``EcrinClient(server, profile, transport=MaliciousServer(rewrite))``: ``rewrite(exchange)``
is called for every answer (sync or async) and edits the :class:`Exchange` in place.
``await exchange.genuine(path)`` fetches another genuine answer with the same credentials,
so a rewrite can splice in what the server holds for another record, file or version.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

CHUNK = 64 * 1024 + 17  # one content-stream chunk on the wire (CHUNK_SIZE + tag and flag)

Rewrite = Callable[["Exchange"], Awaitable[None] | None]


@dataclass
class Exchange:
    """One request and the answer the SDK will receive (edit it in place)."""

    request: httpx.Request
    status: int
    headers: dict[str, str]
    content: bytes
    server: MaliciousServer
    tampered: bool = False

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def path(self) -> str:
        return self.request.url.path

    @property
    def params(self) -> dict[str, str]:
        return dict(self.request.url.params)

    def json(self) -> Any:
        return json.loads(self.content)

    def set_json(self, body: Any) -> None:
        self.content = json.dumps(body).encode()
        self.headers["content-type"] = "application/json"
        self.tampered = True

    def set_content(self, content: bytes) -> None:
        self.content = content
        self.tampered = True

    async def genuine(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """What the real server answers to ``GET path`` for the same user (JSON)."""
        return json.loads(await self.server.fetch(self.request, path, params))

    async def genuine_bytes(self, path: str) -> bytes:
        return await self.server.fetch(self.request, path, None)


@dataclass
class MaliciousServer(httpx.AsyncBaseTransport):
    """Forwards to the real gateway; ``rewrite`` tampers with the answers."""

    rewrite: Rewrite | None = None
    seen: list[tuple[str, str]] = field(default_factory=list)
    tampered: list[tuple[str, str]] = field(default_factory=list)
    #: (method, path, body) of every request whose body was in memory (JSON): what the
    #: device really sent, for tests that check it never sealed a key to the attacker.
    sent: list[tuple[str, str, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def fetch(self, like: httpx.Request, path: str, params: dict[str, Any] | None) -> bytes:
        headers = {k: v for k, v in like.headers.items() if k.lower() in (
            "authorization", "user-agent")}
        request = httpx.Request("GET", like.url.copy_with(path=path, query=None, params=params),
                                headers=headers)
        response = await self.inner.handle_async_request(request)
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        assert response.status_code == 200, (path, response.status_code, content[:200])
        return content

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path))
        if isinstance(request.stream, httpx.ByteStream):
            self.sent.append((request.method, request.url.path, request.content))
        response = await self.inner.handle_async_request(request)
        if self.rewrite is None:
            return response
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        headers = {k.lower(): v for k, v in response.headers.items()
                   if k.lower() not in ("content-length", "content-encoding",
                                        "transfer-encoding")}
        exchange = Exchange(request, response.status_code, headers, content, self)
        result = self.rewrite(exchange)
        if inspect.isawaitable(result):
            await result
        if exchange.tampered:
            self.tampered.append((request.method, request.url.path))
        return httpx.Response(exchange.status, headers=exchange.headers,
                              content=exchange.content, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def requested(self, method: str, prefix: str) -> bool:
        return any(m == method and p.startswith(prefix) for m, p in self.seen)

    def bodies(self, method: str, prefix: str) -> list[Any]:
        """The JSON bodies the device sent with ``method`` to paths under ``prefix``."""
        return [json.loads(body) for m, p, body in self.sent
                if m == method and p.startswith(prefix) and body]


def chunks(content: bytes) -> list[bytes]:
    """A content ciphertext cut into its stream chunks."""
    return [content[i:i + CHUNK] for i in range(0, len(content), CHUNK)]
