"""Asking the sharing service "what may this user do on file F", with a short cache.

records-api and the kms forward the user's own internal token (the sharing service only
answers about the user in it). The cache lives at most ``ttl_s`` seconds, so a revocation
takes effect within that bound (the design allows 5 s; the services default to 0.5 s).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from ecrin_platform.problems import ServiceUnavailable
from ecrin_platform.tokens import HEADER

READ, APPEND = "read", "append"


@dataclass(frozen=True)
class FileAccess:
    file_id: uuid.UUID
    account_id: uuid.UUID
    relationship: str
    scopes: dict[str, str]
    state: str

    def can_read(self, scope: str) -> bool:
        return scope in self.scopes

    def can_append(self, scope: str) -> bool:
        return self.scopes.get(scope) == APPEND


class AccessClient:
    def __init__(self, http: httpx.AsyncClient, sharing_url: str, caller: str,
                 ttl_s: float = 2.0) -> None:
        self.http = http
        self.sharing_url = sharing_url.rstrip("/")
        self.caller = caller
        self.ttl_s = ttl_s
        self._cache: dict[tuple[uuid.UUID, uuid.UUID], tuple[float, FileAccess | None]] = {}

    async def access(self, file_id: uuid.UUID, account_id: uuid.UUID,
                     token: str) -> FileAccess | None:
        key = (file_id, account_id)
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        try:
            response = await self.http.get(
                f"{self.sharing_url}/internal/access/{file_id}/{account_id}",
                headers={HEADER: token, "x-ecrin-caller": self.caller}, timeout=5.0)
        except httpx.HTTPError:
            raise ServiceUnavailable("The sharing service is unavailable; retry shortly.",
                                     headers={"Retry-After": "2"}) from None
        if response.status_code == 404:
            result = None
        elif response.status_code == 200:
            body = response.json()
            result = FileAccess(file_id=file_id, account_id=account_id,
                                relationship=body["relationship"], scopes=body["scopes"],
                                state=body.get("state", "active"))
        else:
            raise ServiceUnavailable("The sharing service failed; retry shortly.",
                                     headers={"Retry-After": "2"})
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (time.monotonic(), result)
        return result

    def forget(self, file_id: uuid.UUID, account_id: uuid.UUID) -> None:
        self._cache.pop((file_id, account_id), None)

    async def get_json(self, path: str, token: str) -> Any:
        """GET an internal route of the sharing service; None when it answers 404."""
        try:
            response = await self.http.get(f"{self.sharing_url}{path}",
                                           headers={HEADER: token, "x-ecrin-caller": self.caller},
                                           timeout=5.0)
        except httpx.HTTPError:
            raise ServiceUnavailable("The sharing service is unavailable; retry shortly.",
                                     headers={"Retry-After": "2"}) from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ServiceUnavailable("The sharing service failed; retry shortly.",
                                     headers={"Retry-After": "2"})
        return response.json()

    async def post(self, path: str, token: str, json: object = None) -> int:
        try:
            response = await self.http.post(f"{self.sharing_url}{path}", json=json,
                                            headers={HEADER: token, "x-ecrin-caller": self.caller},
                                            timeout=5.0)
        except httpx.HTTPError:
            raise ServiceUnavailable("The sharing service is unavailable; retry shortly.",
                                     headers={"Retry-After": "2"}) from None
        return response.status_code
