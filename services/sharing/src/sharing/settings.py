"""Écrin sharing settings, read from ``ECRIN_SHARING_*``."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from ecrin_platform.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ECRIN_SHARING_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/sharing.db"
    #: Tests and demos only: a file with seconds added to the clock (grants expire by it).
    clock_offset_file: Path | None = None
