"""HTTP to the gateway: bearer tokens, one automatic refresh on 401, typed errors.

The refresh token rotates on every use and a reused one revokes the whole session, so two
concurrent requests must never both refresh: a lock serialises refreshes, and a request
that waited for it retries with the tokens the other one obtained.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

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

USER_AGENT = "ecrin-client/0.1"


def parse(model: type[M], response: httpx.Response) -> M:
    try:
        return model.model_validate(response.json())
    except (ValueError, ValidationError):
        raise ServerError("the server sent a response that does not follow the API") from None


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
                                       timeout=timeout, headers={"user-agent": USER_AGENT})

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
                    headers: dict[str, str] | None = None, token: str | None = None
                    ) -> httpx.Response:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["authorization"] = f"Bearer {token}"
        try:
            return await self._http.request(method, path, json=json, headers=all_headers)
        except httpx.TimeoutException:
            raise Unavailable(f"the server at {self.server_url} did not answer in time") from None
        except httpx.TransportError:
            raise Unavailable(f"cannot reach the server at {self.server_url}") from None

    async def request(self, method: str, path: str, *, json: Any = None,
                      headers: dict[str, str] | None = None, auth: bool = True,
                      ok: tuple[int, ...] = (200,)) -> httpx.Response:
        """Send, refreshing once on 401 when authenticated; raise the typed error otherwise."""
        token: str | None = None
        if auth:
            if self.tokens is None:
                raise NotLoggedIn()
            token = self.tokens.access_token
        response = await self._send(method, path, json=json, headers=headers, token=token)
        if auth and response.status_code == 401 and self._worth_refreshing(response):
            token = await self._refreshed(after=token)
            response = await self._send(method, path, json=json, headers=headers, token=token)
        if response.status_code not in ok:
            raise error_from_response(response)
        return response

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
