"""404 for anyone without access (never a revealing 403), 403 for read-only writers,
and the sharing client: forwarded token, short cache, unreachable -> 503."""

from __future__ import annotations

import uuid

import httpx
import pytest

from ecrin_platform.access import AccessClient, SharingUnavailable
from ecrin_platform.tokens import Principal
from records_api.app import create_app
from records_api.settings import Settings
from tests.records_api.conftest import Actor, Practice, b64
from tests.support.apps import AUDIT_KEYS, Caller, running


def every_route(practice: Practice, record_id: uuid.UUID, new_version: dict, create: dict,
                rekey: dict) -> list[tuple[str, str, dict]]:
    r = f"/v1/records/{record_id}"
    octet = {"content-type": "application/octet-stream"}
    return [
        ("GET", r, {}),
        ("GET", f"{r}/versions", {}),
        ("GET", f"{r}/versions/1", {}),
        ("GET", f"{r}/versions/1/content", {}),
        ("PUT", f"{r}/versions/2/content", {"content": b"\0" * 10, "headers": octet}),
        ("POST", f"{r}/versions", {"json": new_version, "headers": {"If-Match": '"v1"'}}),
        ("DELETE", r, {"headers": {"If-Match": '"v1"'}}),
        ("GET", "/v1/records", {"params": {"file_id": str(practice.file_id)}}),
        ("POST", "/v1/records", {"json": create, "headers": {"Idempotency-Key": "k" * 16}}),
        ("POST", "/v1/records/rekey", {"json": rekey}),
    ]


async def call(practice: Practice, actor: Actor, method: str, url: str,
               kwargs: dict) -> httpx.Response:
    kwargs = dict(kwargs)
    headers = practice.headers(actor, **kwargs.pop("headers", {}))
    return await practice.client.request(method, url, headers=headers, **kwargs)


@pytest.fixture
async def scenario(practice: Practice):
    """A committed clinical record, a pending version 2, and bodies for every write."""
    record = await practice.add(b"bilan", scope="clinical")
    rid = record.header.record_id
    v2 = practice.encrypt(b"v2", record_id=rid, version=2)
    new_version = {k: v for k, v in Practice.body(v2).items()
                   if k in ("header", "metadata_ciphertext", "content_length")}
    created = await practice.client.post(f"/v1/records/{rid}/versions", json=new_version,
                                         headers=practice.headers(**{"If-Match": '"v1"'}))
    assert created.status_code == 201
    create = Practice.body(practice.encrypt(b"new"))
    rekey = {"items": [{"record_id": str(rid), "version": 1,
                        "header": b64(record.header.to_bytes())}]}
    return rid, new_version, create, rekey


class TestNoAccessIs404:
    async def test_a_stranger_gets_404_on_every_route(self, practice: Practice, scenario):
        stranger = practice.actor()
        for method, url, kwargs in every_route(practice, *scenario):
            response = await call(practice, stranger, method, url, kwargs)
            assert response.status_code == 404, (method, url, response.text)
            assert response.headers["cache-control"] == "no-store"

    async def test_a_secretary_gets_404_for_clinical_records(self, practice: Practice, scenario):
        secretary = practice.actor("secretary")
        practice.sharing.grant(practice.file_id, secretary.id, "secretary",
                               administrative="append")
        for method, url, kwargs in every_route(practice, *scenario):
            if url == "/v1/records" and method == "GET":
                response = await call(practice, secretary, method, url, kwargs)
                assert response.status_code == 200 and response.json()["items"] == []
                continue
            response = await call(practice, secretary, method, url, kwargs)
            assert response.status_code == 404, (method, url, response.text)

    async def test_a_revoked_member_gets_404(self, practice: Practice, scenario):
        colleague = practice.actor()
        practice.sharing.grant(practice.file_id, colleague.id, "care_team", clinical="read")
        url = f"/v1/records/{scenario[0]}"
        assert (await call(practice, colleague, "GET", url, {})).status_code == 200
        practice.sharing.revoke(practice.file_id, colleague.id)
        assert (await call(practice, colleague, "GET", url, {})).status_code == 404

    async def test_unknown_ids_are_404_too(self, practice: Practice):
        response = await practice.client.get(f"/v1/records/{uuid.uuid4()}/versions/1/content",
                                             headers=practice.headers())
        assert response.status_code == 404


