"""Secrets come from mounted files, and every signing key rotates with two keys valid at
once (docs/deploy.md, "Secrets and their rotation")."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from ecrin_platform.tokens import (
    InternalTokenIssuer,
    InternalTokenVerifier,
    InvalidInternalToken,
    generate_keypair_pem,
)
from gateway.auth.tokens import AccessTokens, InvalidAccessToken
from gateway.settings import Settings as GatewaySettings
from kms.settings import Settings as KmsSettings


def secret_file(tmp_path: Path, name: str, value: str) -> Path:
    path = tmp_path / name
    path.write_text(value)
    return path


class TestDatabasePasswordFile:
    def test_the_files_password_goes_into_the_url(self, tmp_path, monkeypatch):
        password = "p@ss:w/rd%20é"
        path = secret_file(tmp_path, "password", password + "\n")
        monkeypatch.setenv("ECRIN_KMS_DATABASE_URL",
                           "postgresql+asyncpg://kms@kms-db-rw:5432/kms?ssl=verify-full")
        monkeypatch.setenv("ECRIN_KMS_DATABASE_PASSWORD_FILE", str(path))
        url = make_url(KmsSettings().database_url)
        assert url.password == password
        assert (url.username, url.host, url.database) == ("kms", "kms-db-rw", "kms")
        assert url.query == {"ssl": "verify-full"}

    def test_the_file_wins_over_a_password_in_the_url(self, tmp_path):
        path = secret_file(tmp_path, "password", "from-the-file")
        settings = KmsSettings(database_url="postgresql+asyncpg://kms:stale@db/kms",
                               database_password_file=path)
        assert make_url(settings.database_url).password == "from-the-file"

    def test_a_missing_file_fails_at_start_up(self, tmp_path):
        with pytest.raises(FileNotFoundError):
            KmsSettings(database_url="postgresql+asyncpg://kms@db/kms",
                        database_password_file=tmp_path / "absent")

    def test_without_a_file_the_url_is_left_alone(self):
        url = "postgresql+asyncpg://kms:inline@db/kms"
        assert KmsSettings(database_url=url).database_url == url


class TestRedisPasswordFile:
    def test_the_password_goes_into_a_tls_url(self, tmp_path):
        path = secret_file(tmp_path, "redis", "0123abcdef\n")
        settings = GatewaySettings(
            redis_url="rediss://redis:6379/0?ssl_ca_certs=/etc/ecrin/tls/ca.crt",
            redis_password_file=path)
        assert settings.redis_url == \
            "rediss://:0123abcdef@redis:6379/0?ssl_ca_certs=/etc/ecrin/tls/ca.crt"

    def test_a_password_that_would_need_quoting_is_refused(self, tmp_path):
        path = secret_file(tmp_path, "redis", "a/b@c")
        with pytest.raises(ValidationError, match="Redis password"):
            GatewaySettings(redis_url="rediss://redis:6379/0", redis_password_file=path)


class TestTlsSettings:
    def test_certificate_and_key_go_together(self, tmp_path):
        with pytest.raises(ValidationError, match="together"):
            KmsSettings(tls_cert_file=tmp_path / "tls.crt")

    def test_a_client_ca_needs_a_certificate_of_ones_own(self, tmp_path):
        with pytest.raises(ValidationError, match="tls_ca_file"):
            KmsSettings(tls_ca_file=tmp_path / "ca.crt")


class TestInternalTokenRotation:
    """1. services get a bundle: new public key + old; 2. the gateway signs with the new
    key; 3. after 60 s (the longest token life) the old key leaves the bundle."""

    def test_during_the_rotation_both_keys_are_accepted(self):
        old_private, old_public = generate_keypair_pem()
        new_private, new_public = generate_keypair_pem()
        verifier = InternalTokenVerifier(new_public + old_public, audience="kms")
        for private in (old_private, new_private):
            token = InternalTokenIssuer(private).issue("kms", request_id="r")
            assert verifier.verify(token).request_id == "r"

    def test_after_the_rotation_the_old_key_is_refused(self):
        old_private, _ = generate_keypair_pem()
        new_private, new_public = generate_keypair_pem()
        verifier = InternalTokenVerifier(new_public, audience="kms")
        verifier.verify(InternalTokenIssuer(new_private).issue("kms"))
        with pytest.raises(InvalidInternalToken):
            verifier.verify(InternalTokenIssuer(old_private).issue("kms"))

    def test_a_bundle_from_a_file_is_read_whole(self, tmp_path):
        old_private, old_public = generate_keypair_pem()
        _, new_public = generate_keypair_pem()
        path = secret_file(tmp_path, "public.pem", (new_public + old_public).decode())
        settings = KmsSettings(internal_token_public_key_file=path)
        verifier = InternalTokenVerifier(settings.internal_public_key_pem(), audience="kms")
        verifier.verify(InternalTokenIssuer(old_private).issue("kms"))

    def test_a_key_outside_the_bundle_is_refused(self):
        _, a = generate_keypair_pem()
        _, b = generate_keypair_pem()
        stranger, _ = generate_keypair_pem()
        with pytest.raises(InvalidInternalToken):
            InternalTokenVerifier(a + b, audience="kms").verify(
                InternalTokenIssuer(stranger).issue("kms"))


class TestAccessTokenRotation:
    """The gateway signs with the new key and still accepts tokens signed by the previous
    one (its public half in a file) until they expire; then the file is removed."""

    def test_tokens_of_the_previous_key_stay_valid_during_the_rotation(self, tmp_path):
        old_private, old_public = generate_keypair_pem()
        new_private, _ = generate_keypair_pem()
        account, session = uuid.uuid4(), uuid.uuid4()
        issued_before = AccessTokens(old_private, 900).issue(account, session, "practitioner")
        path = secret_file(tmp_path, "previous.pem", old_public.decode())
        settings = GatewaySettings(access_token_previous_public_key_file=path)
        rotated = AccessTokens(new_private, 900, settings.access_previous_public_key_pem())
        assert rotated.verify(issued_before).account_id == account
        assert rotated.verify(rotated.issue(account, session, "practitioner")).session_id == \
            session

    def test_once_the_previous_key_is_removed_its_tokens_are_refused(self):
        old_private, _ = generate_keypair_pem()
        new_private, _ = generate_keypair_pem()
        token = AccessTokens(old_private, 900).issue(uuid.uuid4(), uuid.uuid4(), "patient")
        with pytest.raises(InvalidAccessToken):
            AccessTokens(new_private, 900).verify(token)

    def test_an_expired_token_of_the_previous_key_is_refused(self):
        old_private, old_public = generate_keypair_pem()
        new_private, _ = generate_keypair_pem()
        # Signed by the previous key with a lifetime that ended a minute ago.
        token = AccessTokens(old_private, -60).issue(uuid.uuid4(), uuid.uuid4(), "patient")
        rotated = AccessTokens(new_private, 900, old_public)
        with pytest.raises(InvalidAccessToken):
            rotated.verify(token)


class TestServerTlsOptions:
    def test_a_ca_makes_the_listener_require_client_certificates(self, tmp_path):
        import ssl

        from ecrin_platform.tls import server_options

        files = {n: secret_file(tmp_path, n, "") for n in ("tls.crt", "tls.key", "ca.crt")}
        settings = KmsSettings(tls_cert_file=files["tls.crt"], tls_key_file=files["tls.key"],
                               tls_ca_file=files["ca.crt"])
        options = server_options(settings)
        assert options["ssl_cert_reqs"] == ssl.CERT_REQUIRED
        assert options["ssl_ca_certs"] == str(files["ca.crt"])

    def test_the_gateway_may_serve_tls_without_asking_its_callers_for_one(self, tmp_path):
        from ecrin_platform.tls import client_context, server_options

        files = {n: secret_file(tmp_path, n, "") for n in ("tls.crt", "tls.key")}
        settings = GatewaySettings(tls_cert_file=files["tls.crt"], tls_key_file=files["tls.key"],
                                   tls_require_client_cert=False)
        assert server_options(settings) == {"ssl_certfile": str(files["tls.crt"]),
                                            "ssl_keyfile": str(files["tls.key"])}
        assert client_context(settings) is True

    def test_without_files_the_listener_is_plain(self):
        from ecrin_platform.tls import server_options

        assert server_options(KmsSettings()) == {}


class TestNoPasswordInRepr:
    def test_the_database_password_never_shows_in_the_settings_repr(self, tmp_path):
        path = secret_file(tmp_path, "password", "s3cr3t-from-the-file")
        settings = KmsSettings(database_url="postgresql+asyncpg://kms@db:5432/kms",
                               database_password_file=path)
        assert "s3cr3t-from-the-file" in settings.database_url
        assert "s3cr3t-from-the-file" not in repr(settings)
        assert "postgresql+asyncpg://***@db:5432/kms" in repr(settings)

    def test_nor_the_redis_password(self, tmp_path):
        path = secret_file(tmp_path, "redis", "0123abcdef")
        settings = GatewaySettings(redis_url="rediss://redis:6379/0", redis_password_file=path)
        assert "0123abcdef" not in repr(settings) and "0123abcdef" not in str(settings)
