"""Rate-limit counts: in memory for one gateway, shared through Redis by several replicas."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from gateway.auth.ratelimit import AuthRateLimiter, MemoryCounts, RateLimited

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


class TestInMemoryHousekeeping:
    """limits' in-memory storage prunes expired hits after every hit, handing each key to a
    worker thread: a sixth of the gateway's CPU per login (docs/performance.md). Here the
    pass runs at most once per ``PRUNE_EVERY_S``, still on time for the memory."""

    async def test_a_burst_of_hits_runs_no_worker_thread(self, monkeypatch):
        limiter = AuthRateLimiter(None, "1000/minute", "1000/minute")
        await _hits(limiter, "warm", 1)
        await asyncio.sleep(0.05)  # the first pass (at start) has run
        handed: list[object] = []
        real = asyncio.to_thread

        async def counting(func, /, *args, **kwargs):
            handed.append(func)
            return await real(func, *args, **kwargs)

        monkeypatch.setattr(asyncio, "to_thread", counting)
        for i in range(50):
            await _hits(limiter, f"acct-{i}", 2)
        await asyncio.sleep(0.05)
        assert handed == []

    async def test_expired_hits_are_still_pruned(self, monkeypatch):
        monkeypatch.setattr(MemoryCounts, "PRUNE_EVERY_S", 0.2)
        limiter = AuthRateLimiter(None, "1000/second", "1000/second")
        await _hits(limiter, "old", 1)
        storage = limiter.storage
        assert isinstance(storage, MemoryCounts)
        assert any("old" in key for key in storage.events)
        await asyncio.sleep(1.3)  # the hits' one-second window has passed
        await _hits(limiter, "new", 1)  # schedules the next pass
        await asyncio.sleep(0.1)
        assert not any("old" in key for key in storage.events)
        assert any("new" in key for key in storage.events)


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
