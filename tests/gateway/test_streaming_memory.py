"""The gateway relays a 100 MiB body each way with flat memory (at most +32 MiB RSS)."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from ecrin_platform.devstack import Stack, free_port
from tests.support.memory import PeakRss

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

SIZE = 100 << 20
BUDGET = 32 << 20


@pytest.fixture(scope="module")
def gateway_over_sink(tmp_path_factory):
    sink_port = free_port()
    sink = subprocess.Popen([sys.executable, "-m", "tests.support.sink", str(sink_port)])
    stack = Stack(state=tmp_path_factory.mktemp("sink-stack"),
                  ports={"gateway": free_port(), "records-api": sink_port,
                         "kms": free_port(), "sharing": free_port()})
    stack.migrate()
    stack.start("gateway")
    stack.wait_ready(services=["gateway"])
    # Warm up the code paths so that imports and first allocations are not counted.
    content = stack.url("gateway") + "/v1/records/r1/versions/1/content"
    httpx.post(content, content=b"x" * (1 << 20))
    httpx.get(content, headers={"x-size": str(1 << 20)})
    yield stack
    stack.stop_all()
    sink.terminate()
    sink.wait()


def _chunks():
    block = b"\xab" * (1 << 20)
    for _ in range(SIZE // len(block)):
        yield block


class TestStreamingThroughGateway:
    def test_upload_100_mib_with_flat_memory(self, gateway_over_sink):
        stack = gateway_over_sink
        with PeakRss(stack.processes["gateway"].pid) as rss:
            response = httpx.post(stack.url("gateway") + "/v1/records/r1/versions/1/content",
                                  content=_chunks(), headers={"content-length": str(SIZE)},
                                  timeout=120)
        assert response.status_code == 200
        assert response.json() == {"received": SIZE}
        print(f"gateway peak RSS rise during a 100 MiB upload: {rss.rise / 2**20:.1f} MiB")
        assert rss.rise <= BUDGET

    def test_download_100_mib_with_flat_memory(self, gateway_over_sink):
        stack = gateway_over_sink
        received = 0
        with PeakRss(stack.processes["gateway"].pid) as rss:
            with httpx.stream("GET", stack.url("gateway") + "/v1/records/r1/versions/1/content",
                              headers={"x-size": str(SIZE)}, timeout=120) as response:
                for chunk in response.iter_raw():
                    received += len(chunk)
        assert received == SIZE
        print(f"gateway peak RSS rise during a 100 MiB download: {rss.rise / 2**20:.1f} MiB")
        assert rss.rise <= BUDGET
