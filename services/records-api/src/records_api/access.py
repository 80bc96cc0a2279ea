"""Who may do what on a patient file: asked of the sharing service, cached for seconds.

The sharing service is the decision point. The records API forwards the internal token it
received (audience records-api; sharing accepts it on ``/internal/access`` only) so that
sharing can see the gateway vouched for this user, and caches each answer for
``authz_cache_s`` (default 2 s): a revoked grant stops ciphertext reads within 5 s.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Protocol

import httpx
from fastapi import Depends, Request

from ecrin_platform.problems import ServiceUnavailable
from ecrin_platform.tokens import HEADER

log = logging.getLogger("ecrin.records-api.authz")

SCOPES = ("clinical", "shared", "administrative")
CALLER_HEADER = "x-ecrin-caller"
CALLER = "records-api"


#: Key versions are u32 in record headers (docs/protocol.md §6.2).
MAX_KEY_VERSION = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class FileAccess:
    """What one account may do on one file: ``scopes`` maps scope -> "read" or "append";
    ``key_versions`` maps scope -> the scope key version the kms currently holds (a scope
    missing from it is at version 1)."""

    file_id: uuid.UUID
    account_id: uuid.UUID
    relationship: str
    scopes: Mapping[str, str] = field(default_factory=dict)
    key_versions: Mapping[str, int] = field(default_factory=dict)

    def can_read(self, scope: str) -> bool:
        return self.scopes.get(scope) in ("read", "append")

    def can_append(self, scope: str) -> bool:
        return self.scopes.get(scope) == "append"

    def readable_scopes(self) -> list[str]:
        return [s for s in SCOPES if self.can_read(s)]

    def key_version(self, scope: str) -> int:
        """The scope key version new wraps of this scope must use."""
        return self.key_versions.get(scope, 1)


def parse_key_versions(value: object) -> dict[str, int]:
    """``key_versions`` of a sharing answer: absent or not an object is ``{}``; an entry
    that is not a known scope mapped to a u32 >= 1 is left out (that scope is then at
    version 1, the most a re-key can be held to without an answer)."""
    if not isinstance(value, dict):
        return {}
    return {scope: version for scope, version in value.items()
            if scope in SCOPES and type(version) is int and 1 <= version <= MAX_KEY_VERSION}


class SharingUnavailable(ServiceUnavailable):
    slug, title = "authorisation-unavailable", "Authorisation service unavailable"

    def __init__(self) -> None:
        super().__init__("The authorisation service is unreachable; retry shortly.",
                         headers={"Retry-After": "2"})


class AccessDecider(Protocol):
    async def access(self, file_id: uuid.UUID, account_id: uuid.UUID, *,
                     token: str, request_id: str | None = None,
                     fresh: bool = False) -> FileAccess | None:
        """The account's access to the file, or None when it has none (or no such file).
        ``fresh`` asks past any cache (a re-key naming a key version newer than the
        cached answer knows: the rotation may have just been stored)."""


class AccessClient:
    """Asks ``GET {sharing}/internal/access/{file_id}/{account_id}``; a small TTL cache."""

    MAX_ENTRIES = 10_000

    def __init__(self, http: httpx.AsyncClient, base_url: str, *, ttl_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._ttl = ttl_s
        self._clock = clock
        self._cache: OrderedDict[tuple[uuid.UUID, uuid.UUID],
                                 tuple[float, FileAccess | None]] = OrderedDict()

    async def access(self, file_id: uuid.UUID, account_id: uuid.UUID, *,
                     token: str, request_id: str | None = None,
                     fresh: bool = False) -> FileAccess | None:
        key = (file_id, account_id)
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now and not fresh:
            return hit[1]
        decision = await self._ask(file_id, account_id, token, request_id)
        if self._ttl > 0:
            self._cache[key] = (now + self._ttl, decision)
            self._cache.move_to_end(key)
            while len(self._cache) > self.MAX_ENTRIES:
                self._cache.popitem(last=False)
        return decision

    async def _ask(self, file_id: uuid.UUID, account_id: uuid.UUID, token: str,
                   request_id: str | None) -> FileAccess | None:
        headers = {HEADER: token, CALLER_HEADER: CALLER}
        if request_id:
            headers["x-request-id"] = request_id
        try:
            response = await self._http.get(
                f"{self._base}/internal/access/{file_id}/{account_id}", headers=headers,
                timeout=httpx.Timeout(5.0, connect=2.0))
        except httpx.HTTPError as exc:
            log.warning("sharing unreachable", extra={"error": type(exc).__name__})
            raise SharingUnavailable() from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            log.warning("unexpected answer from sharing", extra={"status": response.status_code})
            raise SharingUnavailable()
        try:
            body = response.json()
            scopes = {s: p for s, p in dict(body.get("scopes") or {}).items()
                      if s in SCOPES and p in ("read", "append")}
            access = FileAccess(file_id=uuid.UUID(str(body["file_id"])),
                                account_id=uuid.UUID(str(body["account_id"])),
                                relationship=str(body["relationship"]), scopes=scopes,
                                key_versions=parse_key_versions(body.get("key_versions")))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("malformed answer from sharing")
            raise SharingUnavailable() from None
        if (access.file_id, access.account_id) != (file_id, account_id):
            raise SharingUnavailable()
        return access


async def get_access_decider(request: Request) -> AccessDecider:
    """Tests override this dependency with a fake decider."""
    decider: AccessDecider = request.app.state.access_client
    return decider


AccessDeciderDep = Annotated[AccessDecider, Depends(get_access_decider)]
