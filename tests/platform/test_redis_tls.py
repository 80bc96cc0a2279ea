"""The gateway's rate limits on a Redis that speaks TLS only and requires a password, as the
production overlays run it (deploy/k8s/components/internal-tls/redis-deployment.yaml): the
password comes from a file, the CA from the URL; a wrong password or an unknown CA is a
storage failure (the 503 path), never a count in the clear."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecrin_platform.devstack import free_port
from gateway.auth.ratelimit import AuthRateLimiter, RateLimitUnavailable
from gateway.settings import Settings
from tests.support.certificates import CertificateAuthority

pytestmark = pytest.mark.timeout(60)

#: The test server's password, made per run (hex: it travels in the URL).
PASSWORD = secrets.token_hex(16)


@pytest.fixture(scope="module")
def redis_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """(port, CA file) of a redis-server with TLS only and requirepass."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    folder = tmp_path_factory.mktemp("redis-tls")
    ca = CertificateAuthority(folder, "redis-ca")
    crt, key = ca.issue("redis")
    (folder / "redis.conf").write_text(f"requirepass {PASSWORD}\n")
    port = free_port()
    process = subprocess.Popen(
        [server, str(folder / "redis.conf"), "--port", "0", "--tls-port", str(port),
         "--tls-cert-file", str(crt), "--tls-key-file", str(key), "--tls-ca-cert-file",
         str(ca.ca_file), "--tls-auth-clients", "no", "--save", "", "--appendonly", "no",
         "--dir", str(folder), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while subprocess.run(redis_cli(port, ca.ca_file) + ["ping"],
                         capture_output=True, text=True).stdout.strip() != "PONG":
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail("redis-server with TLS did not start")
        time.sleep(0.1)
    yield port, ca.ca_file
    process.terminate()
    process.wait(timeout=10)


def redis_cli(port: int, ca: Path) -> list[str]:
    return ["redis-cli", "--tls", "--cacert", str(ca), "-h", "localhost", "-p", str(port),
            "--no-auth-warning", "-a", PASSWORD]


def limiter_for(url: str, password: str, tmp_path: Path) -> AuthRateLimiter:
    secret = tmp_path / "password"
    secret.write_text(password + "\n")
    settings = Settings(redis_url=url, redis_password_file=secret, redis_timeout_s=2)
    return AuthRateLimiter(settings.redis_url, "1000/minute", "2/minute",
                           redis_timeout_s=settings.redis_timeout_s)


class TestRedisOverTlsWithAPassword:
    async def test_counts_go_through(self, redis_tls, tmp_path):
        port, ca = redis_tls
        limiter = limiter_for(f"rediss://localhost:{port}/0?ssl_ca_certs={ca}", PASSWORD,
                              tmp_path)
        account = f"acct-{time.monotonic_ns()}"
        headers = await limiter.check("login", "203.0.113.9", account)
        assert '"account";r=1' in headers["RateLimit"]

    async def test_connections_the_server_closed_are_opened_again(self, redis_tls, tmp_path):
        """A Redis restart, an idle timeout, a failover: the pooled connections are gone.
        The next checks open new ones rather than answer 503."""
        port, ca = redis_tls
        limiter = limiter_for(f"rediss://localhost:{port}/0?ssl_ca_certs={ca}", PASSWORD,
                              tmp_path)
        ips = [f"203.0.113.{i}" for i in range(1, 11)]
        await asyncio.gather(*(limiter.check("login", ip, None) for ip in ips))
        killer = await asyncio.create_subprocess_exec(
            *redis_cli(port, ca), "client", "kill", "type", "normal",
            stdout=asyncio.subprocess.PIPE)
        killed, _ = await killer.communicate()
        assert int(killed) >= 1
        await asyncio.sleep(0.2)
        answers = await asyncio.gather(*(limiter.check("login", ip, None) for ip in ips),
                                       return_exceptions=True)
        assert [a for a in answers if isinstance(a, BaseException)] == []

    async def test_a_wrong_password_is_a_storage_failure(self, redis_tls, tmp_path):
        port, ca = redis_tls
        limiter = limiter_for(f"rediss://localhost:{port}/0?ssl_ca_certs={ca}", "wrong0123",
                              tmp_path)
        with pytest.raises(RateLimitUnavailable):
            await limiter.check("login", "203.0.113.9", "someone")

    async def test_a_server_of_another_ca_is_refused(self, redis_tls, tmp_path):
        port, _ = redis_tls
        other = CertificateAuthority(tmp_path, "elsewhere")
        limiter = limiter_for(f"rediss://localhost:{port}/0?ssl_ca_certs={other.ca_file}",
                              PASSWORD, tmp_path)
        with pytest.raises(RateLimitUnavailable):
            await limiter.check("login", "203.0.113.9", "someone")
