"""A TCP proxy that drops a connection once, mid-request: a network that fails for real.

Tests point a client (the SDK, the CLI, Chromium) at ``proxy.url`` instead of the gateway.
Once ``arm(after)`` is called, the connection that carries the ``after``-th byte sent by
clients from then on is aborted (both sides, no FIN: a reset), once; every other byte is
relayed as it is. ``sent`` counts the bytes clients sent since the last ``arm`` or
``reset_count``, so a test can tell how much was sent again after the cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

_METHODS = {b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE"}


class CuttingProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.sent = 0
        self.cuts = 0
        #: Request lines seen since the last ``arm`` (each with the bytes sent before it),
        #: to tell what a client sent again.
        self.requests: list[tuple[int, str]] = []
        self._cut_at: int | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cutting-proxy", daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arm(self, after: int) -> None:
        """Cut the connection that carries the ``after``-th client byte from now, once."""
        self.sent, self._cut_at, self.requests = 0, after, []

    def reset_count(self) -> None:
        self.sent = 0

    def start(self) -> CuttingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(serve())
        self._loop.run_forever()

    async def _handle(self, client_r: asyncio.StreamReader,
                      client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return

        def abort() -> None:
            client_w.transport.abort()
            server_w.transport.abort()

        async def upstream() -> None:
            while data := await client_r.read(1 << 16):
                if data[:8].split(b" ")[0] in _METHODS:
                    self.requests.append((self.sent, data.split(b"\r\n", 1)[0][:120].decode(
                        "latin-1")))
                if self._cut_at is not None and self.sent + len(data) >= self._cut_at:
                    keep = self._cut_at - self.sent
                    self.sent, self._cut_at = self.sent + keep, None
                    server_w.write(data[:keep])
                    with contextlib.suppress(ConnectionError):
                        await server_w.drain()
                    self.cuts += 1
                    abort()
                    return
                self.sent += len(data)
                server_w.write(data)
                await server_w.drain()
            server_w.write_eof()

        async def downstream() -> None:
            while data := await server_r.read(1 << 16):
                client_w.write(data)
                await client_w.drain()
            client_w.write_eof()

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in (client_w, server_w):
            with contextlib.suppress(Exception):
                writer.close()


@contextlib.contextmanager
def cutting_proxy(host: str, port: int) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(host, port).start()
    try:
        yield proxy
    finally:
        proxy.stop()
