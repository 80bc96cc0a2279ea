"""The sharing service's side of the access-change feed (``sharing.feed``): who may open it,
what a stream says and when it ends, and, on PostgreSQL, changes made through one replica
reaching the subscribers of every other by NOTIFY, and a lost listening connection ending
the streams that may have missed a change. (``tests/platform/test_access_feed.py`` has the
kms's side, ``tests/e2e/test_kms_feed.py`` the whole path.)"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, text

from ecrin_platform.db import create_engine
from ecrin_platform.tokens import MAX_LIFETIME_S, Principal
from sharing import feed as feed_module
from sharing.feed import AccessFeed, FeedUnavailable, PostgresFeed, feed_for
from sharing.models import Grant, PatientFile
from tests.support.apps import Caller, build_app, running
from tests.support.databases import POSTGRES, needs_postgres

pytestmark = pytest.mark.timeout(60)

FILES = [str(uuid.uuid4()) for _ in range(3)]


async def lines_of(feed: AccessFeed, queue: asyncio.Queue) -> list[object]:
    return [json.loads(line) async for line in feed_module._lines(feed, queue)]


def reading(feed: AccessFeed) -> tuple[asyncio.Task[list[object]], list[object]]:
    """A stream read as StreamingResponse reads it (each line written, then the next):
    the task, and the lines so far."""
    said: list[object] = []

    async def read() -> list[object]:
        async for line in feed_module._lines(feed, feed.subscribe()):
            said.append(json.loads(line))
        return said

    return asyncio.create_task(read()), said


class TestStream:
    async def test_ready_first_then_each_change_then_the_end(self):
        feed = AccessFeed()
        stream, said = reading(feed)
        await asyncio.sleep(0.01)
        await feed.publish([uuid.UUID(FILES[1]), uuid.UUID(FILES[0]), uuid.UUID(FILES[1])])
        feed.end_all()
        assert await stream == [{"ready": True}, {"file_ids": sorted(FILES[:2])}]
        assert feed.subscribers == 0

    async def test_silence_is_kept_alive_and_a_stream_lives_at_most_its_maximum(
            self, monkeypatch):
        monkeypatch.setattr(feed_module, "KEEPALIVE_S", 0.02)
        # a stream outlives its token by no more than a token may live
        assert feed_module.MAX_STREAM_S <= MAX_LIFETIME_S
        monkeypatch.setattr(feed_module, "MAX_STREAM_S", 0.1)
        feed = AccessFeed()
        said = await lines_of(feed, feed.subscribe())
        assert said[0] == {"ready": True} and 2 <= said.count({}) <= 6
        assert said[1:] == [{}] * (len(said) - 1)
        assert feed.subscribers == 0

    async def test_a_subscriber_that_falls_behind_is_ended_not_grown(self, monkeypatch):
        monkeypatch.setattr(feed_module, "QUEUE_SIZE", 3)
        feed = AccessFeed()
        slow, other = feed.subscribe(), feed.subscribe()
        for i in range(3):
            feed.deliver([FILES[i]])
            assert other.get_nowait().file_ids == [FILES[i]]
        feed.deliver([FILES[0]])  # the fourth: slow is 3 behind
        assert feed.subscribers == 1
        # ended at once, its backlog dropped: its reader forgets everything it cached
        assert slow.get_nowait() is None and slow.empty()
        assert other.get_nowait().file_ids == [FILES[0]]

    async def test_publishing_returns_once_every_stream_wrote_the_change(self):
        feed = AccessFeed()
        written: list[bytes] = []

        async def stream() -> None:  # as StreamingResponse reads it: send, then next
            async for line in feed_module._lines(feed, feed.subscribe()):
                written.append(line)

        reading = [asyncio.create_task(stream()) for _ in range(2)]
        await asyncio.sleep(0.01)
        started = time.monotonic()
        await feed.publish([uuid.UUID(FILES[0])])
        assert time.monotonic() - started < feed_module.HANDOVER_S
        assert written.count(b'{"file_ids":["%s"]}\n' % FILES[0].encode()) == 2
        feed.end_all()
        await asyncio.gather(*reading)

    async def test_a_stream_that_does_not_write_holds_one_answer_briefly_then_ends(
            self, monkeypatch):
        monkeypatch.setattr(feed_module, "HANDOVER_S", 0.05)
        feed = AccessFeed()
        queue = feed.subscribe()  # never read
        started = time.monotonic()
        await feed.publish([uuid.UUID(FILES[0])])
        assert 0.04 <= time.monotonic() - started < 1
        # ended (its reader forgets everything when it reads again); the next change
        # does not wait for it
        assert feed.subscribers == 0
        assert queue.get_nowait() is None and queue.empty()
        started = time.monotonic()
        await feed.publish([uuid.UUID(FILES[1])])
        assert time.monotonic() - started < 0.04

    async def test_a_draining_replica_ends_its_streams_and_opens_no_other(self):
        feed = AccessFeed()
        queue = feed.subscribe()
        feed.deliver([FILES[0]])
        feed.drain()
        assert queue.get_nowait() is None
        with pytest.raises(FeedUnavailable):
            feed.subscribe()

    async def test_a_replica_not_listening_refuses_new_streams(self):
        engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none")
        feed = feed_for(engine)  # not started: not listening
        assert isinstance(feed, PostgresFeed) and not feed.listening
        with pytest.raises(FeedUnavailable):
            feed.subscribe()
        await engine.dispose()

    async def test_a_closed_stream_unsubscribes(self):
        feed = AccessFeed()
        stream = feed_module._lines(feed, feed.subscribe())
        assert json.loads(await anext(stream)) == {"ready": True}
        await stream.aclose()
        assert feed.subscribers == 0


class TestRoute:
    async def test_only_a_token_for_the_kms_or_the_records_api_opens_it(
            self, database_url_for, internal_keys, issuer, monkeypatch):
        monkeypatch.setattr(feed_module, "MAX_STREAM_S", 0.05)
        app = build_app("sharing", database_url_for("sharing"), internal_keys)
        principal = Principal(str(uuid.uuid4()), "practitioner")
        async with running(app) as client:
            for follower in ("kms", "records-api"):
                opened = await client.get("/internal/access-changes",
                                          headers=Caller(issuer, follower).headers(principal))
                assert opened.status_code == 200
                assert opened.headers["content-type"] == "application/x-ndjson"
                assert opened.text.splitlines()[0] == '{"ready":true}'
            # a token for another service is not forwarded here; the sharing service's own
            # (the gateway's, for its routes) is not a follower's
            refused = await client.get("/internal/access-changes",
                                       headers=Caller(issuer, "gateway").headers(principal))
            assert refused.status_code == 401
            gateway = await client.get("/internal/access-changes",
                                       headers=Caller(issuer, "sharing").headers(principal))
            assert gateway.status_code == 403
            assert gateway.headers["content-type"] == "application/problem+json"
            assert (await client.get("/internal/access-changes")).status_code == 401
            assert app.state.access_feed.subscribers == 0


    async def test_a_grant_activated_and_a_rotation_stored_are_on_the_feed(
            self, database_url_for, internal_keys, issuer):
        """The records API keeps answers longer while it follows the feed: every change
        its answers hold goes there, a grant's activation (the newest live grant wins, and
        may give less) and a stored rotation's key version included."""
        app = build_app("sharing", database_url_for("sharing"), internal_keys)
        owner, member = uuid.uuid4(), uuid.uuid4()
        file_id, grant_id = uuid.uuid4(), uuid.uuid4()
        kms = Caller(issuer, "kms").headers(Principal(str(owner), "practitioner"))
        async with running(app, rollback=False) as client:
            now = datetime.now(UTC)
            async with app.state.engine.begin() as conn:
                await conn.execute(insert(PatientFile).values(
                    id=file_id, owner_id=owner, state="active", created_at=now,
                    updated_at=now))
                for grant, grantee, relationship, status in (
                        (uuid.uuid4(), owner, "owner", "active"),
                        (grant_id, member, "care_team", "pending")):
                    await conn.execute(insert(Grant).values(
                        id=grant, file_id=file_id, grantee_id=grantee, granter_id=owner,
                        relationship=relationship, scopes={"clinical": "append"},
                        status=status, created_at=now))
            heard: list[list[str]] = []
            queue = app.state.access_feed.subscribe()

            async def stream() -> None:  # what a stream does with each change
                while (change := await queue.get()) is not None:
                    heard.append(change.file_ids)
                    feed_module._release(change)

            reading = asyncio.create_task(stream())
            activated = await client.post(f"/internal/grants/{grant_id}/activate",
                                          headers=kms)
            assert activated.status_code == 204, activated.text
            # written before the answer (on PostgreSQL the NOTIFY's echo may follow)
            assert heard and set(map(tuple, heard)) == {(str(file_id),)}
            await asyncio.sleep(0.3)  # and its echo
            heard.clear()
            rotated = await client.post(f"/internal/rotations/{file_id}/clinical/rotated",
                                        headers=kms, json={"version": 2})
            assert rotated.status_code == 204, rotated.text
            assert heard and set(map(tuple, heard)) == {(str(file_id),)}
            reading.cancel()

    async def test_the_replica_says_whether_it_listens(self, database_url_for, internal_keys,
                                                       backend):
        app = build_app("sharing", database_url_for("sharing"), internal_keys)
        async with running(app):
            def listening() -> float | None:
                return app.state.metrics.registry.get_sample_value(
                    "ecrin_notices_listening",
                    {"service": "sharing", "channel": feed_module.CHANNEL})

            # (SQLite: one process, which hears every change)
            assert listening() == 1.0
            if backend.name == "postgres":
                await app.state.access_feed.stop()
                assert listening() == 0.0


