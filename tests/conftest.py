"""Fixtures shared by every test: keys, databases per backend and per worker, apps."""

from __future__ import annotations

import hashlib
import os

import pytest

from ecrin_platform.tokens import InternalTokenIssuer, generate_keypair_pem
from tests.support.databases import (
    Backend,
    available_backends,
    drop_created_databases,
    in_thread,
    provision_database,
)

pytest_plugins = ["tests.support.apps", "tests.support.stack"]

#: The SDK in this process derives keys with the test stacks' cheap Argon2id, as the CLI
#: runs and the stacks' own settings do (tests.support.stack.TEST_ENV): MODERATE costs
#: 1.3 s per derivation on a CI machine, two or three per account a test signs up. Tests
#: of the profiles themselves set it (monkeypatch) and get it back afterwards.
os.environ.setdefault("ECRIN_KDF_PROFILE", "insecure-test")


@pytest.fixture(scope="session")
def internal_keys() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of the internal-token key for this test session."""
    return generate_keypair_pem()


@pytest.fixture(scope="session")
def issuer(internal_keys: tuple[bytes, bytes]) -> InternalTokenIssuer:
    return InternalTokenIssuer(internal_keys[0])


@pytest.fixture(scope="session")
def worker_id_safe(request: pytest.FixtureRequest) -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(params=available_backends(), ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param.name == "postgres":
        request.applymarker(pytest.mark.postgres)
    return request.param


@pytest.fixture(scope="session")
def database_cache() -> dict[tuple[str, str], str]:
    return {}


@pytest.fixture
def database_url_for(backend: Backend, tmp_path_factory: pytest.TempPathFactory,
                     worker_id_safe: str, database_cache: dict[tuple[str, str], str]):
    """Returns a function giving the migrated database URL of a service on this backend."""

    def get(service: str) -> str:
        key = (backend.name, service)
        if key not in database_cache:
            # Alembic runs its own event loop: give it a thread of its own.
            database_cache[key] = in_thread(provision_database, backend, service,
                                            worker_id_safe, tmp_path_factory.getbasetemp())
        return database_cache[key]

    return get


#: The end-to-end modules share a running stack per worker (``tests.support.stack``): they
#: are spread over this many xdist groups, so that several workers run them at once, each
#: with a stack of its own (ECRIN_TEST_E2E_GROUPS=1 puts them all on one worker).
E2E_GROUPS = max(1, int(os.environ.get("ECRIN_TEST_E2E_GROUPS", "2")))


def _shares_a_module_fixture(item: pytest.Item) -> bool:
    """The test uses a module-scoped fixture (a stack over TLS, a web build, a Redis
    server): spread over the workers, each would set it up again."""
    info = getattr(item, "_fixtureinfo", None)
    return info is not None and any(
        d.scope == "module" for defs in info.name2fixturedefs.values() for d in defs)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Before xdist reads the groups: "e2e" becomes "e2e-<k>", k fixed per module."""
    for item in items:
        marker = item.get_closest_marker("xdist_group")
        if marker is None and _shares_a_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
        if marker is None or marker.args[:1] != ("e2e",):
            continue
        module = item.nodeid.split("::", 1)[0]
        k = int(hashlib.blake2b(module.encode(), digest_size=4).hexdigest(), 16) % E2E_GROUPS
        item.add_marker(pytest.mark.xdist_group(f"e2e-{k}"), append=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    drop_created_databases()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Says how many tests ran against the real PostgreSQL, so a run that silently fell
    back to SQLite only is visible in the output."""
    counts = {outcome: sum(1 for r in terminalreporter.stats.get(outcome, [])
                           if "postgres" in getattr(r, "nodeid", ""))
              for outcome in ("passed", "failed", "error", "skipped")}
    terminalreporter.write_line(
        "PostgreSQL tests: {passed} passed, {failed} failed, {error} errors, "
        "{skipped} skipped".format(**counts))
