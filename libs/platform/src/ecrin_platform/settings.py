"""Settings base shared by the services; each service subclasses it with its own prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from ecrin_e2ee import AuditSigningKey


class ServiceSettings(BaseSettings):
    """Settings every service has. Read once at start-up and injected."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/service.db"
    #: A file holding the database password (a mounted Secret: CloudNativePG's
    #: ``<db>-db-app``, key ``password``). When set, it replaces any password in
    #: ``database_url``, which then carries no secret and may sit in a ConfigMap. Read at
    #: start-up: a rotated password takes effect at the next rollout.
    database_password_file: Path | None = None
    #: PEM of the gateway's Ed25519 public key that signs internal tokens, or a path to it.
    internal_token_public_key: SecretStr | None = None
    internal_token_public_key_file: Path | None = None
    #: PEM (PKCS#8) of this service's own Ed25519 key that signs the head of every audit
    #: chain it serves, or a path to it: ``openssl genpkey -algorithm ed25519``. Required
    #: to serve; devices pin its public half, so it is kept across restarts and replicas.
    audit_signing_key: SecretStr | None = None
    audit_signing_key_file: Path | None = None
    #: Largest request body accepted on ordinary routes.
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    #: Largest request body accepted on streaming upload routes: an encrypted document's
    #: content stream. The default is what a 200 MiB document becomes once padded (PADME
    #: leaves 200 MiB as it is) with the stream's 17 bytes per 64 KiB chunk, so a 200 MiB
    #: document passes and anything larger is a 413.
    max_upload_bytes: int = Field(default=(200 << 20) + 17 * ((200 << 20) // 65536),
                                  ge=1024)
    #: PostgreSQL connection pool: connections kept open, and extra ones opened under a
    #: burst (closed again when returned). Size it to the concurrent requests one replica
    #: serves (a pool smaller than that opens and closes connections all the time); four
    #: services at the defaults open at most 80 connections. Ignored for SQLite.
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    #: Test each pooled connection with a round trip before use. Off by default: a
    #: connection lost under a request is already a 503 with Retry-After, and the pool then
    #: drops every stale connection at once; the ping cost a round trip per transaction.
    db_pool_pre_ping: bool = False
    log_level: str = "INFO"
    #: Port of the ``/metrics`` listener, apart from the public one (``serve`` defaults it
    #: to the service's port + 1000; 0 serves no metrics).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    #: Seconds a stopping server waits for the responses under way before it cancels them
    #: (after ending the long-lived ones: ``app.state.draining``). Below Kubernetes' grace
    #: period less the preStop sleep, so that the app's own shutdown still runs.
    shutdown_timeout_s: int = Field(default=40, ge=1)
    #: Run Alembic to head on start-up (development convenience; production runs a Job).
    migrate_on_start: bool = False
    #: Mutual TLS between the gateway and the services (ecrin_platform.tls). With a
    #: certificate and key, ``serve`` listens over TLS; with a CA too, it requires a client
    #: certificate from that CA, and this service's own calls to other services present its
    #: certificate and verify theirs against that CA. Files, as cert-manager mounts them
    #: (``tls.crt``, ``tls.key``, ``ca.crt``); unset: plain HTTP (``make run``, loopback).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None
    #: With ``tls_ca_file``: refuse a client without a certificate from that CA. On for
    #: every internal service; the gateway may turn it off where its callers are browsers
    #: and the CLI rather than the ingress (the four-host run's client host).
    tls_require_client_cert: bool = True

    def __repr_args__(self) -> Any:
        # The URLs may carry a password (read from its file): never in a repr or a log.
        for name, value in super().__repr_args__():
            if isinstance(value, str) and name is not None and name.endswith("_url") \
                    and "@" in value:
                scheme, _, rest = value.partition("://")
                value = f"{scheme}://***@{rest.rpartition('@')[2]}"
            yield name, value

    @model_validator(mode="after")
    def _password_from_file(self) -> ServiceSettings:
        if self.database_password_file is not None:
            secret = self.database_password_file.read_text().rstrip("\r\n")
            url = make_url(self.database_url).set(password=secret)
            self.database_url = url.render_as_string(hide_password=False)
        return self

    @model_validator(mode="after")
    def _tls_files_go_together(self) -> ServiceSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file are set together")
        if self.tls_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_ca_file needs tls_cert_file and tls_key_file: a service "
                             "that checks client certificates must present its own")
        return self

    def internal_public_key_pem(self) -> bytes:
        if self.internal_token_public_key is not None:
            return self.internal_token_public_key.get_secret_value().encode()
        if self.internal_token_public_key_file is not None:
            return self.internal_token_public_key_file.read_bytes()
        raise RuntimeError("no internal token public key configured")

    def audit_key(self) -> AuditSigningKey:
        if self.audit_signing_key is not None:
            pem = self.audit_signing_key.get_secret_value().encode()
        elif self.audit_signing_key_file is not None:
            pem = self.audit_signing_key_file.read_bytes()
        else:
            raise RuntimeError("no audit signing key configured")
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the audit signing key must be Ed25519")
        return AuditSigningKey(key.private_bytes(serialization.Encoding.Raw,
                                                 serialization.PrivateFormat.Raw,
                                                 serialization.NoEncryption()))
