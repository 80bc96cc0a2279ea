"""Fixtures of the adversarial suite: one populated world per test session and stack."""

from __future__ import annotations

import pytest

from tests.adversarial.world import World, build_world


@pytest.fixture(scope="session")
def world(stack) -> World:
    """Two practices and every kind of outsider (tests/adversarial/world.py). Built once:
    the tests that use it only ever try what must be refused, and check it was."""
    return build_world(stack.url("gateway"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In ``make test`` the adversarial suite runs on one backend only, PostgreSQL when it is
    there (the production store), to stay within its time budget; authorisation, parsing
    and the guards do not depend on the backend. ``make fuzz`` and ``make faults`` choose
    their backend themselves."""
    from tests.support.databases import available_backends

    preferred = available_backends()[-1].name
    here = str(config.rootpath / "tests" / "adversarial")
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("stack") if callspec else None
        if str(item.path).startswith(here) and backend not in (None, preferred):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
