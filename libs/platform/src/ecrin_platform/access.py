"""Who may do what on a patient file: asked of the sharing service, cached for seconds.

The sharing service is the decision point. The records API and the kms forward the internal
token they received (the sharing service only answers about the user in it, and accepts the
token on ``/internal/access`` only) and cache each answer for ``authz_cache_s`` (0.5 s by
default; the design allows 5 s). The sharing service says when a file's access changes
(``POST /internal/access-changed``, :data:`access_changed_router`, and its feed,
``ecrin_platform.access_feed``): the cached answers about it are dropped at once, and the
time to live only bounds how long a lost message leaves a revoked grant working.

While a service follows the feed (``live``: every change committed since the stream's
"ready" reaches it, and its end forgets every answer), an answer that grants access is kept
``authz_cache_live_s`` instead, if longer (the records API: 4 s by default, within the
design's 5 s, since it also gets every change by POST; the kms, whose only channel the
feed is: its short lifetime by default). What is then lost is only a change whose NOTIFY
failed between two sharing replicas, or that came while a stream was dead but not yet
closed, and that is the bound it gets. It is never kept past the end of the grant behind
it, nor past the start of another grant of the account on the file (``valid_for_s``, by
the sharing service's clock). A refusal keeps the short lifetime: a grant that starts
later is not refused for long.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ecrin_platform.access_feed import AccessFeedFollower
from ecrin_platform.problems import ServiceUnavailable
from ecrin_platform.tokens import HEADER

SCOPES = ("clinical", "shared", "administrative")
READ, APPEND = "read", "append"
CALLER_HEADER = "x-ecrin-caller"
#: Key versions are u32 in record headers (docs/protocol.md §6.2).
MAX_KEY_VERSION = 0xFFFFFFFF
TIMEOUT = httpx.Timeout(5.0, connect=2.0)


@dataclass(frozen=True, slots=True)
class FileAccess:
    """What one account may do on one file: ``scopes`` maps scope -> "read" or "append";
    ``state`` is the file's ("pending" until its first keyring is stored: told only to the
    kms); ``key_versions`` maps scope -> the scope key version the kms currently holds (a
    scope missing from it is at version 1); ``pending_rotations``: scopes a member left
    whose rotation is not done yet (told only to members who rotate: owner, care team)."""

    file_id: uuid.UUID
    account_id: uuid.UUID
    relationship: str
    scopes: Mapping[str, str] = field(default_factory=dict)
    state: str = "active"
    key_versions: Mapping[str, int] = field(default_factory=dict)
    pending_rotations: frozenset[str] = frozenset()
    #: Seconds until the grant behind this answer ends, or another grant of the account
    #: on the file starts if sooner, by the sharing service's clock when it answered
    #: (None: neither, or not said): the answer is not kept longer.
    valid_for_s: float | None = None

    def can_read(self, scope: str) -> bool:
        return self.scopes.get(scope) in (READ, APPEND)

    def can_append(self, scope: str) -> bool:
        return self.scopes.get(scope) == APPEND

    def readable_scopes(self) -> list[str]:
        return [s for s in SCOPES if self.can_read(s)]

    def key_version(self, scope: str) -> int:
        """The scope key version new wraps of this scope must use."""
        return self.key_versions.get(scope, 1)


def parse_access(body: Any) -> FileAccess:
    """One access answer of the sharing service (ValueError, KeyError, TypeError or
    AttributeError when malformed). Only the known scopes with a known right are kept."""
    scopes, relationship = body["scopes"], body["relationship"]
    state = body.get("state", "active")
    if not (isinstance(scopes, dict) and isinstance(relationship, str)
            and isinstance(state, str)):
        raise ValueError("a malformed access answer")
    return FileAccess(file_id=uuid.UUID(str(body["file_id"])),
                      account_id=uuid.UUID(str(body["account_id"])),
                      relationship=relationship, state=state,
                      scopes={s: p for s, p in scopes.items()
                              if s in SCOPES and p in (READ, APPEND)},
                      key_versions=parse_key_versions(body.get("key_versions")),
                      pending_rotations=parse_pending(body.get("pending_rotations")),
                      valid_for_s=parse_valid_for(body.get("valid_for_s")))


def parse_valid_for(value: object) -> float | None:
    """``valid_for_s`` of a sharing answer: absent or null is None (no end); a number is
    at least 0; anything else makes the answer malformed (ValueError)."""
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
        raise ValueError("a malformed valid_for_s")  # a string, a bool, NaN
    try:
        return max(0.0, float(value))
    except OverflowError:  # an integer past any float
        raise ValueError("a malformed valid_for_s") from None


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
    """Asks ``GET {sharing}/internal/access/{file_id}/{account_id}`` (and the batch route);
    a small TTL cache, emptied for a file as soon as the sharing service reports a change to
    it (:meth:`forget_file`); the TTL bounds staleness when such a message is lost.

    An answer is cached only if no change to its file was reported while it was asked: each
    file's changes are counted, and the count seen before asking must still hold after."""

    MAX_ENTRIES = 10_000

    def __init__(self, http: httpx.AsyncClient, base_url: str, *, caller: str, ttl_s: float,
                 follow_changes: bool = False, live_ttl_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._caller = caller
        self._ttl = ttl_s
        #: An answer granting access, asked while the feed is live, lives this long (if
        #: longer than ``ttl_s``; module docstring).
        self._live_ttl = live_ttl_s
        self._clock = clock
        self._log = logging.getLogger(f"ecrin.{caller}.authz")
        self._cache: OrderedDict[tuple[uuid.UUID, uuid.UUID],
                                 tuple[float, FileAccess | None]] = OrderedDict()
        #: file -> accounts with a cached answer about it, for ``forget_file``
        self._accounts: dict[uuid.UUID, set[uuid.UUID]] = {}
        #: file -> times it was forgotten: an answer asked before a change is not cached
        self._changes: dict[uuid.UUID, int] = {}
        #: times ``_changes`` was emptied (to bound it): no answer asked before is cached
        self._epoch = 0
        #: ``follow_changes``: told of changes by the sharing service's feed, which this
        #: service follows (``ecrin_platform.access_feed``), rather than by its POSTs.
        self.feed = AccessFeedFollower(http, base_url, caller=caller,
                                       forget_file=self.forget_file,
                                       forget_all=self.forget_all,
                                       clock=clock) if follow_changes else None

    async def access(self, file_id: uuid.UUID, account_id: uuid.UUID, *,
                     token: str, request_id: str | None = None,
                     fresh: bool = False) -> FileAccess | None:
        key = (file_id, account_id)
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now and not fresh:
            return hit[1]
        seen = self._seen(file_id)
        body = await self.ask("GET", f"/internal/access/{file_id}/{account_id}", token,
                              request_id=request_id)
        decision = None if body is None else self._parsed(body)
        if decision is not None and (decision.file_id, decision.account_id) != key:
            self._log.warning("access answer about something not asked")
            raise SharingUnavailable()
        self._remember(key, decision, now, seen)
        return decision

    async def access_many(self, file_ids: list[uuid.UUID], account_id: uuid.UUID, *,
                          token: str, request_id: str | None = None
                          ) -> dict[uuid.UUID, FileAccess]:
        """Cached answers where fresh, the others in one ``POST /internal/access/batch``,
        cached as :meth:`access` caches them; files the account may not access are left
        out."""
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
        seen = {f: self._seen(f) for f in missing}
        body = await self.ask(
            "POST", "/internal/access/batch", token, request_id=request_id,
            json={"account_id": str(account_id), "file_ids": [str(f) for f in missing]})
        answered: dict[uuid.UUID, FileAccess] = {}
        asked = set(missing)
        for item in [] if body is None else self._items(body):
            access = self._parsed(item)
            if access.account_id != account_id or access.file_id not in asked:
                self._log.warning("access answer about something not asked")
                raise SharingUnavailable()
            answered[access.file_id] = access
        for file_id in missing:
            decision = answered.get(file_id)
            if decision is not None:
                out[file_id] = decision
            self._remember((file_id, account_id), decision, now, seen[file_id])
        return out

    def forget_file(self, file_id: uuid.UUID) -> None:
        """Every cached answer about the file (the sharing service said a grant ended or a
        rotation moved on), and any answer about it in flight."""
        self._changed(file_id)
        for account_id in self._accounts.pop(file_id, set()):
            self._cache.pop((file_id, account_id), None)

    def forget_all(self) -> None:
        """Every cached answer, and every answer in flight."""
        self._cache.clear()
        self._accounts.clear()
        self._changes.clear()
        self._epoch += 1

    def forget(self, file_id: uuid.UUID, account_id: uuid.UUID) -> None:
        """The account's cached answer about the file (this service just changed it)."""
        self._changed(file_id)
        self._cache.pop((file_id, account_id), None)
        self._drop_index(file_id, account_id)

    async def send(self, method: str, path: str, token: str, *, request_id: str | None = None,
                   json: object = None) -> httpx.Response:
        """A call to an internal route of the sharing service with the forwarded token;
        SharingUnavailable (503) when it cannot be reached."""
        if self.feed is not None:
            self.feed.follow(token)
        headers = {HEADER: token, CALLER_HEADER: self._caller}
        if request_id:
            headers["x-request-id"] = request_id
        try:
            return await self._http.request(method, f"{self._base}{path}", headers=headers,
                                             json=json, timeout=TIMEOUT)
        except httpx.HTTPError as exc:
            self._log.warning("sharing unreachable", extra={"error": type(exc).__name__})
            raise SharingUnavailable() from None

    async def ask(self, method: str, path: str, token: str, *, request_id: str | None = None,
                  json: object = None) -> Any:
        """:meth:`send`, then the JSON of a 200, None for a 404; any other answer (or a 200
        whose body is not JSON, or is null) is SharingUnavailable."""
        response = await self.send(method, path, token, request_id=request_id, json=json)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            self._log.warning("unexpected answer from sharing",
                              extra={"status": response.status_code})
            raise SharingUnavailable()
        try:
            body = response.json()
        except ValueError:
            body = None
        if body is None:
            self._log.warning("malformed answer from sharing")
            raise SharingUnavailable()
        return body

    def _parsed(self, body: Any) -> FileAccess:
        try:
            return parse_access(body)
        except (ValueError, KeyError, TypeError, AttributeError):
            self._log.warning("malformed answer from sharing")
            raise SharingUnavailable() from None

    def _items(self, body: Any) -> list[Any]:
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            self._log.warning("malformed answer from sharing")
            raise SharingUnavailable()
        return items

    def _seen(self, file_id: uuid.UUID) -> tuple[int, int]:
        return self._epoch, self._changes.get(file_id, 0)

    def _changed(self, file_id: uuid.UUID) -> None:
        self._changes[file_id] = self._changes.get(file_id, 0) + 1
        if len(self._changes) > self.MAX_ENTRIES:
            self._changes.clear()
            self._epoch += 1  # the counts are gone: no answer asked before this is cached

    def lifetime(self, decision: FileAccess | None) -> float:
        """How long an answer asked now may be kept: ``ttl_s``; for one that grants access
        while the feed is live, ``live_ttl_s`` if longer; never past its grant's end."""
        ttl = self._ttl
        if decision is None or ttl <= 0:
            return ttl
        if self.feed is not None and self.feed.live:
            ttl = max(ttl, self._live_ttl)
        if decision.valid_for_s is not None:
            ttl = min(ttl, decision.valid_for_s)
        return ttl

    def _remember(self, key: tuple[uuid.UUID, uuid.UUID], decision: FileAccess | None,
                  asked: float, seen: tuple[int, int]) -> None:
        """Keeps an answer asked at ``asked`` if nothing about its file changed since
        (``seen``). The feed's "ready" and its end both forget everything (a new epoch):
        an answer kept here was asked and answered within one state of the feed, the one
        :meth:`lifetime` reads."""
        file_id, account_id = key
        ttl = self.lifetime(decision)
        if ttl <= 0 or self._seen(file_id) != seen:
            return
        self._cache[key] = (asked + ttl, decision)
        self._cache.move_to_end(key)
        self._accounts.setdefault(file_id, set()).add(account_id)
        while len(self._cache) > self.MAX_ENTRIES:
            (old_file, old_account), _ = self._cache.popitem(last=False)
            self._drop_index(old_file, old_account)

    def _drop_index(self, file_id: uuid.UUID, account_id: uuid.UUID) -> None:
        accounts = self._accounts.get(file_id)
        if accounts is not None:
            accounts.discard(account_id)
            if not accounts:
                del self._accounts[file_id]


def start_access_client(app: Any, caller: str, settings: Any) -> AccessClient:
    """The service's access client (``app.state.access_client``), from its settings
    (``sharing_url``, ``authz_cache_s``, ``authz_cache_live_s``, ``access_feed``): it
    follows the feed when caching is on and the feed is, and the feed's state is the
    ``ecrin_access_feed_following`` gauge. :func:`stop_access_client` ends it."""
    client = AccessClient(
        app.state.http, settings.sharing_url, caller=caller, ttl_s=settings.authz_cache_s,
        follow_changes=settings.access_feed and settings.authz_cache_s > 0,
        live_ttl_s=settings.authz_cache_live_s)
    feed = client.feed
    app.state.metrics.access_feed_following.labels(caller).set_function(
        lambda: float(feed is not None and feed.live))
    app.state.access_client = client
    return client


async def stop_access_client(app: Any) -> None:
    feed = app.state.access_client.feed
    if feed is not None:
        await feed.aclose()


class AccessChanged(BaseModel):
    """Files whose grants, pending rotations or key versions just changed."""

    model_config = ConfigDict(extra="forbid")

    file_ids: list[uuid.UUID] = Field(min_length=1, max_length=1000)


#: Called by the sharing service (with the token it was called with, forwarded: each
#: service's ``create_app`` names who may forward here) when a grant ends or a rotation
#: moves on, so that a revocation is enforced at once instead of when the cached answer runs
#: out. Losing the message costs only that: the cache lives ``authz_cache_s`` at most. The
#: service keeps its client as ``app.state.access_client``.
access_changed_router = APIRouter(prefix="/internal", include_in_schema=False)


@access_changed_router.post("/access-changed", status_code=204)
async def access_changed(body: AccessChanged, request: Request) -> Response:
    decider: AccessDecider = request.app.state.access_client
    for file_id in body.file_ids:
        decider.forget_file(file_id)
    return Response(status_code=204)
