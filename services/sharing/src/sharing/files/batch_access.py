"""``POST /internal/access/batch``: the access decision for many files in one call.

A device listing a page of patients reads their identity records and keys in one request
each (``docs/sharing.md``, listing patients); the records API and the kms then need the
caller's access to every file of the page. Asked one file at a time, that is a request to
this service per file. The answer is the single route's (``/internal/access/{file}/{account}``)
for each file the account may access, decided by the same function
(``FilesService.accesses``, one statement whatever the number of files); a file it may not
access is left out.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from ecrin_platform.deps import InternalClaimsDep
from ecrin_platform.problems import NotFound
from sharing.files.endpoints import ReadService
from sharing.files.schemas import AccessOut

#: Files per call: a page of ``GET /v1/files``.
MAX_FILES = 200

internal = APIRouter(prefix="/internal", include_in_schema=False)


class BatchAccessIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: uuid.UUID
    file_ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_FILES)


class BatchAccessOut(BaseModel):
    items: list[AccessOut]


@internal.post("/access/batch", response_model=BatchAccessOut)
async def batch_access(body: BatchAccessIn, claims: InternalClaimsDep, request: Request,
                       service: ReadService) -> BatchAccessOut:
    """Like the single route, only about the user the forwarded token names."""
    if claims.principal is None or claims.principal.account_id != str(body.account_id):
        raise NotFound("No such file.")
    caller = request.headers.get("x-ecrin-caller", claims.audience)
    if caller != claims.audience:
        raise NotFound("No such file.")
    return BatchAccessOut(items=await service.accesses(
        list(dict.fromkeys(body.file_ids)), body.account_id,
        include_pending=claims.audience == "kms"))
