"""The access-change feed: how the kms (and the records API) learn at once that a file's
access changed.

The records API is told by a POST (``sharing.notify``), and follows this feed as well: a
lost POST is then not silent, and while it follows it keeps answers granting access longer
(``ecrin_platform.access``). The kms is on the keys' site, which the data site does not
reach (docs/deploy.md, network): it asks instead. With the token of the first request that
makes it ask this service about access, it opens ``GET /internal/access-changes`` and keeps
it open (``ecrin_platform.access_feed``):

- one JSON line ``{"ready": true}`` once it is subscribed: every change committed after it
  will be on the stream;
- one ``{"file_ids": [...]}`` line per change (a grant ended, a rotation moved on): the kms
  drops what it cached about those files;
- ``{}`` every ``KEEPALIVE_S`` seconds with nothing to say, so that proxies keep it open.

The stream ends after ``MAX_STREAM_S`` (the token that opened it has expired by then), when
the subscriber falls ``QUEUE_SIZE`` changes behind, when the replica stops listening or
shuts down. The kms then forgets every answer it cached (a 0.5 s cache: little is lost),
and opens another stream on its next question: between two streams, its cache's lifetime
bounds a stale answer, as it does when a message is lost. The revocation's answer waits
(at most ``HANDOVER_S``) until this replica's streams have written the change: a kms that
follows this replica has it before the revoked member can ask again. One that follows
another replica hears it through the NOTIFY, a few milliseconds later (``make bench``).

Several replicas: a change is published on PostgreSQL's ``NOTIFY`` channel ``CHANNEL``
after its commit, and each replica LISTENs on one connection of its own and feeds its own
subscribers, so a stream carries the changes made through every replica whichever one it
reached. A replica whose listening connection is lost ends its streams and answers 503 to
new ones until it listens again; it stays ready (``/readyz``): its access answers are right,
and taking every replica out of the Service when LISTEN fails would stop every decision,
where the cache's lifetime bounds what a missing feed costs. On SQLite (one process) a
change goes straight to the subscribers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import NamedTuple

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from ecrin_platform.deps import InternalClaimsDep
from ecrin_platform.pg_channel import PgChannel
from ecrin_platform.problems import Forbidden, ServiceUnavailable

log = logging.getLogger("ecrin.sharing.feed")

CHANNEL = "ecrin_access_changed"
#: Changes a subscriber may have waiting before its stream is ended.
QUEUE_SIZE = 1000
KEEPALIVE_S = 15.0
#: A stream outlives the token that opened it by at most the longest a token lives.
MAX_STREAM_S = 60.0
#: File ids per NOTIFY (37 bytes each in JSON; ``pg_channel.MAX_PAYLOAD``).
NOTIFY_IDS = 100
#: How long a revocation's answer waits for this replica's streams to carry its change.
HANDOVER_S = 0.25


class _Change(NamedTuple):
    file_ids: list[str]
    #: Done once the stream has written it (None: nobody waits for it).
    sent: asyncio.Future[None] | None = None


_Queue = asyncio.Queue[_Change | None]


def _release(change: _Change | None) -> None:
    if change is not None and change.sent is not None and not change.sent.done():
        change.sent.set_result(None)


class AccessFeed:
    """This replica's subscribers, and the changes delivered to them (one process: a change
    published here is delivered here)."""

    def __init__(self) -> None:
        self._subscribers: set[_Queue] = set()
        self._draining = False

    @property
    def listening(self) -> bool:
        """False while the changes of other replicas may not reach this one."""
        return True

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> _Queue:
        """A queue of the changes from now on (lists of file ids), then None when the
        stream must end. A queue left unread is ended when it is ``QUEUE_SIZE`` behind."""
        if self._draining or not self.listening:
            raise FeedUnavailable()
        queue: _Queue = asyncio.Queue()
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: _Queue) -> None:
        self._subscribers.discard(queue)
        _drop_pending(queue)

    def deliver(self, file_ids: list[str], *, track: bool = False
                ) -> dict[asyncio.Future[None], _Queue]:
        """Queues the change for every stream; with ``track``, a future per stream (and
        its queue), done once it has written the change (or ended)."""
        sent: dict[asyncio.Future[None], _Queue] = {}
        for queue in list(self._subscribers):
            if queue.qsize() >= QUEUE_SIZE:
                log.warning("access feed: a subscriber fell behind, its stream ends")
                self._end(queue)
                continue
            future = asyncio.get_running_loop().create_future() if track else None
            queue.put_nowait(_Change(file_ids, future))
            if future is not None:
                sent[future] = queue
        return sent

    def end_all(self) -> None:
        """End every stream: their subscribers forget what they cached, and ask again."""
        for queue in list(self._subscribers):
            self._end(queue)

    def drain(self) -> None:
        """The server is stopping: end every stream, and open no other."""
        self._draining = True
        self.end_all()

    def _end(self, queue: _Queue) -> None:
        """Ends the stream at once: what it has not sent yet is dropped (its subscriber
        forgets everything it cached when the stream ends)."""
        self._subscribers.discard(queue)
        _drop_pending(queue)
        queue.put_nowait(None)

    async def publish(self, file_ids: Sequence[uuid.UUID]) -> None:
        """After the commit that changed these files' access; never raises. Returns once
        this replica's streams have written the change (at most ``HANDOVER_S``): the
        revocation's answer then reaches its client after the notice left for the kms."""
        ids = sorted({str(f) for f in file_ids})
        if ids:
            await self._hand_over(ids)

    async def _hand_over(self, ids: list[str]) -> None:
        """A stream that has not written the change within ``HANDOVER_S`` (its reader
        stopped reading) is ended: its subscriber forgets everything when it notices, and
        the next change does not wait for it again."""
        sent = self.deliver(ids, track=True)
        if not sent:
            return
        _, late = await asyncio.wait(sent, timeout=HANDOVER_S)
        for future in late:
            log.warning("access feed: a stream did not take a change in time, it ends")
            self._end(sent[future])

    async def start(self) -> None:
        """Nothing to listen to in one process."""

    async def stop(self) -> None:
        self.end_all()