@pytest.fixture
async def two_replicas(database_url_for) -> AsyncIterator[tuple[PostgresFeed, PostgresFeed]]:
    url = database_url_for("sharing")
    engines = [create_engine(url), create_engine(url)]
    one, other = replicas = [feed_for(engine) for engine in engines]
    assert isinstance(one, PostgresFeed) and isinstance(other, PostgresFeed)
    for replica in replicas:
        await replica.start()
    try:
        for _ in range(200):
            if all(r.listening for r in replicas):
                break
            await asyncio.sleep(0.02)
        assert all(r.listening for r in replicas)
        yield one, other
    finally:
        for replica in replicas:
            await replica.stop()
        for engine in engines:
            await engine.dispose()


async def next_of(queue: asyncio.Queue) -> list[str] | None:
    async with asyncio.timeout(5):
        change = await queue.get()
    return None if change is None else change.file_ids


@pytest.mark.postgres
@needs_postgres
@pytest.mark.parametrize("backend", [POSTGRES], indirect=True, ids=["postgres"])
class TestReplicas:
    async def test_a_change_through_one_replica_reaches_the_others_subscribers(
            self, two_replicas):
        one, other = two_replicas
        here, said = reading(one)
        there = other.subscribe()
        await asyncio.sleep(0.01)
        many = sorted(str(uuid.uuid4()) for _ in range(250))  # three NOTIFYs
        await one.publish([uuid.UUID(f) for f in many])
        # this replica's stream wrote it, whole, before publish returned
        assert {"file_ids": many} in said
        got = [await next_of(there) for _ in range(3)]
        assert [len(g) for g in got] == [100, 100, 50]
        assert sum(got, []) == many
        # and has it again by the NOTIFY, as every replica's streams do
        for _ in range(100):
            if len(said) == 5:
                break
            await asyncio.sleep(0.02)
        assert sorted(len(s.get("file_ids", [])) for s in said) == [0, 50, 100, 100, 250]
        one.end_all()
        await here

    async def test_a_malformed_notice_is_ignored(self, two_replicas, database_url_for):
        one, other = two_replicas
        there = other.subscribe()
        engine = create_engine(database_url_for("sharing"))
        try:
            async with engine.connect() as conn:
                for payload in ('{"a": 1}', "[1, 2]", "not json"):
                    await conn.execute(text("SELECT pg_notify(:c, :p)"),
                                       {"c": feed_module.CHANNEL, "p": payload})
                await conn.commit()
        finally:
            await engine.dispose()
        await one.publish([uuid.UUID(FILES[0])])
        assert await next_of(there) == [FILES[0]]
        assert other.listening

    async def test_a_lost_listener_ends_the_streams_and_listens_again(
            self, two_replicas, database_url_for):
        one, other = two_replicas
        there = other.subscribe()
        engine = create_engine(database_url_for("sharing"))
        try:
            async with engine.connect() as conn:
                # what a PostgreSQL restart or a failover does to the listening connection
                await conn.execute(text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN %' AND datname = current_database() "
                    "AND pid <> pg_backend_pid()"))
                await conn.commit()
        finally:
            await engine.dispose()
        assert await next_of(there) is None  # ended: it may have missed a change
        for _ in range(300):
            if other.listening and one.listening:
                break
            await asyncio.sleep(0.02)
        assert other.listening and one.listening
        again = other.subscribe()
        await one.publish([uuid.UUID(FILES[2])])
        assert await next_of(again) == [FILES[2]]
