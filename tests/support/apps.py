"""In-process service apps for tests: lifespan run, each test in a rolled-back transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from ecrin_platform.deps import get_read_session, get_session
from ecrin_platform.tokens import HEADER, InternalTokenIssuer, Principal, generate_keypair_pem

ACCESS_KEY = generate_keypair_pem()[0]
#: Each service's audit signing key, one per test session (PEM, as in production).
AUDIT_KEYS = {service: generate_keypair_pem()[0]
              for service in ("records-api", "kms", "sharing", "gateway")}

SETTINGS = {
    "records-api": ("records_api.app", "records_api.settings"),
    "kms": ("kms.app", "kms.settings"),
    "sharing": ("sharing.app", "sharing.settings"),
    "gateway": ("gateway.app", "gateway.settings"),
}


def audit_public_key(service: str) -> str:
    """The public half of ``service``'s test audit key, as the service publishes it."""
    from ecrin_platform.audit import public_key_text
    from ecrin_platform.settings import ServiceSettings

    return public_key_text(ServiceSettings(audit_signing_key=AUDIT_KEYS[service].decode())
                           .audit_key())


def build_app(service: str, database_url: str, internal_keys: tuple[bytes, bytes],
              **overrides: Any) -> FastAPI:
    app_module, settings_module = SETTINGS[service]
    create_app = __import__(app_module, fromlist=["create_app"]).create_app
    settings_cls = __import__(settings_module, fromlist=["Settings"]).Settings
    keys: dict[str, Any] = {"internal_token_public_key": internal_keys[1].decode(),
                            "audit_signing_key": AUDIT_KEYS[service].decode()}
    if service == "gateway":
        keys["internal_token_private_key"] = internal_keys[0].decode()
        keys["access_token_private_key"] = ACCESS_KEY.decode()
        keys["totp_key"] = "dGVzdC1vbmx5LXRvdHAta2V5LW9mLTMyLWJ5dGVzLi4"  # 32 bytes, tests only
    settings = settings_cls(database_url=database_url, **keys, **overrides)
    return create_app(settings)


@asynccontextmanager
async def running(app: FastAPI, *, rollback: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """Runs the app's lifespan; with ``rollback`` every write of the test is undone, but
    for the statements a service runs outside any transaction block on PostgreSQL
    (``autocommit_session``: the records API's create, the gateway's login challenge),
    which commit by themselves and do not see the test's uncommitted rows: a test that
    goes through them writes with ``rollback=False``."""
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        if rollback:
            conn = await stack.enter_async_context(app.state.engine.connect())
            outer = await conn.begin()
            session = AsyncSession(bind=conn, join_transaction_mode="create_savepoint",
                                   expire_on_commit=False, autoflush=False)

            async def override() -> AsyncIterator[AsyncSession]:
                async with session.begin_nested():
                    yield session

            # Routes that only read see the test's writes too (they run in its transaction).
            app.dependency_overrides[get_session] = override
            app.dependency_overrides[get_read_session] = override
            stack.push_async_callback(outer.rollback)
            stack.push_async_callback(session.close)
        transport = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        stack.push_async_callback(client.aclose)
        yield client


class Caller:
    """Signs internal tokens as the gateway would, for calls straight to a service."""

    def __init__(self, issuer: InternalTokenIssuer, service: str) -> None:
        self.issuer = issuer
        self.service = service

    def headers(self, principal: Principal | None = None, **extra: Any) -> dict[str, str]:
        return {HEADER: self.issuer.issue(self.service, principal=principal, **extra)}


@pytest.fixture
def service_app(database_url_for: Callable[[str], str], internal_keys: tuple[bytes, bytes]):
    """``async with service_app("kms") as client`` gives a client to a live, migrated app."""

    def make(service: str, *, rollback: bool = True, **overrides: Any):
        app = build_app(service, database_url_for(service), internal_keys, **overrides)
        return running(app, rollback=rollback)

    return make
