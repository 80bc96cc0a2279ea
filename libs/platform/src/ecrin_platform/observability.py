"""JSON logs carrying the request id, and Prometheus metrics per route.

Only identifiers and timings are logged: never bodies, query strings, tokens or keys.
"""

from __future__ import annotations

import contextvars
import datetime
import logging
import re
import sys
import time
import uuid
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import StatusCode
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ecrin_platform.tracing import current_trace_ids, start_server_span

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id",
                                                                            default=None)


class _RequestIdFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.service = self.service
        record.trace_id, record.span_id = current_trace_ids()
        return True


class _UtcJsonFormatter(JsonFormatter):
    """``time`` in ISO 8601, UTC, milliseconds: ``2026-11-30T18:40:13.123Z``."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: The fields of every log line, in this order (docs/operations.md documents them). An
#: access line adds ``method``, ``route``, ``status`` and ``duration_ms``.
LOG_FIELDS = ("time", "level", "logger", "message", "service", "request_id", "trace_id",
              "span_id")


def configure_logging(service: str, level: str = "INFO") -> None:
    """One JSON object per line on stderr, one ``request`` line per request."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UtcJsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(request_id)s "
        "%(trace_id)s %(span_id)s",
        rename_fields={"levelname": "level", "asctime": "time", "name": "logger"}))
    handler.addFilter(_RequestIdFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log prints the full path with its query string: ours replaces it.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every outgoing call with its full URL (query strings included): the
    # caller's own access line is the one line per request.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def clean_request_id(value: str | None) -> str:
    if value and _REQUEST_ID_RE.match(value):
        return value
    return uuid.uuid4().hex


#: Audit actions that write a record (a new record, a new version of one).
RECORD_WRITES = frozenset({"record.create", "record.version.create"})
#: Audit actions that release wrapped keys to a device.
KEY_RELEASES = frozenset({"keys.release"})

metrics_var: contextvars.ContextVar[Metrics | None] = contextvars.ContextVar("metrics",
                                                                           default=None)


class Metrics:
    """One registry per app: HTTP, process and runtime metrics, and the domain counters an
    operator watches. No label ever names a patient, a file, an account or a record: the
    labels are the service, the route template, the method, the status, the audit action
    and its outcome, all bounded sets."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests_total", "HTTP requests",
                                ["service", "method", "route", "status"], registry=self.registry)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request latency",
                                 ["service", "method", "route"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5,
                                          5, 10, 30))
        # process_* (CPU, memory, file descriptors), python_info, python_gc_*
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.audit_appends = Counter(
            "ecrin_audit_events_total", "Audit events appended (committed) to the hash chains",
            ["service", "action", "outcome"], registry=self.registry)
        self.records_written = Counter(
            "ecrin_records_written_total", "Records and record versions created (committed)",
            ["service", "action"], registry=self.registry)
        self.key_releases = Counter(
            "ecrin_key_releases_total", "Keyring entries released to a device, or refused",
            ["service", "outcome"], registry=self.registry)
        self.rotations_pending = Gauge(
            "ecrin_rotations_pending", "Scope-key rotations waiting for a practitioner's "
            "device (revocations and expiries); set by the sharing service",
            ["service"], registry=self.registry)
        self.notices_listening = Gauge(
            "ecrin_notices_listening", "1 while this replica hears the other replicas' "
            "notices on the channel (PostgreSQL LISTEN), 0 while it does not",
            ["service", "channel"], registry=self.registry)
        self.access_feed_following = Gauge(
            "ecrin_access_feed_following", "1 while the service (kms, records API) follows the "
            "sharing service's access-change feed, 0 while its cache's lifetime alone "
            "bounds a revocation",
            ["service"], registry=self.registry)
        self.service = service

    def audited(self, actions: list[tuple[str, str]]) -> None:
        """Counts committed audit events, ``(action, outcome)`` each."""
        for action, outcome in actions:
            self.audit_appends.labels(self.service, action, outcome).inc()
            if action in RECORD_WRITES and outcome == "ok":
                self.records_written.labels(self.service, action).inc()
            elif action in KEY_RELEASES:
                self.key_releases.labels(self.service, outcome).inc()


class ObservabilityMiddleware:
    """Request id in and out, one access-log line and metrics per request."""

    def __init__(self, app: ASGIApp, *, service: str, metrics: Metrics,
                 trust_traceparent: bool = True) -> None:
        self.app = app
        self.service = service
        self.metrics = metrics
        #: False at the edge: a client's traceparent is a link, never the parent.
        self.trust_traceparent = trust_traceparent
        self.log = logging.getLogger(f"ecrin.{service}.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        rid = clean_request_id(headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1"))
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        metrics_token = metrics_var.set(self.metrics)
        status = 500
        start = time.perf_counter()
        # The route is known only once routed: the span is renamed at the end.
        span = start_server_span(scope["method"], scope.get("headers") or [],
                                 {"http.request.method": scope["method"],
                                  "ecrin.request_id": rid},
                                 trust_caller=self.trust_traceparent)

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                raw = list(message.get("headers", []))
                raw.append((b"x-request-id", rid.encode()))
                message["headers"] = raw
            await send(message)

        try:
            with trace.use_span(span, end_on_exit=False):
                await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "<unmatched>"
            self.metrics.requests.labels(self.service, scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(self.service, scope["method"], route).observe(elapsed)
            span.update_name(f"{scope['method']} {route}")
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(StatusCode.ERROR)
            extra: dict[str, Any] = {"method": scope["method"], "route": route,
                                     "status": status, "duration_ms": round(elapsed * 1000, 2)}
            with trace.use_span(span, end_on_exit=True):
                self.log.info("request", extra=extra)
            request_id_var.reset(token)
            metrics_var.reset(metrics_token)


def metrics_app(registry: CollectorRegistry) -> ASGIApp:
    """The metrics listener: ``GET /metrics`` and nothing else, on a port of its own that
    only the Prometheus scraper may reach (docs/deploy.md); the public listener has no
    ``/metrics`` route."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics":
            status, body, ctype = 404, b"not found\n", "text/plain"
        elif scope["method"] not in ("GET", "HEAD"):
            status, body, ctype = 405, b"method not allowed\n", "text/plain"
        else:
            status, body, ctype = 200, generate_latest(registry), CONTENT_TYPE_LATEST
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else body})

    return app
