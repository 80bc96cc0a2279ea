"""JSON logs carrying the request id, and Prometheus metrics per route.

Only identifiers and timings are logged: never bodies, query strings, tokens or keys.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import time
import uuid
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
        return True


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(request_id)s",
        rename_fields={"levelname": "level", "asctime": "time"}))
    handler.addFilter(_RequestIdFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log prints the full path with its query string: ours replaces it.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def clean_request_id(value: str | None) -> str:
    if value and _REQUEST_ID_RE.match(value):
        return value
    return uuid.uuid4().hex


class Metrics:
    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests_total", "HTTP requests",
                                ["service", "method", "route", "status"], registry=self.registry)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request latency",
                                 ["service", "method", "route"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5,
                                          5, 10, 30))
        self.service = service


class ObservabilityMiddleware:
    """Request id in and out, one access-log line and metrics per request."""

    def __init__(self, app: ASGIApp, *, service: str, metrics: Metrics) -> None:
        self.app = app
        self.service = service
        self.metrics = metrics
        self.log = logging.getLogger(f"ecrin.{service}.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        rid = clean_request_id(headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1"))
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                raw = list(message.get("headers", []))
                raw.append((b"x-request-id", rid.encode()))
                message["headers"] = raw
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "<unmatched>"
            self.metrics.requests.labels(self.service, scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(self.service, scope["method"], route).observe(elapsed)
            extra: dict[str, Any] = {"method": scope["method"], "route": route,
                                     "status": status, "duration_ms": round(elapsed * 1000, 2)}
            self.log.info("request", extra=extra)
            request_id_var.reset(token)


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
