"""Builds the records-api application."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from ecrin_platform.app import build_service_app
from records_api.service_info import router as info_router
from records_api.settings import Settings

SERVICE = "records-api"
MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    return build_service_app(
        service=SERVICE,
        title="Écrin records API",
        description=(
            "Ciphertext only: "
            "encrypted record headers, metadata and content chunks, versions and signatures. "
            "Holds no key."),
        settings=settings,
        script_location=MIGRATIONS,
        routers=[info_router],
        upload_paths=[r"^/v1/records/[^/]+/content$",
                      r"^/v1/records/[^/]+/versions/[^/]+/content$"],
    )
