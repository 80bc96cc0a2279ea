"""``/healthz`` and ``/readyz``, the same in every service.

``/metrics`` is not here: it is served on a listener of its own (observability.metrics_app),
never on the public one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from ecrin_platform.migrations import current_revisions, head_revisions
from ecrin_platform.problems import problem_response

#: A dependency the service cannot serve without (Redis for the gateway): returns what is
#: wrong, or None when it answers.
ReadinessCheck = Callable[[FastAPI], Awaitable[str | None]]


def health_router(script_location: Path,
                  readiness_checks: Sequence[ReadinessCheck] = ()) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    heads = head_revisions(script_location)

    @router.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        engine = request.app.state.engine
        try:
            current = await current_revisions(engine)
        except Exception:
            return problem_response(503, "The database is unreachable.",
                                    headers={"Retry-After": "5"})
        if current != heads:
            return problem_response(503, "The database is not migrated to head.",
                                    headers={"Retry-After": "5"})
        for check in readiness_checks:
            problem = await check(request.app)
            if problem is not None:
                return problem_response(503, problem, headers={"Retry-After": "5"})
        return JSONResponse({"status": "ready", "revision": sorted(current)})

    return router
