"""Who may do what on a patient file: asked of the sharing service, cached for seconds.

The sharing service is the decision point. The records API forwards the internal token it
received (audience records-api; sharing accepts it on ``/internal/access`` only) so that
sharing can see the gateway vouched for this user, and caches each answer for
``authz_cache_s`` (default 0.5 s). The sharing service says when a file's access changes
(``POST /internal/access-changed``, below): its cached answers are dropped at once, and the
time to live only bounds how long a lost message leaves a revoked grant working.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import httpx
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

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
    missing from it is at version 1); ``pending_rotations``: scopes a member left whose
    rotation is not done yet (told only to members who rotate: owner, care team)."""

    file_id: uuid.UUID
    account_id: uuid.UUID
    relationship: str
    scopes: Mapping[str, str] = field(default_factory=dict)
    key_versions: Mapping[str, int] = field(default_factory=dict)
    pending_rotations: frozenset[str] = frozenset()

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


def parse_pending(value: object) -> frozenset[str]:
    """``pending_rotations`` of a sharing answer: the known scopes it lists."""
    if not isinstance(value, list):
        return frozenset()
    return frozenset(scope for scope in value if scope in SCOPES)


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

    def forget_file(self, file_id: uuid.UUID) -> None:
        """Drop every cached answer about the file (the sharing service said a grant ended
        or a rotation moved on): the next request asks again."""

    async def access_many(self, file_ids: list[uuid.UUID], account_id: uuid.UUID, *,
                          token: str, request_id: str | None = None
                          ) -> dict[uuid.UUID, FileAccess]:
        """The account's access to each of the files it may access (one question for the
        files not cached): what :meth:`access` answers for each, in one call."""


