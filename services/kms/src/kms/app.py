"""Builds the kms application."""

from __future__ import annotations

from fastapi import FastAPI

from ecrin_platform.access import (
    access_changed_router,
    start_access_client,
    stop_access_client,
)
from ecrin_platform.app import build_service_app
from ecrin_platform.audit import AuditLog
from ecrin_platform.service_info import service_info_router
from kms import MIGRATIONS, SERVICE
from kms.accounts.endpoints import directory, internal, keys
from kms.keyrings.batch import router as keyrings_batch
from kms.keyrings.endpoints import router as keyrings
from kms.models import AuditEvent
from kms.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    async def start(app: FastAPI) -> None:
        app.state.audit = AuditLog(AuditEvent, SERVICE)
        start_access_client(app, SERVICE, settings)

    async def stop(app: FastAPI) -> None:
        await stop_access_client(app)

    return build_service_app(
        service=SERVICE,
        title="Écrin KMS",
        description=(
            "Public-key directory, wrapped identity keys and patient keyrings. "
            "Holds no unwrapped key."),
        settings=settings,
        script_location=MIGRATIONS,
        routers=[service_info_router(SERVICE, "keys"), directory, keys, keyrings_batch,
                 keyrings, internal, access_changed_router],
        # A sharing service on the same site may forward the token it was called with to say
        # which files' cached access answers to drop (a revocation, an expiry); otherwise
        # the kms follows its feed (``ecrin_platform.access_feed``).
        forwarded_audiences={"/internal/access-changed": frozenset({"sharing"})},
        on_startup=[start],
        on_shutdown=[stop],
        upload_paths=[],
    )
