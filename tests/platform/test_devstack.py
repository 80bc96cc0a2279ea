"""The local stack (``make run``, the test stacks): a service that cannot start stops the
others instead of leaving them running, holding their ports."""

from __future__ import annotations

import socket
import subprocess

import pytest

from ecrin_platform.devstack import SERVICES, Stack, free_port
from tests.support.stack import TEST_ENV
from tests.support.users import HTTP

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


class Recording(Stack):
    """A stack that keeps every process it started, even once stopped."""

    started: list[subprocess.Popen[bytes]]

    def start(self, service: str) -> None:
        super().start(service)
        self.__dict__.setdefault("started", []).append(self.processes[service])


def test_a_service_that_cannot_start_stops_the_others(tmp_path):
    ports = {s: free_port() for s in SERVICES}
    with socket.socket() as taken:  # the kms's port, already held by another program
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", ports["kms"]))
        taken.listen()
        stack = Recording(state=tmp_path, ports=ports,
                          metrics_ports={s: free_port() for s in SERVICES},
                          extra_env=TEST_ENV, log_dir=tmp_path / "logs")
        stack.migrate()
        with pytest.raises(RuntimeError, match="kms exited"):
            stack.start_all()
    assert len(stack.started) == len(SERVICES)
    assert stack.processes == {}
    assert [p.poll() is not None for p in stack.started] == [True] * len(SERVICES)


def test_a_test_stack_whose_port_was_taken_starts_again_on_other_ports(tmp_path, monkeypatch):
    """free_port() names a port free at that moment; another program may bind it first.
    The test stacks then start again on other ports (only for that cause)."""
    from tests.support import stack as support

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        first = iter([taken])  # the gateway's port on the first attempt
        real = support.free_port
        monkeypatch.setattr(support, "free_port", lambda: next(first, None) or real())
        stack = support.start_stack("sqlite", tmp_path, "retry")
    try:
        assert taken not in stack.ports.values()
        assert b"address already in use" in (tmp_path / "logs" / "gateway.log").read_bytes()
        assert HTTP.get(stack.url("gateway") + "/readyz").status_code == 200
    finally:
        stack.stop_all()
