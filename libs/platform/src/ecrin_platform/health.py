"""``/healthz``, ``/readyz`` and ``/metrics``, the same in every service."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ecrin_platform.migrations import current_revisions, head_revisions
from ecrin_platform.problems import problem_response


def health_router(script_location: Path) -> APIRouter:
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
        return JSONResponse({"status": "ready", "revision": sorted(current)})

    @router.get("/metrics")
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(request.app.state.metrics.registry),
                        media_type=CONTENT_TYPE_LATEST)

    return router
