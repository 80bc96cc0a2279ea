"""The kms's access cache (``ecrin_platform.access``): an answer is reused briefly, and the
sharing service's word that a file's access changed drops it at once (issue 21)."""

from __future__ import annotations

import uuid

import httpx

from ecrin_platform.access import AccessClient

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
            client = AccessClient(http, "http://sharing", "kms", ttl_s=60)
            assert await client.access(FILE, ACCOUNT, "t") is not None
            assert await client.access(OTHER, ACCOUNT, "t") is not None
            revoked = True
            assert await client.access(FILE, ACCOUNT, "t") is not None  # cached
            client.forget_file(FILE)
            assert await client.access(FILE, ACCOUNT, "t") is None
            assert await client.access(OTHER, ACCOUNT, "t") is not None
        assert len(asked) == 3

    async def test_an_answer_in_flight_when_told_is_not_cached(self):
        client: AccessClient | None = None

        def handler(request: httpx.Request) -> httpx.Response:
            assert client is not None
            client.forget_file(FILE)
            return answer(FILE)

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = AccessClient(http, "http://sharing", "kms", ttl_s=60)
            await client.access(FILE, ACCOUNT, "t")
            assert client._cache == {}
