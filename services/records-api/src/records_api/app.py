"""Builds the records-api application."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import FastAPI

from ecrin_platform.access import (
    access_changed_router,
    start_access_client,
    stop_access_client,
)
from ecrin_platform.app import build_service_app
from ecrin_platform.service_info import service_info_router
from records_api import MIGRATIONS, SERVICE
from records_api.records.batch import router as batch_router
from records_api.records.content import ContentStore
from records_api.records.content_rows import content_files
from records_api.records.endpoints import router as records_router
from records_api.records.purge import purge_forever
from records_api.records.resumable import router as resumable_router
from records_api.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    async def start(app: FastAPI) -> None:
        start_access_client(app, SERVICE, settings)
        app.state.content_store = ContentStore(app.state.sessionmaker, app.state.engine,
                                               content_files(settings))
        app.state.purge_task = None
        if settings.purge_interval_s > 0:
            app.state.purge_task = asyncio.create_task(
                purge_forever(app.state.sessionmaker, settings), name="records-purge")

    async def content_directory(app: FastAPI) -> str | None:
        store: ContentStore = app.state.content_store
        return await store.directory_problem()

    async def stop(app: FastAPI) -> None:
        await stop_access_client(app)
        task = app.state.purge_task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = build_service_app(
        service=SERVICE,
        title="Écrin records API",
        description=(
            "Ciphertext only: "
            "encrypted record headers, metadata and content chunks, versions and signatures. "
            "Holds no key."),
        settings=settings,
        script_location=MIGRATIONS,
        # service-info first: its literal path must win over /v1/records/{record_id}.
        routers=[service_info_router(SERVICE, "records"), batch_router, records_router,
                 resumable_router, access_changed_router],
        # The sharing service forwards the token it was called with (a revocation; from
        # the kms, a rotation) to say which files' cached access answers to drop.
        forwarded_audiences={"/internal/access-changed": frozenset({"sharing", "kms"})},
        upload_paths=[r"^/v1/records/[^/]+/versions/[^/]+/content(/uploads/[^/]+)?$"],
        on_startup=[start],
        on_shutdown=[stop],
        readiness_checks=[content_directory],
    )
    return app
