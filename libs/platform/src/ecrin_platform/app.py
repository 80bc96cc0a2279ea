"""The application skeleton every service builds on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import APIRouter, FastAPI
from starlette.middleware import Middleware

from ecrin_platform.conventions import HttpConventionsMiddleware
from ecrin_platform.db import create_engine, create_sessionmaker, dispose_engine
from ecrin_platform.guards import (
    BodyLimitMiddleware,
    HeaderLimitMiddleware,
    InternalAuthMiddleware,
    NoStoreMiddleware,
)
from ecrin_platform.health import ReadinessCheck, health_router
from ecrin_platform.keepalive import CLIENT_IDLE_S
from ecrin_platform.migrations import upgrade_to_head
from ecrin_platform.observability import (
    Metrics,
    ObservabilityMiddleware,
    configure_logging,
    metrics_var,
)
from ecrin_platform.openapi import install_openapi, operation_id
from ecrin_platform.problems import install_problem_handlers
from ecrin_platform.settings import ServiceSettings
from ecrin_platform.tls import client_context
from ecrin_platform.tokens import InternalTokenVerifier
from ecrin_platform.tracing import TracingTransport, configure_tracing, instrument_engine
from ecrin_platform.warmup import warm_routes

Hook = Callable[[FastAPI], Awaitable[None]]


def build_service_app(
    *,
    service: str,
    title: str,
    settings: ServiceSettings,
    script_location: Path,
    routers: Sequence[APIRouter] = (),
    upload_paths: Iterable[str] = (),
    internal_auth: bool = True,
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    description: str = "",
    docs: bool = True,
    forwarded_audiences: dict[str, frozenset[str]] | None = None,
    inner_middleware: Sequence[Middleware] = (),
    readiness_checks: Sequence[ReadinessCheck] = (),
) -> FastAPI:
    """A FastAPI app with the database, problem+json errors, logs, metrics and guards.

    ``upload_paths`` are path regexes that accept ``settings.max_upload_bytes`` instead of
    ``settings.max_body_bytes``. ``readiness_checks`` add to ``/readyz`` (the database is
    always checked). Metrics are in ``app.state.metrics.registry``, served by
    ``observability.metrics_app`` on the metrics port, not by this app.
    ``inner_middleware`` runs inside every guard (request id, logs, metrics, limits,
    no-store, internal authentication), just before the routes.
    """
    configure_logging(service, settings.log_level)
    configure_tracing(service)
    log = logging.getLogger(f"ecrin.{service}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await asyncio.to_thread(upgrade_to_head, script_location, settings.database_url)
        engine = create_engine(settings.database_url, pool_size=settings.db_pool_size,
                               max_overflow=settings.db_max_overflow,
                               pool_pre_ping=settings.db_pool_pre_ping)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        # Mutual TLS to the other services when the settings name a CA (ecrin_platform.tls).
        # (The TLS context goes to the transport: a client ignores ``verify`` when it is
        # given a transport. TracingTransport adds the trace context to each call.)
        instrument_engine(engine)
        app.state.http = httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=5.0),
            transport=TracingTransport(httpx.AsyncHTTPTransport(
                verify=client_context(settings),
                limits=httpx.Limits(keepalive_expiry=CLIENT_IDLE_S))))
        # Background tasks the hooks start copy this context: the audit events they write
        # (a grant expiry swept outside any request) reach the domain counters too.
        metrics_var.set(metrics)
        for hook in on_startup:
            await hook(app)
        # Routing state built now, not by the first request (``ecrin_platform.warmup``).
        await warm_routes(app.router, service)
        log.info("started")
        try:
            yield
        finally:
            for hook in on_shutdown:
                await hook(app)
            await app.state.http.aclose()
            await dispose_engine(engine)

    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=lifespan,
                  openapi_url="/openapi.json" if docs else None,
                  docs_url="/docs" if docs else None, redoc_url=None,
                  # A slash redirect names the service's own address: behind the gateway it
                  # would send clients to an internal host. A wrong path is a plain 404.
                  redirect_slashes=False,
                  # records.create, grants.revoke: what generated clients name functions after
                  generate_unique_id_function=operation_id)
    app.state.settings = settings
    app.state.service = service
    #: Called when the server begins to shut down, before it waits for the responses under
    #: way: what ends long-lived ones (the sharing service's access-change streams).
    app.state.draining = []
    #: Signs the head of every audit chain this service serves; required to serve.
    app.state.audit_key = settings.audit_key()
    metrics = Metrics(service)
    app.state.metrics = metrics
    install_problem_handlers(app)
    install_openapi(app, service=service, description=description, authenticated=internal_auth,
                    routers=routers)
    app.include_router(health_router(script_location, readiness_checks))
    for router in routers:
        app.include_router(router)

    for middleware in reversed(inner_middleware):
        app.add_middleware(middleware.cls, *middleware.args, **middleware.kwargs)
    if internal_auth:
        verifier = InternalTokenVerifier(settings.internal_public_key_pem(), audience=service)
        app.state.verifier = verifier
        app.add_middleware(InternalAuthMiddleware, verifier=lambda: verifier,
                           forwarded=forwarded_audiences)
    app.add_middleware(BodyLimitMiddleware, default_limit=settings.max_body_bytes,
                       overrides=[(p, settings.max_upload_bytes) for p in upload_paths])
    app.add_middleware(NoStoreMiddleware)
    # The gateway adds its internal token and forwarding headers: services allow for them.
    app.add_middleware(HeaderLimitMiddleware,
                       max_bytes=(24 if internal_auth else 16) * 1024)
    # WWW-Authenticate on every 401, Retry-After on every 503, 304 for If-None-Match.
    app.add_middleware(HttpConventionsMiddleware)
    # Added last, so outermost: every response, even a 401 or a 413, gets a request id.
    # A service trusts the traceparent of its callers (the gateway, another service: they
    # must hold an internal token); the gateway, which has none to check, is the edge and
    # starts its own trace.
    app.add_middleware(ObservabilityMiddleware, service=service, metrics=metrics,
                       trust_traceparent=internal_auth)
    return app

