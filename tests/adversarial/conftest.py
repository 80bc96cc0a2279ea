"""Fixtures of the adversarial suite: one populated world per test session and stack."""

from __future__ import annotations

import pytest

from tests.adversarial.world import World, build_world


@pytest.fixture(scope="session")
def world(stack) -> World:
    """Two practices and every kind of outsider (tests/adversarial/world.py). Built once:
    the tests that use it only ever try what must be refused, and check it was."""
    return build_world(stack.url("gateway"))
