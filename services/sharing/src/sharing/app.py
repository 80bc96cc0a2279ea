"""Builds the sharing application."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from ecrin_platform.app import build_service_app
from ecrin_platform.audit import AuditLog
from ecrin_platform.service_info import service_info_router
from sharing.clock import Clock
from sharing.files.endpoints import internal, router
from sharing.grants import endpoints as grants
from sharing.models import AuditEvent
from sharing.settings import Settings

SERVICE = "sharing"
MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = build_service_app(
        service=SERVICE,
        title="Écrin sharing",
        description=(
            "Patient files, grants, invitations and pending rotations; "
            "the authorisation decision point."),
        settings=settings,
        script_location=MIGRATIONS,
        routers=[service_info_router(SERVICE, "files"), router, grants.files_extra,
                 grants.grants, grants.invitations, grants.rotations, internal, grants.internal],
        # Which service may forward its user's token where: records-api only asks for
        # access decisions; the kms also activates files and grants and closes rotations.
        forwarded_audiences={"/internal/access/": frozenset({"records-api", "kms"}),
                             "/internal/files/": frozenset({"kms"}),
                             "/internal/grants/": frozenset({"kms"}),
                             "/internal/rotations/": frozenset({"kms"})},
        upload_paths=[],
    )
    app.state.clock = Clock(settings.clock_offset_file)
    app.state.audit = AuditLog(AuditEvent, SERVICE)
    return app
