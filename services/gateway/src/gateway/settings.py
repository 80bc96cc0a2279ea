"""Gateway settings, read from ``ECRIN_GATEWAY_*``."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from ecrin_platform.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ECRIN_GATEWAY_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/gateway.db"
    #: PEM of the Ed25519 key that signs internal tokens, or a path to it.
    internal_token_private_key: SecretStr | None = None
    internal_token_private_key_file: Path | None = None
    internal_token_lifetime_s: int = 30
    records_url: str = "http://127.0.0.1:8001"
    kms_url: str = "http://127.0.0.1:8002"
    sharing_url: str = "http://127.0.0.1:8003"
    #: Seconds to wait for a service to answer before the client gets 503.
    upstream_timeout_s: float = 60.0
    #: How long the merged OpenAPI document is cached.
    openapi_cache_s: float = 30.0

    def internal_private_key_pem(self) -> bytes:
        if self.internal_token_private_key is not None:
            return self.internal_token_private_key.get_secret_value().encode()
        if self.internal_token_private_key_file is not None:
            return self.internal_token_private_key_file.read_bytes()
        raise RuntimeError("no internal token private key configured")

    def upstream_url(self, service: str) -> str:
        return {"records-api": self.records_url, "kms": self.kms_url,
                "sharing": self.sharing_url}[service].rstrip("/")
