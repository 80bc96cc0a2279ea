"""The gateway's short memory of checked sessions: bounded in time and size, forgettable."""

from __future__ import annotations

import time

from ecrin_platform.tokens import Principal
from gateway.auth.principal import PrincipalCache

ALICE = Principal(account_id="a", role="patient", session_id="s", second_factor=False)


def test_an_entry_lives_for_the_ttl_only():
    cache = PrincipalCache(0.05)
    cache.put("token", ALICE)
    assert cache.get("token") == ALICE
    time.sleep(0.06)
    assert cache.get("token") is None


def test_zero_disables_it():
    cache = PrincipalCache(0)
    cache.put("token", ALICE)
    assert cache.get("token") is None


def test_clear_forgets_everything_and_size_is_bounded():
    cache = PrincipalCache(10)
    cache.put("token", ALICE)
    cache.clear()
    assert cache.get("token") is None
    for i in range(PrincipalCache.MAX_ENTRIES + 5):
        cache.put(f"t{i}", ALICE)
    assert len(cache._entries) <= PrincipalCache.MAX_ENTRIES
