"""What every service does the same way: auth, health, readiness, metrics, problems, limits."""

from __future__ import annotations

import uuid

import httpx
import pytest

from ecrin_platform.tokens import HEADER, InternalTokenIssuer, Principal, generate_keypair_pem
from tests.support.apps import Caller, audit_public_key, build_app, running
from tests.support.databases import fresh_database

INTERNAL_SERVICES = [("records-api", "records"), ("kms", "keys"), ("sharing", "files")]
PROBLEM = "application/problem+json"


@pytest.fixture(params=INTERNAL_SERVICES, ids=[s for s, _ in INTERNAL_SERVICES])
def service(request):
    return request.param


class TestInternalAuthentication:
    async def test_no_token_is_401_problem(self, service_app, service):
        name, area = service
        async with service_app(name) as client:
            response = await client.get(f"/v1/{area}/service-info")
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["status"] == 401

    async def test_valid_token_passes_and_carries_principal(self, service_app, service, issuer):
        name, area = service
        async with service_app(name) as client:
            headers = Caller(issuer, name).headers(Principal("acc-42", "practitioner"))
            response = await client.get(f"/v1/{area}/service-info", headers=headers)
        assert response.status_code == 200
        assert response.json() == {"service": name, "version": "0.1.0", "account_id": "acc-42",
                                   "audit_key": audit_public_key(name)}

    async def test_token_for_another_service_is_401(self, service_app, service, issuer):
        name, area = service
        other = next(s for s, _ in INTERNAL_SERVICES if s != name)
        async with service_app(name) as client:
            response = await client.get(f"/v1/{area}/service-info",
                                        headers=Caller(issuer, other).headers())
        assert response.status_code == 401

    async def test_token_from_another_key_is_401(self, service_app, service):
        name, area = service
        forger = InternalTokenIssuer(generate_keypair_pem()[0])
        async with service_app(name) as client:
            response = await client.get(f"/v1/{area}/service-info",
                                        headers={HEADER: forger.issue(name)})
        assert response.status_code == 401

    async def test_openapi_needs_a_token_too(self, service_app, service, issuer):
        name, _ = service
        async with service_app(name) as client:
            assert (await client.get("/openapi.json")).status_code == 401
            response = await client.get("/openapi.json", headers=Caller(issuer, name).headers())
        assert response.status_code == 200
        assert response.json()["paths"]

    async def test_unknown_route_without_token_is_401_not_404(self, service_app, service):
        async with service_app(service[0]) as client:
            assert (await client.get("/nope")).status_code == 401


class TestHealth:
    async def test_healthz_needs_no_token(self, service_app, service):
        async with service_app(service[0]) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}

    async def test_metrics_are_not_on_the_public_listener(self, service_app, service, issuer):
        name, _ = service
        headers = {} if name == "gateway" else Caller(issuer, name).headers()
        async with service_app(name) as client:
            response = await client.get("/metrics", headers=headers)
        assert response.status_code == 404

    async def test_metrics_listener_serves_the_apps_counts(self, database_url_for, service,
                                                           internal_keys):
        from ecrin_platform.observability import metrics_app

        name = service[0]
        app = build_app(name, database_url_for(name), internal_keys)
        async with running(app) as client:
            await client.get("/readyz")
            transport = httpx.ASGITransport(app=metrics_app(app.state.metrics.registry))
            async with httpx.AsyncClient(transport=transport, base_url="http://m") as scrape:
                metrics = (await scrape.get("/metrics")).text
                assert (await scrape.get("/readyz")).status_code == 404
        assert "http_requests_total" in metrics
        assert 'route="/readyz"' in metrics
        assert "http_request_duration_seconds_bucket" in metrics

    async def test_readyz_is_ready_when_migrated(self, service_app, service):
        async with service_app(service[0]) as client:
            response = await client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["status"] == "ready"

    async def test_readyz_is_503_when_not_migrated(self, backend, service, internal_keys,
                                                   tmp_path, worker_id_safe):
        name = service[0]
        url = fresh_database(backend, f"ecrin_test_{worker_id_safe}_unmigrated", tmp_path)
        app = build_app(name, url, internal_keys)
        async with running(app, rollback=False) as client:
            response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"] == PROBLEM
        assert "Retry-After" in response.headers

    async def test_readyz_is_503_when_database_unreachable(self, service, internal_keys):
        url = "postgresql+asyncpg://nobody@127.0.0.1:1/none"
        app = build_app(service[0], url, internal_keys)
        async with running(app, rollback=False) as client:
            response = await client.get("/readyz")
        assert response.status_code == 503


class TestProblems:
    async def test_unknown_route_is_404_problem(self, service_app, service, issuer):
        name, _ = service
        async with service_app(name) as client:
            response = await client.get("/v1/nowhere", headers=Caller(issuer, name).headers())
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"].endswith("/not-found")

    async def test_wrong_method_is_405_problem(self, service_app, service, issuer):
        name, area = service
        async with service_app(name) as client:
            response = await client.patch(f"/v1/{area}/service-info",
                                           headers=Caller(issuer, name).headers())
        assert response.status_code == 405
        assert response.headers["content-type"] == PROBLEM

    async def test_body_over_limit_is_413_by_content_length(self, service_app, service, issuer):
        name, area = service
        async with service_app(name, max_body_bytes=2048) as client:
            response = await client.post(f"/v1/{area}/service-info", content=b"x" * 4096,
                                         headers=Caller(issuer, name).headers())
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM

    async def test_body_over_limit_is_413_when_streamed(self, service_app, service, issuer):
        """No Content-Length: the limit bites while a route reads the body."""
        name, _ = service
        method, path = {"records-api": ("POST", "/v1/records"),
                        "kms": ("PUT", f"/v1/directory/{uuid.uuid4()}"),
                        "sharing": ("POST", "/v1/files")}[name]

        async def chunks():
            for _ in range(8):
                yield b"x" * 1024

        headers = Caller(issuer, name).headers(Principal(str(uuid.uuid4()), "practitioner"))
        headers["content-type"] = "application/json"
        headers["idempotency-key"] = "streamed-body-over-limit"
        async with service_app(name, max_body_bytes=2048) as client:
            response = await client.request(method, path, content=chunks(), headers=headers)
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM


class TestRequestId:
    async def test_request_id_is_echoed(self, service_app, service):
        async with service_app(service[0]) as client:
            response = await client.get("/healthz", headers={"x-request-id": "abcdef123456"})
        assert response.headers["x-request-id"] == "abcdef123456"

    async def test_unsafe_request_id_is_replaced(self, service_app, service):
        async with service_app(service[0]) as client:
            response = await client.get("/healthz", headers={"x-request-id": "<script>"})
        assert response.headers["x-request-id"] != "<script>"
        assert len(response.headers["x-request-id"]) == 32


class TestForwardedTokens:
    async def test_sharing_takes_a_records_api_token_only_for_access_decisions(
            self, service_app, issuer):
        principal = Principal(str(uuid.uuid4()), "practitioner")
        token = Caller(issuer, "records-api").headers(principal)
        file_id = uuid.uuid4()
        async with service_app("sharing") as client:
            access = await client.get(f"/internal/access/{file_id}/{principal.account_id}",
                                      headers=token)
            activate = await client.post(f"/internal/files/{file_id}/activate", headers=token)
            grant = await client.get(f"/internal/grants/{uuid.uuid4()}", headers=token)
        assert access.status_code == 404  # authenticated, and no such file
        assert activate.status_code == 401
        assert grant.status_code == 401
