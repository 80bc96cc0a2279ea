"""The gateway is the edge of the traces: a client's ``traceparent`` never becomes the
parent of the server's spans, nor reaches a service. The gateway starts a trace of its own,
keeps the client's span as a link, and forwards only its own trace context."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ecrin_platform.tracing import recording_to
from tests.support.apps import build_app, running

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
CLIENT_HEADERS = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
                  "tracestate": "client=chosen", "baggage": "user=someone"}


class Upstream:
    """A service that answers 200 and keeps the headers it was sent."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")[1:]
        self.headers.append({k.strip().lower(): v.strip() for k, _, v in
                             (line.partition(":") for line in head if line)})
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: 2\r\nconnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, int]]:
    service = Upstream()
    server = await asyncio.start_server(service.handle, "127.0.0.1", 0)
    try:
        yield service, server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def _forward_one(database_url_for, internal_keys, port: int) -> None:
    app = build_app("gateway", database_url_for("gateway"), internal_keys,
                    kms_url=f"http://127.0.0.1:{port}")
    async with running(app, rollback=False) as client:
        response = await client.get("/v1/directory/anyone", headers=CLIENT_HEADERS)
        assert response.status_code == 200


class TestTheEdge:
    async def test_a_client_traceparent_is_a_link_not_the_parent(
            self, database_url_for, internal_keys, upstream):
        service, port = upstream
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        with recording_to(provider):
            await _forward_one(database_url_for, internal_keys, port)
        provider.shutdown()
        [server] = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
        assert server.parent is None
        assert format(server.context.trace_id, "032x") != CLIENT_TRACE
        [link] = server.links
        assert format(link.context.trace_id, "032x") == CLIENT_TRACE
        assert format(link.context.span_id, "016x") == CLIENT_SPAN
        # The service joins the gateway's trace, never the client's.
        [sent] = service.headers
        assert sent["traceparent"].split("-")[1] == format(server.context.trace_id, "032x")
        assert "tracestate" not in sent and "baggage" not in sent

    async def test_with_tracing_off_nothing_of_the_clients_context_goes_further(
            self, database_url_for, internal_keys, upstream):
        service, port = upstream
        await _forward_one(database_url_for, internal_keys, port)
        [sent] = service.headers
        assert not {"traceparent", "tracestate", "baggage"} & set(sent)
