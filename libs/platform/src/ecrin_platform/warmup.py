"""Building a service's routing state when it starts, not on its first request.

FastAPI builds what routes a request (each included router's routes, with their prefixes,
and each route's plan of dependencies and parameters) the first time a request walks past
them, and the first dependency with a clean-up imports anyio's asyncio backend. That came
to 40-90 ms of CPU in each service on the first request after a start (docs/performance.md,
round 16): paid by whoever happened to sign up or log in first, once in each service on the
way.

:func:`warm_routes` pays it at start-up instead. It loads anyio's backend, then sends one
request that no route matches: FastAPI builds every router's state while looking for a
route, and answers 404. The request goes to the application's router directly, past every
middleware: nothing is logged, counted, authenticated or handled by an endpoint.
"""

from __future__ import annotations

import logging

import anyio
from starlette.types import ASGIApp, Message, Scope

#: The asterisk form of a request target (RFC 9112, 3.2.4). Every route's path starts
#: with "/", so none matches it; neither does a mount.
UNROUTABLE = "*"

log = logging.getLogger("ecrin.warmup")


async def warm_routes(router: ASGIApp, service: str) -> int:
    """Sends one GET for :data:`UNROUTABLE` through ``router`` (the application's
    ``app.router``) and returns the status it answered: 404 unless a route matched,
    which is logged."""
    anyio.get_cancelled_exc_class()  # imports the running loop's backend
    answered: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        answered.append(message)

    scope: Scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
             "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": UNROUTABLE, "raw_path": UNROUTABLE.encode(), "root_path": "",
             "query_string": b"", "headers": [], "client": None, "server": None,
             "state": {}}
    await router(scope, receive, send)
    status = next((int(m["status"]) for m in answered if m["type"] == "http.response.start"),
                  0)
    if status != 404:
        log.warning("route warm-up was answered", extra={"service": service,
                                                          "status": status})
    return status
