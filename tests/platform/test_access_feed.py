"""The kms's side of the access-change feed (``ecrin_platform.access_feed``): a stream of
the sharing service's changes, opened with a request's token on the first question, that
drops cached answers about the files it names, and forgets every answer whenever a stream
is not (or no longer) following. (``tests/sharing/test_access_feed.py`` has the sharing
service's side, ``tests/e2e/test_kms_feed.py`` the whole path.)"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ecrin_platform import access_feed
from ecrin_platform.access import AccessClient, SharingUnavailable

FILE, OTHER, ACCOUNT = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def answer(file_id: uuid.UUID) -> httpx.Response:
    return httpx.Response(200, json={"file_id": str(file_id), "account_id": str(ACCOUNT),
                                     "relationship": "care_team",
                                     "scopes": {"clinical": "read"}, "state": "active"})


class Feed(httpx.AsyncByteStream):
    """What the sharing service streams: lines put in a queue, the end as None."""

    def __init__(self) -> None:
        self.lines: asyncio.Queue[bytes | None] = asyncio.Queue()

    def send(self, message: object) -> None:
        self.lines.put_nowait(json.dumps(message).encode() + b"\n")

    def end(self) -> None:
        self.lines.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (line := await self.lines.get()) is not None:
            yield line


class Sharing:
    """A sharing service: access answers (counted), and one feed per stream opened."""

    def __init__(self, feed_status: int = 200) -> None:
        self.feed_status = feed_status
        self.feeds: list[Feed] = []
        self.streams: list[httpx.Request] = []
        self.asked = 0
        self.revoked: set[uuid.UUID] = set()

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == access_feed.PATH:
            self.streams.append(request)
            if self.feed_status != 200:
                return httpx.Response(self.feed_status)
            self.feeds.append(Feed())
            return httpx.Response(200, stream=self.feeds[-1])
        self.asked += 1
        file_id = uuid.UUID(request.url.path.split("/")[3])
        return httpx.Response(404) if file_id in self.revoked else answer(file_id)


def kms_client(http: httpx.AsyncClient, **options: Any) -> AccessClient:
    """The kms's access client, following the feed of the sharing service at http://sharing."""
    return AccessClient(http, "http://sharing", caller="kms", ttl_s=60, follow_changes=True,
                        **options)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def following(client: AccessClient, sharing: Sharing) -> Feed:
    """Asks once (which opens the stream), and waits until it is ready."""
    await client.access(OTHER, ACCOUNT, token="token-1")
    await settle()
    sharing.feeds[-1].send({"ready": True})
    await settle()
    assert client.feed is not None and client.feed.live
    return sharing.feeds[-1]


class TestFollowing:
    async def test_a_change_on_the_feed_drops_the_cached_answer_at_once(self):
        sharing = Sharing()
        async with httpx.AsyncClient(transport=httpx.MockTransport(sharing.handler)) as http:
            client = kms_client(http)
            feed = await following(client, sharing)
            assert await client.access(OTHER, ACCOUNT, token="token-2") is not None
            assert await client.access(FILE, ACCOUNT, token="token-2") is not None
            sharing.revoked.add(FILE)
            assert await client.access(FILE, ACCOUNT, token="token-2") is not None  # cached
            feed.send({})  # a keep-alive changes nothing
            await settle()
            assert await client.access(FILE, ACCOUNT, token="token-2") is not None
            feed.send({"file_ids": [str(FILE)]})
            await settle()
            assert await client.access(FILE, ACCOUNT, token="token-2") is None
            # the other file's answer is still cached
            asked = sharing.asked
            assert await client.access(OTHER, ACCOUNT, token="token-2") is not None
            assert sharing.asked == asked
            assert len(sharing.streams) == 1  # one stream, however many questions
            await client.feed.aclose()

    async def test_the_stream_carries_the_first_questions_token_and_the_caller(self):
        sharing = Sharing()
        async with httpx.AsyncClient(transport=httpx.MockTransport(sharing.handler)) as http:
            client = AccessClient(http, "http://sharing/", caller="kms", ttl_s=60,
                                  follow_changes=True)
            await following(client, sharing)
            stream = sharing.streams[0]
            assert str(stream.url) == "http://sharing/internal/access-changes"
            assert stream.headers["x-ecrin-internal-token"] == "token-1"
            assert stream.headers["x-ecrin-caller"] == "kms"
            assert client.feed is not None
            await client.feed.aclose()

    async def test_ready_forgets_what_was_cached_before_the_subscription(self):
        sharing = Sharing()
        async with httpx.AsyncClient(transport=httpx.MockTransport(sharing.handler)) as http:
            client = kms_client(http)
            assert await client.access(FILE, ACCOUNT, token="t") is not None
            await settle()
            # revoked between that answer and the subscription: the feed will not say it
            sharing.revoked.add(FILE)
            sharing.feeds[-1].send({"ready": True})
            await settle()
            assert await client.access(FILE, ACCOUNT, token="t") is None
            assert client.feed is not None
            await client.feed.aclose()

    async def test_an_answer_asked_across_the_ready_line_is_not_cached(self):
        sharing = Sharing()
        gate = asyncio.Event()

        async def slow(request: httpx.Request) -> httpx.Response:
            if request.url.path != access_feed.PATH and not gate.is_set():
                await gate.wait()
            return sharing.handler(request)

        async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as http:
            client = kms_client(http)
            asking = asyncio.create_task(client.access(FILE, ACCOUNT, token="t"))
            await settle()
            sharing.feeds[-1].send({"ready": True})
            await settle()
            gate.set()
            assert await asking is not None
            sharing.revoked.add(FILE)  # the answer above was not kept
            assert await client.access(FILE, ACCOUNT, token="t") is None
            assert client.feed is not None
            await client.feed.aclose()


