"""``POST /internal/access-changed``: the sharing service says a file's grants changed.

Called when a grant ends (revocation, expiry) or a rotation moves on, with the token the
sharing service was called with, forwarded (``create_app``): the kms drops its cached
access answers about those files, so a revoked member's next key request is refused at
once. A lost message costs only the cache's lifetime (``authz_cache_s``).
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ecrin_platform.access import AccessClient

router = APIRouter(prefix="/internal", include_in_schema=False)


class AccessChanged(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_ids: list[uuid.UUID] = Field(min_length=1, max_length=1000)


@router.post("/access-changed", status_code=204)
async def access_changed(body: AccessChanged, request: Request) -> Response:
    access: AccessClient = request.app.state.access
    for file_id in body.file_ids:
        access.forget_file(file_id)
    return Response(status_code=204)
