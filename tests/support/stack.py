"""The four real services as processes on free ports, on SQLite or PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ecrin_platform.devstack import SERVICES, Stack, free_port
from tests.support.databases import available_backends, fresh_database, in_thread

#: Test-only settings: cheap Argon2 (clients use KdfParams.insecure_for_tests()), per-IP
#: and sign-up limits that the whole suite, all from 127.0.0.1, stays under, and a sign-up
#: hold above the test stack's slowest sign-up but short enough for hundreds of them.
TEST_ENV = {
    "ECRIN_GATEWAY_MIN_KDF_OPSLIMIT": "1",
    "ECRIN_GATEWAY_MIN_KDF_MEMLIMIT": "8192",
    "ECRIN_GATEWAY_AUTH_RATE_LIMIT_PER_IP": "100000/minute",
    "ECRIN_GATEWAY_SIGNUP_RATE_LIMIT_PER_IP": "100000/minute",
    "ECRIN_GATEWAY_SIGNUP_RATE_LIMIT_PER_EMAIL": "100000/minute",
    "ECRIN_GATEWAY_SIGNUP_MIN_DURATION_S": "0.1",
    "ECRIN_KDF_PROFILE": "insecure-test",
}


def start_stack(backend_name: str, state: Path, worker: str, **extra_env: str) -> Stack:
    urls: dict[str, str] = {}
    if backend_name == "postgres":
        from tests.support.databases import POSTGRES

        for service in SERVICES:
            urls[service] = fresh_database(POSTGRES,
                                           f"ecrin_e2e_{worker}_{service.replace('-', '_')}",
                                           state)
    clock = {"ECRIN_SHARING_CLOCK_OFFSET_FILE": str(state / "clock-offset")}
    for attempt in range(1, START_ATTEMPTS + 1):
        stack = Stack(state=state, database_urls=urls,
                      ports={s: free_port() for s in SERVICES},
                      metrics_ports={s: free_port() for s in SERVICES},
                      extra_env={**TEST_ENV, **clock, **extra_env},
                      log_dir=state / "logs")
        if attempt == 1:
            in_thread(stack.migrate)
        logged = _log_sizes(stack)
        try:
            stack.start_all()  # stops what it started if a service cannot start
        except RuntimeError:
            if attempt == START_ATTEMPTS or not _port_was_taken(stack, logged):
                raise
            continue
        return stack
    raise AssertionError("unreachable")


#: free_port() names a port free at that moment: another program (an outgoing connection's
#: ephemeral port, another stack) may bind it before the service does. Only then is the
#: stack started again, on other ports.
START_ATTEMPTS = 3


def _log_sizes(stack: Stack) -> dict[str, int]:
    assert stack.log_dir is not None
    return {s: (stack.log_dir / f"{s}.log").stat().st_size
            if (stack.log_dir / f"{s}.log").exists() else 0 for s in SERVICES}


def _port_was_taken(stack: Stack, logged: dict[str, int]) -> bool:
    """A service logged, since ``logged``, that its port was already in use."""
    assert stack.log_dir is not None
    for service, size in logged.items():
        path = stack.log_dir / f"{service}.log"
        if path.exists():
            with path.open("rb") as log:
                log.seek(size)
                if b"address already in use" in log.read():
                    return True
    return False


@pytest.fixture(scope="session", params=[b.name for b in available_backends()])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          worker_id_safe: str) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp(f"stack-{request.param}")
    running = start_stack(request.param, state, worker_id_safe)
    yield running
    running.stop_all()