class PostgresFeed(AccessFeed):
    """Changes go through ``NOTIFY`` to every replica's listener, this one's included
    (``ecrin_platform.pg_channel``)."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__()
        self._channel = PgChannel(engine, CHANNEL, on_message=self._heard,
                                  on_lost=self.end_all)

    @property
    def listening(self) -> bool:
        return self._channel.listening

    async def start(self) -> None:
        await self._channel.start()

    async def stop(self) -> None:
        await self._channel.stop()
        await super().stop()

    async def publish(self, file_ids: Sequence[uuid.UUID]) -> None:
        """To the other replicas by NOTIFY (if that fails, their subscribers fall back on
        their cache's lifetime), and to this one's streams at once, waited for as in one
        process: they hear the NOTIFY too, a second notice that costs one more question."""
        ids = sorted({str(f) for f in file_ids})
        if not ids:
            return
        payloads = [json.dumps(ids[i:i + NOTIFY_IDS]) for i in range(0, len(ids), NOTIFY_IDS)]
        await asyncio.gather(self._channel.publish(payloads), self._hand_over(ids))

    def _heard(self, payload: str) -> None:
        try:
            ids = json.loads(payload)
            if not isinstance(ids, list):
                raise ValueError("not a list")
            self.deliver([str(uuid.UUID(str(i))) for i in ids])
        except ValueError:
            log.warning("access feed: malformed notice ignored")


def _drop_pending(queue: _Queue) -> None:
    """Empties the queue: nobody waits for what it will not write."""
    while not queue.empty():
        _release(queue.get_nowait())


def feed_for(engine: AsyncEngine) -> AccessFeed:
    return PostgresFeed(engine) if engine.dialect.name == "postgresql" else AccessFeed()


class FeedUnavailable(ServiceUnavailable):
    """``service-unavailable``: only the kms and the records API ask for the feed, and they
    only retry."""

    def __init__(self) -> None:
        super().__init__("This replica does not hear every change now; retry shortly.",
                         headers={"Retry-After": "1"})


#: The services that cache access answers and follow this feed.
FOLLOWERS = frozenset({"kms", "records-api"})


async def _follower(claims: InternalClaimsDep) -> None:
    if claims.audience not in FOLLOWERS:
        raise Forbidden("This feed is for the kms and the records API.")


router = APIRouter(prefix="/internal", include_in_schema=False)


@router.get("/access-changes", dependencies=[Depends(_follower)])
async def access_changes(request: Request) -> StreamingResponse:
    feed: AccessFeed = request.app.state.access_feed
    queue = feed.subscribe()  # before the answer starts: no change after "ready" is missed
    return StreamingResponse(_lines(feed, queue), media_type="application/x-ndjson")


async def _lines(feed: AccessFeed, queue: _Queue) -> AsyncIterator[bytes]:
    try:
        yield b'{"ready":true}\n'
        deadline = time.monotonic() + MAX_STREAM_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(min(KEEPALIVE_S, left)):
                    change = await queue.get()
            except TimeoutError:
                yield b"{}\n"
                continue
            if change is None:
                return
            yield json.dumps({"file_ids": change.file_ids}, separators=(",", ":")).encode() + b"\n"
            _release(change)
    finally:
        feed.unsubscribe(queue)
