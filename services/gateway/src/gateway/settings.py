"""Gateway settings, read from ``ECRIN_GATEWAY_*``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

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
    #: How long a forwarded request's verified access token and live-session check are
    #: reused for further requests with the same token (0: check every request). This
    #: gateway forgets every entry as soon as one of its own routes changes account or
    #: session state (logout, revocation, second factor, passphrase...); another replica
    #: of the gateway sees such a change after at most this long, as the services see a
    #: revoked grant after ``authz_cache_s``.
    session_cache_s: float = Field(default=0.5, ge=0, le=4)
    #: How long the merged OpenAPI document is cached.
    openapi_cache_s: float = 30.0
    #: The web app's build (web/dist, made by ``make web``), served on this origin with
    #: /docs' Swagger UI assets. Unset or not built: the app's paths answer 404.
    web_dist: Path | None = None

    #: PEM of the Ed25519 key that signs access tokens (distinct from the internal one).
    access_token_private_key: SecretStr | None = None
    access_token_private_key_file: Path | None = None
    #: During a rotation of the access-token key: the public half of the previous key,
    #: still accepted until the last token it signed has expired (``access_token_ttl_s``);
    #: then unset it (docs/deploy.md, rotation).
    access_token_previous_public_key_file: Path | None = None
    access_token_ttl_s: int = Field(default=900, ge=30, le=900)
    refresh_token_ttl_s: int = 30 * 24 * 3600
    challenge_ttl_s: int = Field(default=120, ge=10, le=600)
    #: Host name bound into login challenges; defaults to the request's Host header.
    public_host: str | None = None
    #: Practitioners without a verified second factor are kept off patient data.
    require_practitioner_2fa: bool = True
    #: Development profile (make run): relaxes require_practitioner_2fa and says so.
    development_profile: bool = False
    #: The weakest Argon2id parameters accepted for an account (libsodium MODERATE).
    min_kdf_opslimit: int = 3
    min_kdf_memlimit: int = 256 * 1024 * 1024
    #: Rate-limit storage: ``redis://host:port/db`` for several replicas, else in memory;
    #: ``rediss://`` for TLS (``?ssl_ca_certs=/path/ca.crt`` names the CA to verify Redis).
    redis_url: str | None = None
    #: A file holding Redis's password (a mounted Secret): put into ``redis_url`` at start-up.
    redis_password_file: Path | None = None
    #: Limits on the challenge, login, second-factor and recovery routes.
    auth_rate_limit_per_ip: str = "30/minute"
    #: Per account key, itself scoped to the client address where a stranger could spend
    #: it (the challenge is keyed on email and client), so nobody can lock a victim out.
    auth_rate_limit_per_account: str = "10/minute"
    #: Sign-up: per client address and per email (docs/accounts.md).
    signup_rate_limit_per_ip: str = "20/hour"
    signup_rate_limit_per_email: str = "5/hour"
    #: Every sign-up answer, new account or taken email, is held until this long after the
    #: request arrived, so that its timing does not tell the two apart. Above the slowest
    #: real sign-up (database write, kms call, commit).
    signup_min_duration_s: float = Field(default=0.4, ge=0, le=5)
    #: Seconds to wait for Redis before a limited route answers 503.
    redis_timeout_s: float = Field(default=1.0, gt=0, le=10)
    #: Addresses or CIDRs of the reverse proxies (the ingress) whose ``X-Forwarded-For`` /
    #: ``Forwarded`` headers are believed; comma-separated. Empty: the socket peer is the
    #: client and forwarding headers are ignored (gateway.client_address).
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @model_validator(mode="after")
    def _redis_password_from_file(self) -> Settings:
        if self.redis_password_file is not None:
            if not self.redis_url:
                raise ValueError("redis_password_file needs redis_url")
            password = self.redis_password_file.read_text().rstrip("\r\n")
            # The rate limiter's Redis client (redis-py) takes the password from the URL:
            # only URL-safe characters travel in it unchanged whatever the client
            # (deploy/create-secrets.sh makes a hex one).
            if not password or quote(password, safe="") != password:
                raise ValueError("the Redis password must be non-empty letters, digits, "
                                 "'-', '_', '.' or '~' (it travels in the URL)")
            parts = urlsplit(self.redis_url)
            host = parts.netloc.rpartition("@")[2]
            self.redis_url = urlunsplit(parts._replace(
                netloc=f"{parts.username or ''}:{password}@{host}"))
        return self

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    #: Key that seals TOTP secrets at rest (32 bytes, base64url), or a file holding it;
    #: required unless ``development_profile`` (then derived from the access-token key).
    totp_key: SecretStr | None = None
    totp_key_file: Path | None = None
    #: Former TOTP keys, comma-separated: they still open secrets, which are re-sealed
    #: under ``totp_key`` when next used (docs/accounts.md, key rotation).
    totp_old_keys: SecretStr | None = None

    def totp_key_text(self) -> str | None:
        if self.totp_key is not None:
            return self.totp_key.get_secret_value()
        if self.totp_key_file is not None:
            return self.totp_key_file.read_text().strip()
        return None

    def internal_private_key_pem(self) -> bytes:
        if self.internal_token_private_key is not None:
            return self.internal_token_private_key.get_secret_value().encode()
        if self.internal_token_private_key_file is not None:
            return self.internal_token_private_key_file.read_bytes()
        raise RuntimeError("no internal token private key configured")

    def access_private_key_pem(self) -> bytes:
        if self.access_token_private_key is not None:
            return self.access_token_private_key.get_secret_value().encode()
        if self.access_token_private_key_file is not None:
            return self.access_token_private_key_file.read_bytes()
        raise RuntimeError("no access token private key configured")

    def access_previous_public_key_pem(self) -> bytes | None:
        if self.access_token_previous_public_key_file is None:
            return None
        return self.access_token_previous_public_key_file.read_bytes()

    def upstream_url(self, service: str) -> str:
        return {"records-api": self.records_url, "kms": self.kms_url,
                "sharing": self.sharing_url}[service].rstrip("/")
