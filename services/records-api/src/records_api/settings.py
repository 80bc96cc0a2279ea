"""Écrin records API settings, read from ``ECRIN_RECORDS_*``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ecrin_platform.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ECRIN_RECORDS_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/records_api.db"
    #: The sharing service, the authorisation decision point (``/internal/access/...``).
    sharing_url: str = "http://127.0.0.1:8003"
    #: How long an access decision is reused. A revoked grant stops ciphertext reads
    #: within this plus one request (issue 9's target: 1 s; the design's bound: 5 s).
    authz_cache_s: float = Field(default=0.5, ge=0, le=4)
    #: How long an answer granting access is reused while this service follows the
    #: sharing service's access-change feed (``ecrin_platform.access``): every change then
    #: reaches it twice (the POST and the feed), and this bounds only a change both lose
    #: (a POST lost and a NOTIFY lost between two sharing replicas, or a feed that died
    #: without closing, noticed within 40 s). Never past the grant's end, nor past the
    #: start of another grant of the account on the file. Set it to ``authz_cache_s`` to
    #: keep one lifetime.
    authz_cache_live_s: float = Field(default=4.0, ge=0, le=4)
    #: Follow that feed (``GET /internal/access-changes``), beside the sharing service's
    #: POSTs. Off: the cache's ``authz_cache_s`` bounds a lost POST.
    access_feed: bool = True
    #: Tombstoned records keep their ciphertext this long, then the purge deletes it.
    purge_after_s: int = Field(default=7 * 24 * 3600, ge=0)
    #: An upload neither committed nor cleaned up after this long is an orphan; purged.
    stale_upload_after_s: int = Field(default=24 * 3600, ge=60)
    #: A resumable upload session with no append for this long is abandoned; purged. Longer
    #: than the above: a device that lost its network over a long weekend still resumes.
    resumable_upload_after_s: int = Field(default=7 * 24 * 3600, ge=60)
    #: Idempotency keys are remembered this long.
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    #: How often the lifespan's background task runs the purge (0 disables it).
    purge_interval_s: float = Field(default=600.0, ge=0)
    #: Where content too large to be read inline (over 256 KiB of ciphertext) is kept, as
    #: files of 1 MiB, instead of database rows, which either backend writes at about
    #: 100 MiB/s (docs/performance.md, round 12). Every replica must see the same
    #: directory (one host, or a shared volume), and it is backed up with the database
    #: (docs/records.md, "Storage"; docs/deploy.md). Unset: the database holds all
    #: content. Content already stored stays where it is either way.
    content_dir: Path | None = None
