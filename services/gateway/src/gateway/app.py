"""Builds the gateway: the only public entry point."""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.types import Scope

from ecrin_platform.app import build_service_app
from ecrin_platform.audit import AuditLog
from ecrin_platform.tls import client_context
from ecrin_platform.tokens import InternalTokenIssuer
from gateway import MIGRATIONS, SERVICE
from gateway.auth.endpoints import router as auth_router
from gateway.auth.kms import KmsClient
from gateway.auth.principal import (
    PrincipalCache,
    replicas_channel,
    resolve_principal,
    sessions_changed_in,
)
from gateway.auth.ratelimit import AuthRateLimiter
from gateway.auth.second_factor import reseal_totp_secrets, totp_keyring
from gateway.auth.service import AuthContext
from gateway.auth.tokens import AccessTokens
from gateway.client_address import trusted_networks
from gateway.models import AuditEvent
from gateway.openapi import MergedOpenAPI
from gateway.proxy import PROXIED_METHODS as FORWARDED_METHODS
from gateway.proxy import Proxy, ProxyDispatch, not_proxied, upstream_session
from gateway.settings import Settings
from gateway.webapp import SecurityHeaders, WebApp, WebAppFiles, docs_page

#: Content uploads: the one-shot PUT and the pieces of a resumable upload (PATCH).
UPLOAD_PATHS = [r"^/v1/records/[^/]+/versions/[^/]+/content(/uploads/[^/]+)?$"]
#: Every method, so that the owning service answers 405 with its own Allow header (the
#: gateway's catch-all route would otherwise advertise these five methods on every path).
PROXIED_METHODS = sorted(FORWARDED_METHODS)


def docs_router(web: WebAppFiles) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/openapi.json")
    async def openapi(request: Request) -> JSONResponse:
        app = request.app
        doc = await app.state.openapi.document(app.state.http, app.openapi())
        return JSONResponse(doc)

    @router.get("/docs")
    async def docs() -> HTMLResponse:
        # Self-hosted Swagger UI (gateway.webapp): FastAPI's page loads it from a CDN with an
        # inline script, both of which the CSP forbids.
        return docs_page(web)

    return router


def proxy_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.api_route("/v1/{path:path}", methods=PROXIED_METHODS)
    async def forward(request: Request, path: str) -> Response:
        # Paths a service owns never get here: ProxyDispatch forwards them first.
        return await not_proxied(request)

    return router


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    issuer = InternalTokenIssuer(settings.internal_private_key_pem(),
                                 lifetime_s=settings.internal_token_lifetime_s)
    tokens = AccessTokens(settings.access_private_key_pem(), settings.access_token_ttl_s,
                          settings.access_previous_public_key_pem())
    if settings.development_profile:
        settings.require_practitioner_2fa = False

    async def start(app: FastAPI) -> None:
        app.state.http.timeout = settings.upstream_timeout_s
        app.state.upstreams = upstream_session(settings.upstream_timeout_s,
                                               client_context(settings))
        app.state.proxy = Proxy(client=app.state.upstreams, issuer=issuer,
                                upstream_url=settings.upstream_url,
                                resolve_principal=resolve_principal)
        app.state.auth = AuthContext(settings=settings, tokens=tokens,
                                     kms=KmsClient(app.state.http, issuer,
                                                   settings.upstream_url("kms")),
                                     audit=AuditLog(AuditEvent, SERVICE),
                                     totp_keys=totp_keyring(settings, tokens))
        app.state.rate_limiter = AuthRateLimiter(
            settings.redis_url, settings.auth_rate_limit_per_ip,
            settings.auth_rate_limit_per_account,
            routes={"signup": (settings.signup_rate_limit_per_ip,
                               settings.signup_rate_limit_per_email)},
            redis_timeout_s=settings.redis_timeout_s)
        resealed = await reseal_totp_secrets(app.state.sessionmaker, app.state.auth.totp_keys)
        if resealed:
            logging.getLogger("ecrin.gateway").info("sealed %d TOTP secrets at rest", resealed)
        if not settings.require_practitioner_2fa:
            logging.getLogger("ecrin.gateway").warning(
                "require_practitioner_2fa is OFF (development profile): practitioners reach "
                "patient data without a second factor")

    def current_proxy() -> Proxy:
        proxy: Proxy = app.state.proxy  # set by ``start``, before any request
        return proxy

    principals = PrincipalCache(settings.session_cache_s)
    web = WebAppFiles(settings.web_dist)

    async def listen_to_replicas(app: FastAPI) -> None:
        app.state.replicas = channel = replicas_channel(app.state.engine, principals)
        if channel is not None:
            await channel.start()
            app.state.metrics.notices_listening.labels(SERVICE, channel.channel).set_function(
                lambda: float(channel.listening))

    async def tell_replicas(scope: Scope) -> None:
        channel = app.state.replicas
        accounts = sessions_changed_in(scope)
        if channel is not None and accounts:
            await channel.publish(accounts)

    async def stop(app: FastAPI) -> None:
        await app.state.upstreams.close()
        if app.state.replicas is not None:
            await app.state.replicas.stop()

    async def rate_limit_store(app: FastAPI) -> str | None:
        # Fail closed: without its counts the gateway refuses the limited routes (503), so
        # a replica that cannot reach Redis is taken out of the Service until it can.
        limiter: AuthRateLimiter = app.state.rate_limiter
        if await limiter.reachable():
            return None
        return "The rate-limit store (Redis) is unreachable."

    app: FastAPI = build_service_app(
        service=SERVICE,
        title="Écrin",
        description=(
            "End-to-end encrypted patient records for physiotherapy practices. Every route "
            "of the four services, reached through this gateway. Servers only ever see "
            "ciphertext and wrapped keys."),
        settings=settings,
        script_location=MIGRATIONS,
        routers=[docs_router(web), auth_router, proxy_router()],
        upload_paths=UPLOAD_PATHS,
        internal_auth=False,
        on_startup=[start, listen_to_replicas],
        on_shutdown=[stop],
        docs=False,  # the merged document replaces FastAPI's own
        inner_middleware=[Middleware(WebApp, files=web),
                          Middleware(ProxyDispatch, proxy=current_proxy,
                                    on_own_write=lambda scope: principals.forget(
                                        sessions_changed_in(scope)),
                                    tell_replicas=tell_replicas)],
        readiness_checks=[rate_limit_store],
    )
    # Outermost: CSP and the other browser headers on every answer, guards' included.
    app.add_middleware(SecurityHeaders)
    # Parsed here so that a typo in the list stops the gateway at start-up.
    app.state.trusted_proxies = trusted_networks(settings.trusted_proxies)
    app.state.issuer = issuer
    app.state.principal_cache = principals
    app.state.openapi = MergedOpenAPI(issuer=issuer, upstream_url=settings.upstream_url,
                                      cache_s=settings.openapi_cache_s)
    return app
