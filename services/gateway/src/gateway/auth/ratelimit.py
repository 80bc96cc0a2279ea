"""Rate limits on the authentication routes, per client address and per account.

In memory for one gateway; in Redis when ``redis_url`` is set, so that several gateway
replicas share the counts. Limits fail closed: with Redis unreachable, a limited route
answers 503 with ``Retry-After`` (docs/deploy.md says why).

Each check reports its state in the IETF draft headers (draft-ietf-httpapi-ratelimit-headers)
``RateLimit-Policy`` and ``RateLimit``, on success and on 429, besides ``Retry-After``.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import redis
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ecrin_platform.problems import ServiceError

log = logging.getLogger("ecrin.gateway.ratelimit")
#: What any counts' storage raises when it cannot answer besides its driver's own errors
#: (``Storage.base_exceptions``): a timeout, a name that does not resolve. Anything else
#: is a bug and stays a 500.
STORAGE_FAILURES: tuple[type[BaseException], ...] = (StorageError, OSError, TimeoutError)

#: Seconds a client is told to wait when the limit store is unreachable.
UNAVAILABLE_RETRY_S = 5


class RateLimited(ServiceError):
    status, slug, title = 429, "rate-limited", "Too many requests"


class RateLimitUnavailable(ServiceError):
    status, slug, title = 503, "rate-limit-unavailable", "Rate limiting unavailable"


@dataclass(frozen=True)
class Policy:
    """Limits of one route: per client address and per account key (if any)."""

    per_ip: RateLimitItem
    per_account: RateLimitItem


@dataclass(frozen=True)
class _Outcome:
    name: str
    item: RateLimitItem
    remaining: int
    reset_s: int


def _headers(outcomes: list[_Outcome]) -> dict[str, str]:
    """``RateLimit-Policy`` and ``RateLimit`` as structured-field lists (draft -08 and on)."""
    policy = ", ".join(f'"{o.name}";q={o.item.amount};w={o.item.get_expiry()}'
                       for o in outcomes)
    state = ", ".join(f'"{o.name}";r={o.remaining};t={o.reset_s}' for o in outcomes)
    return {"RateLimit-Policy": policy, "RateLimit": state}


class MemoryCounts(MemoryStorage):
    """limits' in-memory counts, pruning expired hits at most once per ``PRUNE_EVERY_S``.

    The library schedules a pruning pass after every hit, and each pass hands every key to
    a worker thread (``asyncio.to_thread``): a sixth of the gateway's CPU per login, in
    thread hand-offs (docs/performance.md). The moving window itself compares the hits'
    timestamps, so pruning only bounds the memory, and once a second does that. (The
    library calls the hook by its private name; ``tests/gateway/test_rate_limit_storage``
    fails if a new version stops doing so.)"""

    PRUNE_EVERY_S = 1.0

    def __init__(self) -> None:
        super().__init__("async+memory://")
        self._pruned_at = -math.inf

    async def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at >= self.PRUNE_EVERY_S:
            self._pruned_at = now
            await super()._MemoryStorage__schedule_expiry()  # type: ignore[misc]  # the parent's private hook; tested against upgrades


class AuthRateLimiter:
    def __init__(self, redis_url: str | None, per_ip: str, per_account: str,
                 routes: dict[str, tuple[str, str]] | None = None,
                 redis_timeout_s: float = 1.0) -> None:
        if redis_url:
            uri = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
            # redis-py, not the default coredis: under load coredis could hand its script
            # reload a closed connection, swallow that and answer NOSCRIPT (a 503 on a
            # healthy Redis). A pooled connection the server closed (a restart, a
            # failover) is opened again once; a timeout is not retried: a request waits at
            # most ``redis_timeout_s`` per attempt for Redis. Counting a hit twice when
            # the connection died after Redis applied it errs on the safe side.
            client: dict[str, Any] = {  # passed on to redis-py, typed narrower by limits
                "socket_connect_timeout": redis_timeout_s, "socket_timeout": redis_timeout_s,
                "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))}
            self.storage = storage_from_string(uri, implementation="redispy", **client)
        else:
            self.storage = MemoryCounts()
        base = self.storage.base_exceptions
        self.failures: tuple[type[BaseException], ...] = (
            *(base if isinstance(base, tuple) else (base,)), *STORAGE_FAILURES)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.default = Policy(parse(per_ip), parse(per_account))
        self.routes = {route: Policy(parse(ip), parse(account))
                       for route, (ip, account) in (routes or {}).items()}

    def policy(self, route: str) -> Policy:
        return self.routes.get(route, self.default)

    async def check(self, route: str, ip: str, account_key: str | None) -> dict[str, str]:
        """Counts one hit; returns the ``RateLimit*`` headers, or raises 429 (or 503)."""
        policy = self.policy(route)
        checks = [("ip", policy.per_ip, ("ip", route, ip))]
        if account_key:
            checks.append(("account", policy.per_account, ("account", route, account_key)))
        outcomes: list[_Outcome] = []
        limited: _Outcome | None = None
        try:
            for name, item, identifiers in checks:
                allowed = await self.limiter.hit(item, *identifiers)
                stats = await self.limiter.get_window_stats(item, *identifiers)
                reset = max(1, math.ceil(stats.reset_time - time.time()))
                outcome = _Outcome(name, item, stats.remaining, reset)
                outcomes.append(outcome)
                if not allowed:
                    limited = outcome
                    break
        except self.failures as exc:
            log.warning("rate-limit storage unreachable: %s", type(exc).__name__)
            raise RateLimitUnavailable(
                "Rate limiting is unavailable; try again shortly.",
                headers={"Retry-After": str(UNAVAILABLE_RETRY_S)}) from None
        headers = _headers(outcomes)
        if limited is not None:
            raise RateLimited("Too many attempts; wait before trying again.",
                              headers={**headers, "Retry-After": str(limited.reset_s)})
        return headers

    async def reachable(self) -> bool:
        """For ``/readyz``: can the counts be read and written?"""
        try:
            answer = self.storage.check()  # typed sync-or-async by the limits package
            return bool(await answer if inspect.isawaitable(answer) else answer)
        except self.failures:
            return False
