"""HTTP to the gateway: bearer tokens, one automatic refresh on 401, typed errors.

The refresh token rotates on every use and a reused one revokes the whole session, so two
concurrent requests must never both refresh: a lock serialises refreshes, and a request
that waited for it retries with the tokens the other one obtained.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, TypeVar

import httpcore
import httpx
from pydantic import BaseModel, ValidationError

from ecrin_client.errors import (
    EcrinError,
    NotLoggedIn,
    ServerError,
    SessionRevoked,
    Unavailable,
    error_from_response,
    problem_of,
)
from ecrin_client.models import TokenPair
from ecrin_client.profile import StoredTokens

M = TypeVar("M", bound=BaseModel)
#: A request body that can be produced again (an upload is re-sent after a token refresh).
Body = bytes | Callable[[], AsyncIterable[bytes]]

USER_AGENT = "ecrin-client/0.1"

#: Bytes one socket read of a response may return (a download's ciphertext). httpcore asks
#: for 64 KiB, a quarter of what the event loop's transport reads at once (256 KiB): each
#: read was cut in four (a copy of the rest each time) and went four times through h11,
#: httpcore and anyio, about a fifth of the SDK's CPU per downloaded MiB (docs/
#: performance.md). httpcore has no per-client setting for it, only this class constant:
#: raised here, for every httpx client of the process; a larger read changes no behaviour,
#: only how many bytes one read may return (never more than the socket holds).
RESPONSE_READ_BYTES = 256 << 10
if isinstance(getattr(httpcore.AsyncHTTP11Connection, "READ_NUM_BYTES", None), int):
    # (an httpcore without it reads as it does: slower, never wrong)
    httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = max(
        httpcore.AsyncHTTP11Connection.READ_NUM_BYTES, RESPONSE_READ_BYTES)


def parse(model: type[M], response: httpx.Response) -> M:
    try:
        data = response.json()
    except ValueError:
        raise ServerError("the server sent a response that does not follow the API") from None
    return validated(model, data)


def validated(model: type[M], data: Any) -> M:
    """``data`` (part of a server's answer, already decoded) as ``model``."""
    try:
        return model.model_validate(data)
    except (ValueError, ValidationError):
        raise ServerError("the server sent a response that does not follow the API") from None


def _tls_verification(server_url: str) -> ssl.SSLContext | bool:
    """httpx's default (certificates checked against its CA bundle) for an ``https://``
    gateway. A plain ``http://`` one (a stack on this machine) makes no TLS connection and
    redirects are not followed: a context with no CA at all, which would refuse any
    certificate, spares loading the bundle (70 ms of every command's start)."""
    if not server_url.lower().startswith("http://"):
        return True
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, hostnames checked


class GatewayTransport:
    """One ``httpx.AsyncClient`` to the gateway and the tokens of the current session."""

    def __init__(self, server_url: str, *, tokens: StoredTokens | None,
                 on_tokens: Callable[[StoredTokens | None], None],
                 transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 30.0) -> None:
        self.server_url = server_url.rstrip("/")
        self.tokens = tokens
        self._on_tokens = on_tokens
        self._refresh_lock = asyncio.Lock()
        self._http = httpx.AsyncClient(base_url=self.server_url, transport=transport,
                                       timeout=timeout, headers={"user-agent": USER_AGENT},
                                       verify=_tls_verification(self.server_url))

    async def aclose(self) -> None:
        await self._http.aclose()

    def set_tokens(self, tokens: StoredTokens | None) -> None:
        self.tokens = tokens
        self._on_tokens(tokens)

    def adopt(self, pair: TokenPair) -> StoredTokens:
        tokens = StoredTokens(access_token=pair.access_token, refresh_token=pair.refresh_token,
                              session_id=pair.session_id)
        self.set_tokens(tokens)
        return tokens

    async def _send(self, method: str, path: str, *, json: Any = None,
                    headers: dict[str, str] | None = None, token: str | None = None,
                    content: Body | None = None, params: Any = None, stream: bool = False
                    ) -> httpx.Response:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["authorization"] = f"Bearer {token}"
        body = content() if callable(content) else content
        try:
            request = self._http.build_request(method, path, json=json, headers=all_headers,
                                               content=body, params=params)
            return await self._http.send(request, stream=stream)
        except httpx.TimeoutException:
            raise Unavailable(f"the server at {self.server_url} did not answer in time") from None
        except httpx.TransportError:
            raise Unavailable(f"cannot reach the server at {self.server_url}") from None

    async def _authorised(self, method: str, path: str, *, auth: bool, stream: bool = False,
                          **kwargs: Any) -> httpx.Response:
        token: str | None = None
        if auth:
            if self.tokens is None:
                raise NotLoggedIn()
            token = self.tokens.access_token
        response = await self._send(method, path, token=token, stream=stream, **kwargs)
        if auth and response.status_code == 401:
            if stream:
                await response.aread()
            if self._worth_refreshing(response):
                await response.aclose()
                token = await self._refreshed(after=token)
                response = await self._send(method, path, token=token, stream=stream, **kwargs)
        return response

    async def request(self, method: str, path: str, *, json: Any = None,
                      headers: dict[str, str] | None = None, auth: bool = True,
                      ok: tuple[int, ...] = (200,), content: Body | None = None,
                      params: Any = None) -> httpx.Response:
        """Send, refreshing once on 401 when authenticated; raise the typed error otherwise.

        ``content`` is raw bytes, or a function returning a fresh async iterable of bytes
        (a streamed upload, sent again from the start if the token had to be refreshed).
        """
        response = await self._authorised(method, path, auth=auth, json=json, headers=headers,
                                           content=content, params=params)
        if response.status_code not in ok:
            raise error_from_response(response)
        return response

    @contextlib.asynccontextmanager
    async def stream(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                     ok: tuple[int, ...] = (200,)) -> AsyncIterator[httpx.Response]:
        """A response whose body is read as it arrives (``aiter_bytes``): downloads."""
        response = await self._authorised(method, path, auth=True, headers=headers, stream=True)
        try:
            if response.status_code not in ok:
                await response.aread()
                raise error_from_response(response)
            yield response
        finally:
            await response.aclose()

    @staticmethod
    def _worth_refreshing(response: httpx.Response) -> bool:
        slug, _ = problem_of(response)
        return slug not in ("second-factor-required", "invalid-credentials")

    async def _refreshed(self, *, after: str | None) -> str:
        async with self._refresh_lock:
            if self.tokens is None:
                raise NotLoggedIn()
            if self.tokens.access_token != after:
                return self.tokens.access_token  # another request refreshed meanwhile
            response = await self._send("POST", "/v1/auth/refresh",
                                        json={"refresh_token": self.tokens.refresh_token})
            if response.status_code != 200:
                error = error_from_response(response)
                if response.status_code in (400, 401, 403):
                    self.set_tokens(None)
                    raise SessionRevoked() from error
                raise error
            return self.adopt(parse(TokenPair, response)).access_token


__all__ = ["EcrinError", "GatewayTransport", "parse"]