class TestReadOnlyIs403OnWrites:
    async def test_read_only_may_read_but_not_write(self, practice: Practice, scenario):
        patient = practice.actor("patient")
        practice.sharing.grant(practice.file_id, patient.id, "patient", clinical="read")
        for method, url, kwargs in every_route(practice, *scenario):
            response = await call(practice, patient, method, url, kwargs)
            if method == "GET":
                assert response.status_code == 200, (method, url, response.text)
            else:
                assert response.status_code == 403, (method, url, response.text)
                assert response.json()["type"].endswith("/read-only-scope")


def sharing_transport(answers: list[httpx.Response], seen: list[httpx.Request]):
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    return httpx.MockTransport(handler)


def records_client(http: httpx.AsyncClient, base_url: str, **kwargs) -> AccessClient:
    """The records API's access client, as its ``create_app`` builds it."""
    return AccessClient(http, base_url, caller="records-api", **kwargs)


class TestAccessClient:
    file_id = uuid.uuid4()
    account_id = uuid.uuid4()

    def grant(self) -> httpx.Response:
        return httpx.Response(200, json={
            "file_id": str(self.file_id), "account_id": str(self.account_id),
            "relationship": "secretary", "scopes": {"administrative": "append"}})

    async def test_asks_sharing_with_the_forwarded_token_and_caches_briefly(self):
        seen: list[httpx.Request] = []
        now = [100.0]
        answers = [self.grant(), httpx.Response(404)]
        async with httpx.AsyncClient(transport=sharing_transport(answers, seen)) as http:
            client = records_client(http, "http://sharing:8003/", ttl_s=2.0, clock=lambda: now[0])
            access = await client.access(self.file_id, self.account_id, token="tok",
                                         request_id="req-12345678")
            assert access is not None and access.relationship == "secretary"
            assert access.can_append("administrative") and not access.can_read("clinical")
            now[0] += 1.9
            assert await client.access(self.file_id, self.account_id, token="tok") == access
            assert len(seen) == 1
            now[0] += 0.2  # past the TTL: a revocation is seen
            assert await client.access(self.file_id, self.account_id, token="tok") is None
        request = seen[0]
        assert request.url == f"http://sharing:8003/internal/access/{self.file_id}/{self.account_id}"
        assert request.headers["x-ecrin-internal-token"] == "tok"
        assert request.headers["x-ecrin-caller"] == "records-api"
        assert request.headers["x-request-id"] == "req-12345678"

    async def test_key_versions_are_kept_and_fresh_asks_past_the_cache(self):
        seen: list[httpx.Request] = []
        body = self.grant().json()
        answers = [httpx.Response(200, json={**body, "key_versions": {"administrative": 2}}),
                   httpx.Response(200, json={**body, "key_versions": {"administrative": 3}})]
        async with httpx.AsyncClient(transport=sharing_transport(answers, seen)) as http:
            client = records_client(http, "http://sharing", ttl_s=2.0, clock=lambda: 0.0)
            first = await client.access(self.file_id, self.account_id, token="t")
            assert first is not None and first.key_version("administrative") == 2
            assert first.key_version("clinical") == 1  # missing: version 1
            cached = await client.access(self.file_id, self.account_id, token="t")
            assert cached == first and len(seen) == 1
            fresh = await client.access(self.file_id, self.account_id, token="t", fresh=True)
            assert fresh is not None and fresh.key_version("administrative") == 3
            # The fresh answer is what the cache serves from now on.
            again = await client.access(self.file_id, self.account_id, token="t")
            assert again == fresh and len(seen) == 2

    async def test_a_change_told_by_sharing_drops_the_files_answers(self):
        seen: list[httpx.Request] = []
        body = self.grant().json()
        other = uuid.uuid4()
        answers = [httpx.Response(200, json=body),
                   httpx.Response(200, json={**body, "file_id": str(other)}),
                   httpx.Response(404)]
        async with httpx.AsyncClient(transport=sharing_transport(answers, seen)) as http:
            client = records_client(http, "http://sharing", ttl_s=2.0, clock=lambda: 0.0)
            assert await client.access(self.file_id, self.account_id, token="t") is not None
            assert await client.access(other, self.account_id, token="t") is not None
            client.forget_file(self.file_id)  # the grant was revoked
            assert await client.access(self.file_id, self.account_id, token="t") is None
            # Another file's answer stays cached.
            assert await client.access(other, self.account_id, token="t") is not None
            assert len(seen) == 3

    async def test_an_answer_asked_before_the_change_is_not_cached(self):
        body = self.grant().json()
        client: AccessClient | None = None

        async def answer(request: httpx.Request) -> httpx.Response:
            assert client is not None
            client.forget_file(self.file_id)  # told while this answer was in flight
            return httpx.Response(200, json=body)

        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
            client = records_client(http, "http://sharing", ttl_s=2.0, clock=lambda: 0.0)
            await client.access(self.file_id, self.account_id, token="t")
            await client.access(self.file_id, self.account_id, token="t")
            assert client._cache == {}

    async def test_pending_rotations_are_kept(self):
        body = {**self.grant().json(), "pending_rotations": ["shared", "billing", 3]}
        async with httpx.AsyncClient(transport=sharing_transport(
                [httpx.Response(200, json=body)], [])) as http:
            client = records_client(http, "http://sharing", ttl_s=2.0)
            access = await client.access(self.file_id, self.account_id, token="t")
        assert access is not None and access.pending_rotations == frozenset({"shared"})

    @pytest.mark.parametrize(("key_versions", "expected"), [
        (None, {}),
        ("3", {}),
        ([["clinical", 2]], {}),
        ({"clinical": 2, "shared": 1}, {"clinical": 2, "shared": 1}),
        ({"clinical": "2", "shared": 2.0, "administrative": True}, {}),
        ({"clinical": 0, "shared": -1, "administrative": 1 << 32}, {}),
        ({"clinical": 0xFFFFFFFF, "billing": 4}, {"clinical": 0xFFFFFFFF}),
    ])
    async def test_malformed_key_versions_are_ignored(self, key_versions, expected):
        body = self.grant().json()
        if key_versions is not None:
            body["key_versions"] = key_versions
        answers = [httpx.Response(200, json=body)]
        async with httpx.AsyncClient(transport=sharing_transport(answers, [])) as http:
            client = records_client(http, "http://sharing", ttl_s=2.0)
            access = await client.access(self.file_id, self.account_id, token="t")
        assert access is not None and access.can_append("administrative")
        assert dict(access.key_versions) == expected

    @pytest.mark.parametrize("answer", [httpx.Response(500), httpx.Response(401),
                                        httpx.Response(200, json={"nope": 1})])
    async def test_an_odd_answer_is_unavailable(self, answer):
        async with httpx.AsyncClient(transport=sharing_transport([answer], [])) as http:
            client = records_client(http, "http://sharing", ttl_s=2.0)
            with pytest.raises(SharingUnavailable):
                await client.access(self.file_id, self.account_id, token="t")


