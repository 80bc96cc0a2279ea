"""OpenTelemetry tracing across the services: gateway → service → database.

Off by default. It is on when an OTLP endpoint is configured, by the standard variables
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (and
``OTEL_SDK_DISABLED`` is not ``true``): spans then go to that collector over OTLP/HTTP.
Tests send the spans to an in-memory exporter with :func:`recording_to`. The process's
global provider is left alone: the spans of Écrin go where this module says.

What a span may carry is fixed here, not left to instrumentation defaults: the method, the
route template (``/v1/records/{record_id}``, never the path with its ids, never a query
string), the status, the request id, the upstream service's name, and for the database the
SQL text with its placeholders (never a bound value). No body, header, token or key.
W3C ``traceparent`` is written on every call to another service and read by the services,
so one record creation is one trace across the three processes; the gateway, the edge,
never continues a client's trace: it starts its own and keeps the client's as a link.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

import httpx
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from ecrin_platform.db import read_only_engine

log = logging.getLogger("ecrin.tracing")
TRACER_NAME = "ecrin"
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def export_configured(environ: Mapping[str, str] = os.environ) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return any(environ.get(name) for name in _ENDPOINT_VARIABLES)


#: The provider spans go to; None: tracing is off (spans are non-recording, but a caller's
#: trace context still passes through to the services called).
_provider: TracerProvider | None = None


def configure_tracing(service: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Installs the OTLP exporter when one is configured; True when spans are recorded."""
    global _provider
    if _provider is not None:
        return True  # a previous app of this process, or a test's in-memory exporter
    if not export_configured(environ):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _provider = provider
    log.info("tracing exported by OTLP")
    return True


@contextmanager
def recording_to(provider: TracerProvider) -> Iterator[TracerProvider]:
    """Sends this process's spans to ``provider`` for a while (tests: an in-memory
    exporter), then back to what they were."""
    global _provider
    previous, _provider = _provider, provider
    try:
        yield provider
    finally:
        _provider = previous


def tracer() -> trace.Tracer:
    if _provider is None:
        return trace.NoOpTracer()
    return _provider.get_tracer(TRACER_NAME)


def current_trace_ids() -> tuple[str | None, str | None]:
    """(trace id, span id) in hex of the current span, for the log lines; Nones outside."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None, None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def extract(headers: list[tuple[bytes, bytes]]) -> Any:
    """The caller's trace context from an ASGI request's ``traceparent``/``tracestate``."""
    carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers
               if name in (b"traceparent", b"tracestate")}
    return propagate.extract(carrier)


def start_server_span(method: str, headers: list[tuple[bytes, bytes]],
                      attributes: dict[str, Any], *, trust_caller: bool = True) -> trace.Span:
    """The span of one request, child of the caller's ``traceparent``. With tracing off,
    a non-recording span that still carries the caller's context to the services called.

    ``trust_caller=False`` at the edge (the gateway): a client must not choose the server's
    trace ids (nor join its requests to someone else's trace, nor force sampling), so the
    request starts a fresh trace; the client's span context, when valid, is kept as a
    *link* only. With tracing off, nothing of the client's context goes further."""
    context = extract(headers)
    caller = trace.get_current_span(context).get_span_context()
    if not trust_caller:
        if _provider is None:
            return trace.INVALID_SPAN
        links = [trace.Link(caller, {"ecrin.link": "client"})] if caller.is_valid else []
        return tracer().start_span(method, context=Context(), kind=SpanKind.SERVER,
                                   attributes=attributes, links=links)
    if _provider is None:
        return trace.NonRecordingSpan(caller)
    return tracer().start_span(method, context=context, kind=SpanKind.SERVER,
                               attributes=attributes)


def inject(headers: MutableMapping[str, str]) -> None:
    """Writes ``traceparent`` (and ``tracestate``) of the current span into ``headers``."""
    propagate.inject(headers)


class TracingTransport(httpx.AsyncBaseTransport):
    """An httpx transport for calls to other services: a client span named after the
    method and the target service, and the trace context in the request's headers."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = request.url.host
        with tracer().start_as_current_span(f"{request.method} {target}",
                                            kind=SpanKind.CLIENT) as span:
            span.set_attribute("http.request.method", request.method)
            span.set_attribute("server.address", target)
            carrier: dict[str, str] = {}
            inject(carrier)
            for name, value in carrier.items():
                request.headers[name] = value
            response = await self.inner.handle_async_request(request)
            span.set_attribute("http.response.status_code", response.status_code)
            return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def instrument_engine(engine: Any) -> None:
    """Database spans (SQL text with placeholders only, never a bound value) when tracing
    is on. The engine's own listener, not the instrumentor's global ``create_engine``
    patch: each app (several per test process) instruments the engine it made."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import get_meter

    usage = get_meter(TRACER_NAME).create_up_down_counter("db.client.connections.usage")
    EngineTracer(tracer(), engine.sync_engine, usage, enable_commenter=False)
    reader = read_only_engine(engine)
    if reader.pool is not engine.pool:  # SQLite's readers are an engine of their own
        EngineTracer(tracer(), reader.sync_engine, usage, enable_commenter=False)
