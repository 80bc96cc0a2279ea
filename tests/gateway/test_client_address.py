"""Who the client is behind the ingress: forwarded addresses count only from trusted proxies."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager

import httpx
import pytest

from gateway.client_address import resolve_client_address, trusted_networks
from tests.support.apps import build_app, running

PROXIES = trusted_networks(["10.0.0.0/8", "2001:db8:ffff::/48"])


class TestResolve:
    def test_no_trusted_proxy_means_the_peer(self):
        headers = {"x-forwarded-for": "198.51.100.1"}
        assert resolve_client_address("10.0.0.5", headers, ()) == "10.0.0.5"

    def test_untrusted_peer_is_the_client_whatever_it_says(self):
        headers = {"x-forwarded-for": "198.51.100.1", "forwarded": "for=198.51.100.2"}
        assert resolve_client_address("192.0.2.9", headers, PROXIES) == "192.0.2.9"

    def test_trusted_peer_gives_the_right_most_untrusted_address(self):
        # The client wrote the first entry itself; the ingress appended the real one.
        headers = {"x-forwarded-for": "6.6.6.6, 198.51.100.1, 10.1.2.3"}
        assert resolve_client_address("10.0.0.5", headers, PROXIES) == "198.51.100.1"

    def test_forwarded_header(self):
        headers = {"forwarded": 'for=6.6.6.6, for="[2001:db8::1]:4711";proto=https'}
        assert resolve_client_address("10.0.0.5", headers, PROXIES) == "2001:db8::1"

    def test_unparseable_hop_stops_at_the_proxy(self):
        headers = {"x-forwarded-for": "198.51.100.1, unknown"}
        assert resolve_client_address("10.0.0.5", headers, PROXIES) == "10.0.0.5"

    def test_trusted_peer_without_header_is_the_client(self):
        assert resolve_client_address("10.0.0.5", {}, PROXIES) == "10.0.0.5"

    def test_a_typo_in_the_setting_is_refused(self):
        with pytest.raises(ValueError):
            trusted_networks(["10.0.0.0/33"])


@asynccontextmanager
async def gateway_from(database_url_for, internal_keys, peer: str, **overrides):
    """The gateway seen from ``peer`` (the address on the socket)."""
    app = build_app("gateway", database_url_for("gateway"), internal_keys, **overrides)
    async with running(app):
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def _challenges(client: httpx.AsyncClient, forwarded_for: str, n: int) -> list[int]:
    statuses = []
    for _ in range(n):
        email = f"c-{uuid.uuid4().hex[:8]}@example.fr"
        response = await client.post("/v1/auth/challenge", json={"email": email},
                                     headers={"X-Forwarded-For": forwarded_for})
        statuses.append(response.status_code)
    return statuses


class TestPerClientLimitBehindAProxy:
    async def test_trusted_proxy_counts_each_forwarded_client(self, database_url_for,
                                                              internal_keys):
        async with gateway_from(database_url_for, internal_keys, "10.0.0.5",
                                trusted_proxies=["10.0.0.0/8"],
                                auth_rate_limit_per_ip="3/minute") as client:
            assert await _challenges(client, "198.51.100.1", 4) == [200, 200, 200, 429]
            # Another client behind the same ingress has its own count.
            assert await _challenges(client, "198.51.100.2", 1) == [200]

    async def test_untrusted_peer_is_counted_by_its_own_address(self, database_url_for,
                                                                internal_keys):
        async with gateway_from(database_url_for, internal_keys, "192.0.2.9",
                                trusted_proxies=["10.0.0.0/8"],
                                auth_rate_limit_per_ip="3/minute") as client:
            statuses = [*await _challenges(client, "198.51.100.1", 2),
                        *await _challenges(client, "198.51.100.2", 2)]
        assert statuses == [200, 200, 200, 429]  # rotating the header bought nothing

    async def test_no_trusted_proxy_by_default(self, database_url_for, internal_keys):
        async with gateway_from(database_url_for, internal_keys, "10.0.0.5",
                                auth_rate_limit_per_ip="2/minute") as client:
            statuses = [*await _challenges(client, "198.51.100.1", 1),
                        *await _challenges(client, "198.51.100.2", 2)]
        assert statuses == [200, 200, 429]


class TestPerAccountLimitCannotLockOut:
    async def test_a_stranger_exhausts_only_his_own_allowance(self, database_url_for,
                                                              internal_keys):
        email = f"victim-{uuid.uuid4().hex[:8]}@example.fr"
        async with gateway_from(database_url_for, internal_keys, "10.0.0.5",
                                trusted_proxies=["10.0.0.0/8"],
                                auth_rate_limit_per_account="2/minute") as client:
            async def challenge(client_ip: str) -> int:
                response = await client.post("/v1/auth/challenge", json={"email": email},
                                             headers={"X-Forwarded-For": client_ip})
                return response.status_code

            assert [await challenge("203.0.113.66") for _ in range(3)] == [200, 200, 429]
            assert await challenge("198.51.100.7") == 200  # the account holder


class TestRateLimitHeaders:
    async def test_headers_on_success_and_on_429(self, database_url_for, internal_keys):
        async with gateway_from(database_url_for, internal_keys, "192.0.2.1",
                                auth_rate_limit_per_ip="2/minute",
                                auth_rate_limit_per_account="10/minute") as client:
            first = await client.post("/v1/auth/challenge", json={"email": "h@example.fr"})
            await client.post("/v1/auth/challenge", json={"email": "h@example.fr"})
            limited = await client.post("/v1/auth/challenge", json={"email": "h@example.fr"})
        assert first.status_code == 200
        assert first.headers["ratelimit-policy"] == '"ip";q=2;w=60, "account";q=10;w=60'
        assert first.headers["ratelimit"].startswith('"ip";r=1;t=')
        assert limited.status_code == 429
        assert limited.headers["content-type"] == "application/problem+json"
        assert limited.headers["ratelimit"].startswith('"ip";r=0;t=')
        assert int(limited.headers["retry-after"]) >= 1


class TestSignupLimits:
    async def test_per_email_then_per_client(self, database_url_for, internal_keys):
        from ecrin_e2ee import KdfParams, create_account
        from tests.support.users import signup_payload

        def payload(email: str) -> dict:
            setup = create_account(uuid.uuid4(), "pass phrase", KdfParams.insecure_for_tests())
            return signup_payload(setup, email, "patient")

        async with gateway_from(database_url_for, internal_keys, "192.0.2.44",
                                signup_rate_limit_per_ip="4/hour",
                                signup_rate_limit_per_email="2/hour",
                                signup_min_duration_s=0,
                                min_kdf_opslimit=1, min_kdf_memlimit=8192) as client:
            async def signup(email: str) -> httpx.Response:
                return await client.post("/v1/auth/signup", json=payload(email),
                                         headers={"Idempotency-Key": uuid.uuid4().hex})

            same = [await signup("one@example.fr") for _ in range(3)]
            other = [await signup("two@example.fr") for _ in range(2)]
        assert [r.status_code == 429 for r in same] == [False, False, True]
        assert same[2].headers["ratelimit-policy"] == '"ip";q=4;w=3600, "account";q=2;w=3600'
        # This client's fourth sign-up is allowed, its fifth is over the per-client limit.
        assert [r.status_code == 429 for r in other] == [False, True]
