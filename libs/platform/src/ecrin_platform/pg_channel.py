"""One PostgreSQL ``NOTIFY`` channel, heard by every replica of a service.

A replica's in-memory state that another replica's write makes stale (the sharing
service's access-change streams, the gateway's session cache) learns of that write here:
the writer publishes after its commit, and every replica (the writer's included) LISTENs
on one connection taken from its pool for good and hands each message to ``on_message``.
The connection is checked every ``CHECK_EVERY_S``; when it is lost, ``on_lost`` is called
(what was heard may be incomplete) and the replica listens again, backing off to 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("ecrin.pg-channel")

CHECK_EVERY_S = 15.0
#: How long the listening connection may take to answer a check, and the start to listen.
CHECK_TIMEOUT_S = 5.0
#: PostgreSQL refuses a payload of 8000 bytes or more.
MAX_PAYLOAD = 7999
#: The longest a publication may take (a pool with no connection free waits up to 30 s).
PUBLISH_TIMEOUT_S = 1.0
#: A connection that listened this long before it was lost is retried at once.
STABLE_S = 30.0


class PgChannel:
    def __init__(self, engine: AsyncEngine, channel: str, *,
                 on_message: Callable[[str], None], on_lost: Callable[[], None]) -> None:
        self._engine = engine
        self.channel = channel
        self._on_message = on_message
        self._on_lost = on_lost
        #: True while every message published from now on will be heard here.
        self.listening = False
        self._listened = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Starts listening, and waits (at most ``CHECK_TIMEOUT_S``) until it does."""
        self._task = asyncio.create_task(self._listen(), name=f"listen-{self.channel}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                await self._listened.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def publish(self, payloads: Sequence[str]) -> bool:
        """Each payload (at most ``MAX_PAYLOAD`` bytes) to every listener, in one
        transaction of its own, within ``PUBLISH_TIMEOUT_S`` (a full pool must not hold
        the answer of a write that committed); False, logged, when it could not be sent.
        Never raises: its callers have committed."""
        if not payloads:
            return True
        try:
            if any(len(payload.encode()) > MAX_PAYLOAD for payload in payloads):
                raise ValueError("a NOTIFY payload over 7999 bytes")
            async with asyncio.timeout(PUBLISH_TIMEOUT_S), self._engine.connect() as conn:
                for payload in payloads:
                    await conn.execute(select(func.pg_notify(self.channel, payload)))
                await conn.commit()
        except Exception as exc:  # whatever the driver raises, a timeout, a payload too long
            log.warning("notice not published",
                        extra={"channel": self.channel, "error": type(exc).__name__})
            return False
        return True

    def _heard(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        self._on_message(payload)

    async def _listen(self) -> None:
        backoff = 0.5
        while True:
            since = time.monotonic()
            try:
                async with self._engine.connect() as conn:
                    raw = await conn.get_raw_connection()
                    driver: Any = raw.driver_connection
                    lost = asyncio.Event()
                    driver.add_termination_listener(lambda _c, lost=lost: lost.set())
                    try:
                        await driver.add_listener(self.channel, self._heard)
                        self.listening = True
                        self._listened.set()
                        await self._watch(driver, lost)
                    finally:
                        self.listening = False
                        self._on_lost()
                        # It LISTENs: it must not go back to the pool.
                        await conn.invalidate()
            except Exception as exc:  # whatever the driver raises: listen again, later
                log.warning("not listening",
                            extra={"channel": self.channel, "error": type(exc).__name__})
            # A connection lost at once, again and again, is not retried twice a second.
            backoff = 0.5 if time.monotonic() - since > STABLE_S else min(backoff * 2, 10.0)
            await asyncio.sleep(backoff)

    @staticmethod
    async def _watch(driver: Any, lost: asyncio.Event) -> None:
        """Returns when the connection is lost or stops answering."""
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CHECK_EVERY_S):
                    await lost.wait()
            if not lost.is_set():
                async with asyncio.timeout(CHECK_TIMEOUT_S):
                    await driver.fetchval("SELECT 1")
