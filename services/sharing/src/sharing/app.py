"""Builds the sharing application."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from ecrin_platform.app import build_service_app
from ecrin_platform.audit import AuditLog
from ecrin_platform.service_info import service_info_router
from sharing import MIGRATIONS, SERVICE
from sharing.clock import Clock
from sharing.feed import CHANNEL, FOLLOWERS, feed_for
from sharing.feed import router as access_feed
from sharing.files.batch_access import internal as batch_access
from sharing.files.endpoints import internal, router
from sharing.grants import endpoints as grants
from sharing.models import AuditEvent, Rotation
from sharing.notify import AccessNotifier, Target
from sharing.settings import Settings

ROTATIONS_GAUGE_INTERVAL_S = 15.0


async def count_pending_rotations(app: FastAPI) -> None:
    """Keeps ``ecrin_rotations_pending`` current: the operator's signal that revocations
    and expiries wait for a practitioner's device to re-key (docs/operations.md)."""
    query = select(func.count()).select_from(Rotation).where(Rotation.done_at.is_(None))
    gauge = app.state.metrics.rotations_pending.labels(SERVICE)
    while True:
        try:
            async with app.state.sessionmaker() as session:
                gauge.set((await session.execute(query)).scalar_one())
        except (OSError, SQLAlchemyError):
            logging.getLogger("ecrin.sharing").warning("rotations gauge not updated")
        await asyncio.sleep(ROTATIONS_GAUGE_INTERVAL_S)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    async def start(app: FastAPI) -> None:
        targets = [Target.of(name, url, replicas) for name, url, replicas in (
            ("records-api", settings.records_url, settings.records_replicas),
            ("kms", settings.kms_url, settings.kms_replicas)) if url]
        app.state.notifier = AccessNotifier(app.state.http, targets)
        app.state.access_feed = feed = feed_for(app.state.engine)
        await feed.start()
        app.state.metrics.notices_listening.labels(SERVICE, CHANNEL).set_function(
            lambda: float(feed.listening))
        app.state.draining.append(feed.drain)
        app.state.rotations_gauge = asyncio.create_task(
            count_pending_rotations(app), name="rotations-pending-gauge")

    async def stop(app: FastAPI) -> None:
        await app.state.access_feed.stop()
        app.state.rotations_gauge.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await app.state.rotations_gauge

    app = build_service_app(
        service=SERVICE,
        title="Écrin sharing",
        description=(
            "Patient files, grants, invitations and pending rotations; "
            "the authorisation decision point."),
        settings=settings,
        script_location=MIGRATIONS,
        routers=[service_info_router(SERVICE, "files"), router, grants.files_extra,
                 grants.grants, grants.invitations, grants.rotations, internal, batch_access,
                 grants.internal, access_feed],
        # Which service may forward its user's token where: records-api only asks for
        # access decisions and follows their changes; the kms also activates files and
        # grants and closes rotations.
        forwarded_audiences={"/internal/access/": frozenset({"records-api", "kms"}),
                             "/internal/files/": frozenset({"kms"}),
                             "/internal/grants/": frozenset({"kms"}),
                             "/internal/rotations/": frozenset({"kms"}),
                             "/internal/access-changes": FOLLOWERS},
        upload_paths=[],
        on_startup=[start],
        on_shutdown=[stop],
    )
    app.state.clock = Clock(settings.clock_offset_file)
    app.state.audit = AuditLog(AuditEvent, SERVICE)
    return app