class AccessClient:
    """Asks ``GET {sharing}/internal/access/{file_id}/{account_id}``; a small TTL cache,
    emptied for a file as soon as the sharing service reports a change to it
    (:meth:`forget_file`); the TTL bounds staleness when such a message is lost."""

    MAX_ENTRIES = 10_000

    def __init__(self, http: httpx.AsyncClient, base_url: str, *, ttl_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._ttl = ttl_s
        self._clock = clock
        self._cache: OrderedDict[tuple[uuid.UUID, uuid.UUID],
                                 tuple[float, FileAccess | None]] = OrderedDict()
        #: file -> accounts with a cached answer about it, for ``forget_file``
        self._accounts: dict[uuid.UUID, set[uuid.UUID]] = {}
        #: file -> times it was forgotten: an answer asked before a change is not cached
        self._changes: dict[uuid.UUID, int] = {}

    async def access(self, file_id: uuid.UUID, account_id: uuid.UUID, *,
                     token: str, request_id: str | None = None,
                     fresh: bool = False) -> FileAccess | None:
        key = (file_id, account_id)
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now and not fresh:
            return hit[1]
        changes = self._changes.get(file_id, 0)
        decision = await self._ask(file_id, account_id, token, request_id)
        if self._ttl > 0 and self._changes.get(file_id, 0) == changes:
            self._cache[key] = (now + self._ttl, decision)
            self._cache.move_to_end(key)
            self._accounts.setdefault(file_id, set()).add(account_id)
            while len(self._cache) > self.MAX_ENTRIES:
                (old_file, old_account), _ = self._cache.popitem(last=False)
                self._drop_index(old_file, old_account)
        return decision

    async def access_many(self, file_ids: list[uuid.UUID], account_id: uuid.UUID, *,
                          token: str, request_id: str | None = None
                          ) -> dict[uuid.UUID, FileAccess]:
        """Cached answers where fresh, the others in one ``POST /internal/access/batch``
        (``records_api.records.batch``), cached as :meth:`access` caches them."""
        now = self._clock()
        out: dict[uuid.UUID, FileAccess] = {}
        missing: list[uuid.UUID] = []
        for file_id in dict.fromkeys(file_ids):
            hit = self._cache.get((file_id, account_id))
            if hit is not None and hit[0] > now:
                if hit[1] is not None:
                    out[file_id] = hit[1]
            else:
                missing.append(file_id)
        if not missing:
            return out
        changes = {f: self._changes.get(f, 0) for f in missing}
        answered = await self._ask_many(missing, account_id, token, request_id)
        for file_id in missing:
            decision = answered.get(file_id)
            if decision is not None:
                out[file_id] = decision
            if self._ttl > 0 and self._changes.get(file_id, 0) == changes[file_id]:
                key = (file_id, account_id)
                self._cache[key] = (now + self._ttl, decision)
                self._cache.move_to_end(key)
                self._accounts.setdefault(file_id, set()).add(account_id)
        while len(self._cache) > self.MAX_ENTRIES:
            (old_file, old_account), _ = self._cache.popitem(last=False)
            self._drop_index(old_file, old_account)
        return out

    def forget_file(self, file_id: uuid.UUID) -> None:
        self._changes[file_id] = self._changes.get(file_id, 0) + 1
        if len(self._changes) > self.MAX_ENTRIES:
            self._changes.clear()  # only guards answers in flight: losing it costs nothing
            self._changes[file_id] = 1  # but the counter for this file must move
        for account_id in self._accounts.pop(file_id, set()):
            self._cache.pop((file_id, account_id), None)

    def _drop_index(self, file_id: uuid.UUID, account_id: uuid.UUID) -> None:
        accounts = self._accounts.get(file_id)
        if accounts is not None:
            accounts.discard(account_id)
            if not accounts:
                del self._accounts[file_id]

    async def _ask_many(self, file_ids: list[uuid.UUID], account_id: uuid.UUID, token: str,
                        request_id: str | None) -> dict[uuid.UUID, FileAccess]:
        headers = {HEADER: token, CALLER_HEADER: CALLER}
        if request_id:
            headers["x-request-id"] = request_id
        try:
            response = await self._http.post(
                f"{self._base}/internal/access/batch", headers=headers,
                json={"account_id": str(account_id), "file_ids": [str(f) for f in file_ids]},
                timeout=httpx.Timeout(5.0, connect=2.0))
        except httpx.HTTPError as exc:
            log.warning("sharing unreachable", extra={"error": type(exc).__name__})
            raise SharingUnavailable() from None
        if response.status_code == 404:
            return {}
        if response.status_code != 200:
            log.warning("unexpected answer from sharing", extra={"status": response.status_code})
            raise SharingUnavailable()
        out: dict[uuid.UUID, FileAccess] = {}
        asked = set(file_ids)
        try:
            for item in response.json()["items"]:
                access = _parse_access(item)
                if access.account_id != account_id or access.file_id not in asked:
                    raise ValueError("an answer about something not asked")
                out[access.file_id] = access
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("malformed answer from sharing")
            raise SharingUnavailable() from None
        return out

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
            access = _parse_access(response.json())
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("malformed answer from sharing")
            raise SharingUnavailable() from None
        if (access.file_id, access.account_id) != (file_id, account_id):
            raise SharingUnavailable()
        return access


def _parse_access(body: Any) -> FileAccess:
    """One access answer of the sharing service (ValueError, KeyError... if malformed)."""
    scopes = {s: p for s, p in dict(body.get("scopes") or {}).items()
              if s in SCOPES and p in ("read", "append")}
    return FileAccess(file_id=uuid.UUID(str(body["file_id"])),
                      account_id=uuid.UUID(str(body["account_id"])),
                      relationship=str(body["relationship"]), scopes=scopes,
                      key_versions=parse_key_versions(body.get("key_versions")),
                      pending_rotations=parse_pending(body.get("pending_rotations")))


async def get_access_decider(request: Request) -> AccessDecider:
    """Tests override this dependency with a fake decider."""
    decider: AccessDecider = request.app.state.access_client
    return decider


AccessDeciderDep = Annotated[AccessDecider, Depends(get_access_decider)]


class AccessChanged(BaseModel):
    """Files whose grants, pending rotations or key versions just changed."""

    model_config = ConfigDict(extra="forbid")

    file_ids: list[uuid.UUID] = Field(min_length=1, max_length=1000)


#: Called by the sharing service (with the token it was called with, forwarded: see
#: ``create_app``) when a grant ends or a rotation moves on, so that a revocation is
#: enforced here at once instead of when the cached answer runs out. Losing the message
#: costs only that: the cache lives ``authz_cache_s`` at most.
internal = APIRouter(prefix="/internal", include_in_schema=False)


@internal.post("/access-changed", status_code=204)
async def access_changed(body: AccessChanged, request: Request) -> Response:
    decider: AccessDecider = request.app.state.access_client
    for file_id in body.file_ids:
        decider.forget_file(file_id)
    return Response(status_code=204)
