"""The gateway's short memory of checked sessions: bounded in time and size, forgettable."""

from __future__ import annotations

import time

from ecrin_platform.tokens import Principal
from gateway.auth.principal import PrincipalCache

ALICE = Principal(account_id="a", role="patient", session_id="s", second_factor=False)


def test_an_entry_lives_for_the_ttl_only():
    cache = PrincipalCache(0.05)
    cache.put("token", ALICE, cache.generation)
    assert cache.get("token") == ALICE
    time.sleep(0.06)
    assert cache.get("token") is None


def test_zero_disables_it():
    cache = PrincipalCache(0)
    cache.put("token", ALICE, cache.generation)
    assert cache.get("token") is None


def test_clear_forgets_everything_and_size_is_bounded():
    cache = PrincipalCache(10)
    cache.put("token", ALICE, cache.generation)
    cache.clear()
    assert cache.get("token") is None
    for i in range(PrincipalCache.MAX_ENTRIES + 5):
        cache.put(f"t{i}", ALICE, cache.generation)
    assert len(cache._entries) <= PrincipalCache.MAX_ENTRIES


def test_a_check_that_overlapped_a_clear_is_not_kept():
    """A forwarded request read the session, then a logout cleared the cache, then the
    request would have stored what it read: it is dropped."""
    cache = PrincipalCache(10)
    before = cache.generation
    cache.clear()
    cache.put("token", ALICE, before)
    assert cache.get("token") is None
    cache.put("token", ALICE, cache.generation)
    assert cache.get("token") == ALICE


async def test_only_writes_to_the_gateways_own_routes_clear_it(database_url_for,
                                                              internal_keys):
    from tests.support.apps import build_app, running

    app = build_app("gateway", database_url_for("gateway"), internal_keys)
    async with running(app, rollback=False) as client:
        cache: PrincipalCache = app.state.principal_cache
        cache.put("token", ALICE, cache.generation)
        assert (await client.post("/v1/nothere")).status_code == 404
        assert (await client.get("/v1/auth/me")).status_code == 401
        assert cache.get("token") == ALICE  # an anonymous flood cannot keep it empty
        await client.post("/v1/auth/logout")
        assert cache.get("token") is None