class TestAccessChangedRoute:
    async def test_only_the_sharing_service_tells_and_the_cache_is_dropped(
            self, practice: Practice, issuer):
        client: AccessClient = practice.app.state.access_client
        forgotten: list[uuid.UUID] = []
        client.forget_file = forgotten.append  # type: ignore[method-assign,assignment]  # spy
        body = {"file_ids": [str(practice.file_id)]}
        as_gateway = await practice.client.post("/internal/access-changed", json=body,
                                                headers=practice.headers())
        assert as_gateway.status_code == 204  # the records API's own audience
        from_sharing = Caller(issuer, "sharing").headers(Principal(str(practice.owner.id),
                                                                   "practitioner"))
        told = await practice.client.post("/internal/access-changed", json=body,
                                          headers=from_sharing)
        assert told.status_code == 204
        assert forgotten == [practice.file_id, practice.file_id]
        from_gateway = Caller(issuer, "gateway").headers(Principal(str(practice.owner.id),
                                                                   "practitioner"))
        refused = await practice.client.post("/internal/access-changed", json=body,
                                             headers=from_gateway)
        assert refused.status_code == 401
        assert (await practice.client.post("/internal/access-changed", json={"file_ids": []},
                                           headers=from_sharing)).status_code == 422


class TestSharingUnreachable:
    async def test_is_503_with_retry_after(self, database_url_for, internal_keys, issuer):
        settings = Settings(database_url=database_url_for("records-api"),
                            internal_token_public_key=internal_keys[1].decode(),
                            audit_signing_key=AUDIT_KEYS["records-api"].decode(),
                            sharing_url="http://127.0.0.1:9", purge_interval_s=0)
        async with running(create_app(settings), rollback=False) as client:
            headers = Caller(issuer, "records-api").headers(Principal(str(uuid.uuid4()), "x"))
            response = await client.get(f"/v1/records/{uuid.uuid4()}", headers=headers)
            assert response.status_code == 404  # unknown record: sharing is not even asked
            response = await client.get("/v1/records", headers=headers,
                                        params={"file_id": str(uuid.uuid4())})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2"
        assert response.headers["content-type"] == "application/problem+json"
