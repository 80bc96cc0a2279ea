"""Écrin KMS settings, read from ``ECRIN_KMS_*``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ecrin_platform.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ECRIN_KMS_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/kms.db"
    #: The sharing service, the authorisation decision point.
    sharing_url: str = "http://127.0.0.1:8003"
    #: How long an access decision is cached (a revocation bites within this bound).
    authz_cache_s: float = 0.5
    #: Follow the sharing service's access-change feed (``GET /internal/access-changes``):
    #: a revocation drops the cached answers about its file at once, though the sharing
    #: service does not reach the kms (another site). Off: the cache's lifetime bounds it.
    access_feed: bool = True
    #: How long an answer granting access is reused while the feed is followed (``live``;
    #: ``ecrin_platform.access``); never past the grant's end. The feed is the kms's only
    #: channel (the records API also gets POSTs), and a NOTIFY lost between two sharing
    #: replicas, or a feed that died without closing (noticed within 40 s), would leave
    #: it this long: by default no longer than ``authz_cache_s``.
    authz_cache_live_s: float = Field(default=0.5, ge=0, le=4)
