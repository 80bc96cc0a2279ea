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
        #: file -> times forgotten: an answer asked before a change is not cached
        self._changes: dict[uuid.UUID, int] = {}

    async def access(self, file_id: uuid.UUID, account_id: uuid.UUID,
                     token: str) -> FileAccess | None:
        key = (file_id, account_id)
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        changes = self._changes.get(file_id, 0)
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
            self._changes.clear()
            self._changes[file_id] = changes + 1  # clearing must not match a stale count
        if self._changes.get(file_id, 0) == changes:
            self._cache[key] = (time.monotonic(), result)
        return result

    async def access_many(self, file_ids: list[uuid.UUID], account_id: uuid.UUID,
                          token: str) -> dict[uuid.UUID, FileAccess]:
        """:meth:`access` for many files: cached answers where fresh, the others in one
        ``POST /internal/access/batch``; files the account may not access are left out."""
        out: dict[uuid.UUID, FileAccess] = {}
        missing: list[uuid.UUID] = []
        for file_id in dict.fromkeys(file_ids):
            hit = self._cache.get((file_id, account_id))
            if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
                if hit[1] is not None:
                    out[file_id] = hit[1]
            else:
                missing.append(file_id)
        if not missing:
            return out
        changes = {f: self._changes.get(f, 0) for f in missing}
        try:
            response = await self.http.post(
                f"{self.sharing_url}/internal/access/batch",
                json={"account_id": str(account_id), "file_ids": [str(f) for f in missing]},
                headers={HEADER: token, "x-ecrin-caller": self.caller}, timeout=5.0)
        except httpx.HTTPError:
            raise ServiceUnavailable("The sharing service is unavailable; retry shortly.",
                                     headers={"Retry-After": "2"}) from None
        if response.status_code != 200:
            raise ServiceUnavailable("The sharing service failed; retry shortly.",
                                     headers={"Retry-After": "2"})
        answered: dict[uuid.UUID, FileAccess] = {}
        asked = set(missing)
        try:
            for body in response.json()["items"]:
                file_id = uuid.UUID(str(body["file_id"]))
                if file_id not in asked or str(body["account_id"]) != str(account_id):
                    raise ValueError("an answer about something not asked")
                answered[file_id] = FileAccess(
                    file_id=file_id, account_id=account_id,
                    relationship=body["relationship"], scopes=body["scopes"],
                    state=body.get("state", "active"))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ServiceUnavailable("The sharing service failed; retry shortly.",
                                     headers={"Retry-After": "2"}) from None
        if len(self._cache) + len(missing) > 10_000:
            self._cache.clear()
            for file_id in missing:  # clearing must not match a stale count
                self._changes[file_id] = changes[file_id] + 1
        now = time.monotonic()
        for file_id in missing:
            if self._changes.get(file_id, 0) == changes[file_id]:
                self._cache[(file_id, account_id)] = (now, answered.get(file_id))
        out.update(answered)
        return out

    def forget(self, file_id: uuid.UUID, account_id: uuid.UUID) -> None:
        self._cache.pop((file_id, account_id), None)

    def forget_file(self, file_id: uuid.UUID) -> None:
        """Every cached answer about the file (the sharing service said a grant ended)."""
        self._changes[file_id] = self._changes.get(file_id, 0) + 1
        for key in [key for key in self._cache if key[0] == file_id]:
            del self._cache[key]

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