class TestLosingTheStream:
    async def test_its_end_forgets_everything_and_the_next_question_opens_another(self):
        sharing = Sharing()
        now = [0.0]
        async with httpx.AsyncClient(transport=httpx.MockTransport(sharing.handler)) as http:
            client = kms_client(http, clock=lambda: now[0])
            feed = await following(client, sharing)
            assert await client.access(FILE, ACCOUNT, token="t") is not None
            sharing.revoked.add(FILE)
            feed.end()  # the change came after the stream: no notice of it
            await settle()
            assert client.feed is not None and not client.feed.live
            assert await client.access(FILE, ACCOUNT, token="t") is None  # asked again
            assert len(sharing.streams) == 1  # not before RETRY_S
            now[0] += access_feed.RETRY_S
            await client.access(OTHER, ACCOUNT, token="t")
            await settle()
            assert len(sharing.streams) == 2
            await client.feed.aclose()

    async def test_a_refused_or_broken_stream_leaves_the_cache_to_its_lifetime(self):
        for status in (401, 404, 503):
            sharing = Sharing(feed_status=status)
            async with httpx.AsyncClient(
                    transport=httpx.MockTransport(sharing.handler)) as http:
                client = kms_client(http)
                await client.access(FILE, ACCOUNT, token="t")
                await settle()
                assert client.feed is not None and not client.feed.live
                assert len(sharing.streams) == 1
                await client.access(OTHER, ACCOUNT, token="t")
                assert len(sharing.streams) == 1  # not once per question

    async def test_a_malformed_line_ends_the_stream(self):
        for line in (b"[1]\n", b"not json\n", b'{"file_ids": "x"}\n',
                     b'{"file_ids": ["not-a-uuid"]}\n',
                     b"x" * (access_feed.MAX_LINE + 1)):
            sharing = Sharing()
            async with httpx.AsyncClient(
                    transport=httpx.MockTransport(sharing.handler)) as http:
                client = kms_client(http)
                feed = await following(client, sharing)
                assert await client.access(FILE, ACCOUNT, token="t") is not None
                sharing.revoked.add(FILE)
                feed.lines.put_nowait(line)
                await settle()
                assert not client.feed.live, line[:20]
                assert await client.access(FILE, ACCOUNT, token="t") is None, line[:20]

    async def test_without_the_setting_no_stream_is_opened(self):
        sharing = Sharing()
        async with httpx.AsyncClient(transport=httpx.MockTransport(sharing.handler)) as http:
            client = AccessClient(http, "http://sharing", caller="kms", ttl_s=60)
            await client.access(FILE, ACCOUNT, token="t")
            await settle()
            assert client.feed is None and sharing.streams == []


