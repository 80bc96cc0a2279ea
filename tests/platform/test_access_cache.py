"""The access cache the kms and the records API share (``ecrin_platform.access``): an answer
is reused briefly, the sharing service's word that a file's access changed drops it at once
(issue 21), and an answer that is not what was asked is a 503, never a decision.
(``tests/records_api/test_access.py`` has the records API's side.)"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from ecrin_platform.access import AccessClient, SharingUnavailable

FILE, OTHER, ACCOUNT = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def answer(file_id: uuid.UUID) -> httpx.Response:
    return httpx.Response(200, json={"file_id": str(file_id), "account_id": str(ACCOUNT),
                                     "relationship": "care_team",
                                     "scopes": {"clinical": "read"}, "state": "active"})


class TestForgetFile:
    async def test_the_files_answers_are_dropped_and_no_other(self):
        asked: list[str] = []
        revoked = False

        def handler(request: httpx.Request) -> httpx.Response:
            asked.append(request.url.path)
            file_id = uuid.UUID(request.url.path.split("/")[3])
            return httpx.Response(404) if revoked and file_id == FILE else answer(file_id)

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = AccessClient(http, "http://sharing", caller="kms", ttl_s=60)
            assert await client.access(FILE, ACCOUNT, token="t") is not None
            assert await client.access(OTHER, ACCOUNT, token="t") is not None
            revoked = True
            assert await client.access(FILE, ACCOUNT, token="t") is not None  # cached
            client.forget_file(FILE)
            assert await client.access(FILE, ACCOUNT, token="t") is None
            assert await client.access(OTHER, ACCOUNT, token="t") is not None
        assert len(asked) == 3

    async def test_an_answer_in_flight_when_told_is_not_cached(self):
        client: AccessClient | None = None

        def handler(request: httpx.Request) -> httpx.Response:
            assert client is not None
            client.forget_file(FILE)
            return answer(FILE)

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = AccessClient(http, "http://sharing", caller="kms", ttl_s=60)
            await client.access(FILE, ACCOUNT, token="t")
            assert client._cache == {}


def client_over(handler, **kwargs) -> tuple[httpx.AsyncClient, AccessClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return http, AccessClient(http, "http://sharing", caller="kms", **{"ttl_s": 60, **kwargs})


class TestAnswersAreReadStrictly:
    @pytest.mark.parametrize("response", [
        answer(OTHER),  # about another file than the one asked
        httpx.Response(200, json={**answer(FILE).json(), "account_id": str(uuid.uuid4())}),
        httpx.Response(200, content=b"<html>proxy error</html>"),  # not JSON
        httpx.Response(200, content=b"null"), httpx.Response(200),  # null, empty
        httpx.Response(200, json=[]),
        httpx.Response(200, json={**answer(FILE).json(), "scopes": ["clinical"]}),
        httpx.Response(200, json={k: v for k, v in answer(FILE).json().items()
                                  if k != "scopes"}),
        httpx.Response(200, json={**answer(FILE).json(), "relationship": None}),
        httpx.Response(500), httpx.Response(401),
    ])
    async def test_an_odd_answer_is_503_and_not_cached(self, response: httpx.Response):
        http, client = client_over(lambda request: response)
        async with http:
            with pytest.raises(SharingUnavailable) as raised:
                await client.access(FILE, ACCOUNT, token="t")
        assert raised.value.status == 503 and raised.value.headers == {"Retry-After": "2"}
        assert client._cache == {}

    async def test_unknown_scopes_and_rights_are_dropped(self):
        body = {**answer(FILE).json(), "scopes": {"clinical": "write", "shared": "append",
                                                  "billing": "read"}}
        http, client = client_over(lambda request: httpx.Response(200, json=body))
        async with http:
            access = await client.access(FILE, ACCOUNT, token="t")
        assert access is not None and dict(access.scopes) == {"shared": "append"}
        assert not access.can_read("clinical") and "clinical" not in access.scopes
        assert access.state == "active" and access.readable_scopes() == ["shared"]

    async def test_the_state_is_kept(self):
        body = {**answer(FILE).json(), "state": "pending"}
        http, client = client_over(lambda request: httpx.Response(200, json=body))
        async with http:
            access = await client.access(FILE, ACCOUNT, token="t")
        assert access is not None and access.state == "pending"


class TestBatch:
    async def test_asks_only_what_is_not_cached_and_caches_refusals(self):
        asked: list[list[str]] = []
        third = uuid.uuid4()

        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/batch"):
                files = json.loads(request.content)["file_ids"]
                asked.append(files)
                return httpx.Response(200, json={"items": [
                    answer(uuid.UUID(f)).json() for f in files if f != str(third)]})
            asked.append([request.url.path.split("/")[3]])
            return answer(FILE)

        http, client = client_over(handler)
        async with http:
            assert await client.access(FILE, ACCOUNT, token="t") is not None
            got = await client.access_many([FILE, OTHER, third, OTHER], ACCOUNT, token="t")
            assert set(got) == {FILE, OTHER}
            again = await client.access_many([FILE, OTHER, third], ACCOUNT, token="t")
            assert again == got
            assert await client.access(third, ACCOUNT, token="t") is None  # cached refusal
        assert asked == [[str(FILE)], [str(OTHER), str(third)]]

    async def test_a_404_is_no_access_to_any(self):
        http, client = client_over(lambda request: httpx.Response(404))
        async with http:
            assert await client.access_many([FILE, OTHER], ACCOUNT, token="t") == {}
            assert await client.access(FILE, ACCOUNT, token="t") is None
        assert len(client._cache) == 2

    @pytest.mark.parametrize("body", [
        {"items": [answer(uuid.uuid4()).json()]},  # a file not asked
        {"items": [{**answer(FILE).json(), "account_id": str(uuid.uuid4())}]},
        {"items": {"file_id": str(FILE)}}, {"nope": []}, [],
        {"items": [{**answer(FILE).json(), "scopes": "clinical"}]},
    ])
    async def test_an_odd_answer_is_503(self, body):
        http, client = client_over(lambda request: httpx.Response(200, json=body))
        async with http:
            with pytest.raises(SharingUnavailable):
                await client.access_many([FILE, OTHER], ACCOUNT, token="t")
        assert client._cache == {}

    async def test_an_answer_in_flight_when_told_is_not_cached(self):
        client: AccessClient | None = None

        def handler(request: httpx.Request) -> httpx.Response:
            assert client is not None
            client.forget_file(FILE)
            return httpx.Response(200, json={"items": [answer(FILE).json(),
                                                       answer(OTHER).json()]})

        http, client = client_over(handler)
        async with http:
            assert set(await client.access_many([FILE, OTHER], ACCOUNT, token="t")) == {
                FILE, OTHER}
        assert list(client._cache) == [(OTHER, ACCOUNT)]


class TestCacheBounds:
    async def test_the_ttl_runs_from_the_question(self):
        now = [10.0]

        def handler(request: httpx.Request) -> httpx.Response:
            now[0] += 0.4  # a slow answer
            return answer(FILE)

        http, client = client_over(handler, ttl_s=0.5, clock=lambda: now[0])
        async with http:
            await client.access(FILE, ACCOUNT, token="t")
            now[0] += 0.2  # 0.6 s after the question, 0.2 s after the answer
            await client.access(FILE, ACCOUNT, token="t")
        assert now[0] == 10.0 + 0.4 + 0.2 + 0.4  # asked twice

    async def test_no_ttl_caches_nothing(self):
        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/batch"):
                return httpx.Response(200, json={"items": [answer(OTHER).json()]})
            return answer(FILE)

        http, client = client_over(handler, ttl_s=0)
        async with http:
            await client.access(FILE, ACCOUNT, token="t")
            assert set(await client.access_many([OTHER], ACCOUNT, token="t")) == {OTHER}
        assert client._cache == {}

    async def test_the_oldest_answers_go_first(self):
        http, client = client_over(lambda request: answer(
            uuid.UUID(request.url.path.split("/")[3])))
        client.MAX_ENTRIES = 2
        files = [uuid.uuid4() for _ in range(3)]
        async with http:
            for file_id in files:
                await client.access(file_id, ACCOUNT, token="t")
        assert list(client._cache) == [(files[1], ACCOUNT), (files[2], ACCOUNT)]
        assert set(client._accounts) == set(files[1:])

    async def test_bounding_the_change_counts_keeps_answers_in_flight_out(self):
        """The counts of changes are emptied when they grow past ``MAX_ENTRIES``; an answer
        asked before must not then match a count that started again from nothing."""
        client: AccessClient | None = None

        def handler(request: httpx.Request) -> httpx.Response:
            assert client is not None
            client.forget_file(FILE)  # told while the answer is in flight...
            for _ in range(3):  # ...then enough other changes to empty the counts
                client.forget_file(uuid.uuid4())
            return answer(FILE)

        http, client = client_over(handler)
        client.MAX_ENTRIES = 2
        async with http:
            assert await client.access(FILE, ACCOUNT, token="t") is not None
        assert client._cache == {}

    async def test_forgetting_one_account_keeps_its_answer_in_flight_out(self):
        client: AccessClient | None = None

        def handler(request: httpx.Request) -> httpx.Response:
            assert client is not None
            client.forget(FILE, ACCOUNT)  # the kms just activated the file
            return answer(FILE)

        http, client = client_over(handler)
        async with http:
            await client.access(FILE, ACCOUNT, token="t")
        assert client._cache == {} and client._accounts == {}


class TestOtherCalls:
    """The kms's other calls to the sharing service go through the same client."""

    async def test_the_token_the_caller_and_the_request_id_are_sent(self):
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(204)

        http, client = client_over(handler)
        async with http:
            response = await client.send("POST", "/internal/grants/g/activate", "tok",
                                         request_id="req-1", json={"a": 1})
        assert response.status_code == 204
        assert seen[0].url == "http://sharing/internal/grants/g/activate"
        assert seen[0].headers["x-ecrin-internal-token"] == "tok"
        assert seen[0].headers["x-ecrin-caller"] == "kms"
        assert seen[0].headers["x-request-id"] == "req-1"
        assert json.loads(seen[0].content) == {"a": 1}

    async def test_ask_is_the_json_none_for_404_and_503_otherwise(self):
        answers = [httpx.Response(200, json={"members": []}), httpx.Response(404),
                   httpx.Response(502)]
        http, client = client_over(lambda request: answers.pop(0))
        async with http:
            assert await client.ask("GET", "/internal/files/f/members", "t") == {"members": []}
            assert await client.ask("GET", "/internal/files/f/members", "t") is None
            with pytest.raises(SharingUnavailable):
                await client.ask("GET", "/internal/files/f/members", "t")

    async def test_unreachable_is_503(self):
        def handler(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        http, client = client_over(handler)
        async with http:
            with pytest.raises(SharingUnavailable):
                await client.send("POST", "/internal/files/f/activate", "t")
            with pytest.raises(SharingUnavailable):
                await client.access(FILE, ACCOUNT, token="t")
            with pytest.raises(SharingUnavailable):
                await client.access_many([FILE], ACCOUNT, token="t")
