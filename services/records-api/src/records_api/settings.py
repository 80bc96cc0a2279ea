"""Écrin records API settings, read from ``ECRIN_RECORDS_*``."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from ecrin_platform.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ECRIN_RECORDS_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/records_api.db"