class TestLongerWhileFollowing:
    """``live_ttl_s``: an answer granting access, asked while the feed is live, is kept
    that long; a refusal, an answer asked without a live feed and an answer about a grant
    that ends sooner are not."""

    @staticmethod
    def client(http: httpx.AsyncClient, now: list[float]) -> AccessClient:
        return AccessClient(http, "http://sharing", caller="records-api", ttl_s=0.5,
                            follow_changes=True, live_ttl_s=4.0, clock=lambda: now[0])

    async def test_a_grant_is_kept_for_the_live_lifetime_and_a_refusal_is_not(self):
        sharing, now = Sharing(), [0.0]
        async with httpx.AsyncClient(transport=httpx.MockTransport(sharing.handler)) as http:
            client = self.client(http, now)
            await following(client, sharing)
            sharing.revoked.add(OTHER)
            assert await client.access(FILE, ACCOUNT, token="t") is not None
            assert await client.access(OTHER, ACCOUNT, token="t") is None
            asked = sharing.asked
            now[0] += 3.9
            assert await client.access(FILE, ACCOUNT, token="t") is not None
            assert sharing.asked == asked  # still the answer kept at 0
            assert await client.access(OTHER, ACCOUNT, token="t") is None
            assert sharing.asked == asked + 1  # the refusal lived 0.5 s
            now[0] += 0.2
            await client.access(FILE, ACCOUNT, token="t")
            assert sharing.asked == asked + 2
            assert client.feed is not None
            await client.feed.aclose()

    async def test_without_a_live_feed_the_short_lifetime_holds(self):
        sharing, now = Sharing(feed_status=503), [0.0]
        async with httpx.AsyncClient(transport=httpx.MockTransport(sharing.handler)) as http:
            client = self.client(http, now)
            assert await client.access(FILE, ACCOUNT, token="t") is not None
            await settle()
            assert client.feed is not None and not client.feed.live
            asked = sharing.asked
            now[0] += 0.6
            sharing.revoked.add(FILE)
            assert await client.access(FILE, ACCOUNT, token="t") is None
            assert sharing.asked == asked + 1

    async def test_never_past_the_end_of_the_grant(self):
        sharing, now = Sharing(), [0.0]

        def ending(request: httpx.Request) -> httpx.Response:
            response = sharing.handler(request)
            if request.url.path == access_feed.PATH or response.status_code != 200:
                return response
            return httpx.Response(200, json={**json.loads(response.content),
                                             "valid_for_s": 1.5})

        async with httpx.AsyncClient(transport=httpx.MockTransport(ending)) as http:
            client = self.client(http, now)
            await following(client, sharing)
            assert await client.access(FILE, ACCOUNT, token="t") is not None
            asked = sharing.asked
            now[0] += 1.4
            await client.access(FILE, ACCOUNT, token="t")
            assert sharing.asked == asked
            now[0] += 0.2
            sharing.revoked.add(FILE)  # the grant ended: sharing says so when asked
            assert await client.access(FILE, ACCOUNT, token="t") is None
            assert client.feed is not None
            await client.feed.aclose()

    async def test_losing_the_stream_drops_the_long_lived_answers(self):
        sharing, now = Sharing(), [0.0]
        async with httpx.AsyncClient(transport=httpx.MockTransport(sharing.handler)) as http:
            client = self.client(http, now)
            feed = await following(client, sharing)
            assert await client.access(FILE, ACCOUNT, token="t") is not None
            sharing.revoked.add(FILE)  # and its notice lost with the stream
            feed.end()
            await settle()
            now[0] += 0.1
            assert await client.access(FILE, ACCOUNT, token="t") is None
            assert client.feed is not None
            await client.feed.aclose()

    @pytest.mark.parametrize("valid_for", ["3", True, [], float("nan"), 10 ** 400])
    async def test_a_malformed_valid_for_is_a_malformed_answer(self, valid_for):
        def handler(request: httpx.Request) -> httpx.Response:
            body = {**json.loads(answer(FILE).content), "valid_for_s": valid_for}
            return httpx.Response(200, content=json.dumps(body).encode())

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = AccessClient(http, "http://sharing", caller="kms", ttl_s=0.5)
            with pytest.raises(SharingUnavailable):
                await client.access(FILE, ACCOUNT, token="t")
