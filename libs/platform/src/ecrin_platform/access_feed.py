"""Following the sharing service's access-change feed (``sharing.feed``), for the kms and
the records API.

The kms is on another site than the sharing service, which therefore does not call it: the
kms keeps ``GET {sharing}/internal/access-changes`` open instead, and drops its cached
answers about each file the stream names. The stream is opened with the internal token of
a request the kms is serving (it has no token of its own), on its first question to the
sharing service; each time a stream ends, every cached answer is forgotten (a change may
have come between two streams), and the next question opens another, at most one per
``RETRY_S``. Until a stream is ready, and if it is lost, the cache's lifetime bounds a
stale answer, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import time
import uuid
from collections.abc import Callable

import httpx

from ecrin_platform.tokens import HEADER

PATH = "/internal/access-changes"
#: Between the end of a stream (or a refusal) and the next one.
RETRY_S = 1.0
#: The feed says something at least every 15 s: silence for longer is a lost stream.
TIMEOUT = httpx.Timeout(5.0, read=40.0)
#: The longest line the feed sends is a few kilobytes (at most 100 ids per notice).
MAX_LINE = 256 * 1024


class AccessFeedFollower:
    """Keeps one stream of the feed open while the service is asked questions."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, *, caller: str,
                 forget_file: Callable[[uuid.UUID], None], forget_all: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._http = http
        self._url = base_url.rstrip("/") + PATH
        self._caller = caller
        self._forget_file = forget_file
        self._forget_all = forget_all
        self._clock = clock
        self._log = logging.getLogger(f"ecrin.{caller}.access-feed")
        self._task: asyncio.Task[None] | None = None
        self._not_before = float("-inf")
        #: True from the stream's "ready" to its end: every change reaches this service.
        self.live = False

    def follow(self, token: str) -> None:
        """Opens a stream with ``token`` unless one is open or was just lost."""
        if self._task is not None and not self._task.done():
            return
        if not token or self._clock() < self._not_before:
            return
        # In a context of its own: not tagged with the request that happened to open it.
        self._task = asyncio.create_task(self._run(token), name="access-feed",
                                         context=contextvars.Context())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, token: str) -> None:
        headers = {HEADER: token, "x-ecrin-caller": self._caller}
        try:
            async with self._http.stream("GET", self._url, headers=headers,
                                         timeout=TIMEOUT) as response:
                if response.status_code != 200:
                    self._log.warning("access feed refused",
                                      extra={"status": response.status_code})
                    return
                buffered = b""
                async for chunk in response.aiter_bytes():
                    buffered += chunk
                    *lines, buffered = buffered.split(b"\n")
                    if len(buffered) > MAX_LINE:
                        raise ValueError("line too long")
                    for line in lines:
                        self._take(line)
            self._log.info("access feed ended")
        except Exception as exc:  # a refused stream, a broken or a malformed one alike
            self._log.warning("access feed lost", extra={"error": type(exc).__name__})
        finally:
            # Whatever came after the stream's end is not known here.
            self.live = False
            self._forget_all()
            self._not_before = self._clock() + RETRY_S

    def _take(self, line: bytes) -> None:
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError("not an object")
        if message.get("ready") is True:
            # Answers cached before the subscription may predate a change it will not carry.
            self._forget_all()
            self.live = True
        elif "file_ids" in message:
            ids = message["file_ids"]
            if not isinstance(ids, list):
                raise ValueError("file_ids not a list")
            for file_id in ids:
                self._forget_file(uuid.UUID(str(file_id)))
