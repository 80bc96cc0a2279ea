"""Rate limits on the authentication routes, per IP and per account.

In memory for one gateway; in Redis when ``redis_url`` is set, so that several gateway
replicas share the counts.
"""

from __future__ import annotations

import math
import time

from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from ecrin_platform.problems import ServiceError


class RateLimited(ServiceError):
    status, slug, title = 429, "rate-limited", "Too many requests"


class AuthRateLimiter:
    def __init__(self, redis_url: str | None, per_ip: str, per_account: str) -> None:
        uri = "async+memory://"
        if redis_url:
            uri = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
        self.storage = storage_from_string(uri)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.per_ip = parse(per_ip)
        self.per_account = parse(per_account)

    async def check(self, route: str, ip: str, account_key: str | None) -> None:
        checks = [(self.per_ip, ("ip", route, ip))]
        if account_key:
            checks.append((self.per_account, ("account", route, account_key)))
        for item, identifiers in checks:
            if not await self.limiter.hit(item, *identifiers):
                stats = await self.limiter.get_window_stats(item, *identifiers)
                retry = max(1, math.ceil(stats.reset_time - time.time()))
                raise RateLimited("Too many attempts; wait before trying again.",
                                  headers={"Retry-After": str(retry)})
