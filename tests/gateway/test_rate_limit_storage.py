"""Rate-limit counts: in memory for one gateway, shared through Redis by several replicas."""

from __future__ import annotations

import os
import uuid

import pytest

from gateway.auth.ratelimit import AuthRateLimiter, RateLimited

REDIS_URL = os.environ.get("ECRIN_TEST_REDIS_URL", "")


async def _hits(limiter: AuthRateLimiter, account: str, n: int) -> list[bool]:
    results = []
    for _ in range(n):
        try:
            await limiter.check("login", "203.0.113.7", account)
            results.append(True)
        except RateLimited as exc:
            assert int(exc.headers["Retry-After"]) >= 1
            results.append(False)
    return results


class TestInMemory:
    async def test_per_account_limit(self):
        limiter = AuthRateLimiter(None, "1000/minute", "3/minute")
        assert await _hits(limiter, "a", 5) == [True, True, True, False, False]
        assert await _hits(limiter, "b", 1) == [True]

    async def test_per_ip_limit(self):
        limiter = AuthRateLimiter(None, "2/minute", "1000/minute")
        assert await _hits(limiter, str(uuid.uuid4()), 1) + \
            await _hits(limiter, str(uuid.uuid4()), 2) == [True, True, False]


@pytest.mark.skipif(not REDIS_URL, reason="ECRIN_TEST_REDIS_URL is not set (CI sets it)")
class TestRedisSharedByReplicas:
    async def test_two_gateways_share_one_count(self):
        account = f"acct-{uuid.uuid4()}"
        first = AuthRateLimiter(REDIS_URL, "1000/minute", "4/minute")
        second = AuthRateLimiter(REDIS_URL, "1000/minute", "4/minute")
        results = []
        for limiter in (first, second, first, second, first, second):
            results += await _hits(limiter, account, 1)
        assert results == [True, True, True, True, False, False]
