"""Écrin sharing settings, read from ``ECRIN_SHARING_*``."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from ecrin_platform.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ECRIN_SHARING_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/sharing.db"
    #: The records API and the kms, told at once when a file's access changes (a grant
    #: ends, a rotation moves on) so that their cached answers are dropped
    #: (``sharing.notify``). Unset: not told; their cache lifetime bounds the delay.
    records_url: str | None = None
    kms_url: str | None = None
    #: DNS names (comma-separated) whose every address is one replica of the records API
    #: (of the kms): each is told, by address, under the URL's scheme, port and host name
    #: (a headless Service in Kubernetes). Unset: the URL alone is told, so with several
    #: replicas behind it the others keep their cached answers for their cache's lifetime.
    records_replicas: str | None = None
    kms_replicas: str | None = None
    #: Tests and demos only: a file with seconds added to the clock (grants expire by it).
    clock_offset_file: Path | None = None
