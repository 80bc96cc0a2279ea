"""``POST /internal/access/batch``: the access decision for many files in one call.

A device listing a page of patients reads their identity records and keys in one request
each (``docs/sharing.md``, listing patients); the records API and the kms then need the
caller's access to every file of the page. Asked one file at a time, that is a request to
this service per file. The answer is the single route's (``/internal/access/{file}/{account}``)
for each file the account may access, decided by the same rules (a live grant, an active
file not deleted; pending files only for the kms); a file it may not access is left out.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ecrin_platform.deps import InternalClaimsDep, SessionDep
from ecrin_platform.problems import NotFound
from sharing.files.repository import live_grant
from sharing.files.schemas import AccessOut
from sharing.files.service import _aware
from sharing.grants.service import ROTATORS
from sharing.models import Grant, PatientFile, Rotation

#: Files per call: a page of ``GET /v1/files``.
MAX_FILES = 200

internal = APIRouter(prefix="/internal", include_in_schema=False)


class BatchAccessIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: uuid.UUID
    file_ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_FILES)


class BatchAccessOut(BaseModel):
    items: list[AccessOut]


async def accesses(session: AsyncSession, account_id: uuid.UUID, file_ids: list[uuid.UUID],
                   *, include_pending: bool, now: datetime) -> list[AccessOut]:
    """Three queries whatever the number of files: files with their live grants, and the
    pending rotations of those the account rotates."""
    wanted = set(file_ids)
    stmt = (select(PatientFile, Grant).join(Grant, Grant.file_id == PatientFile.id)
            .where(PatientFile.id.in_(wanted), PatientFile.deleted_at.is_(None),
                   Grant.grantee_id == account_id, live_grant(now))
            .order_by(Grant.created_at.desc()))
    if not include_pending:
        stmt = stmt.where(PatientFile.state == "active")
    found: dict[uuid.UUID, tuple[PatientFile, Grant]] = {}
    for file, grant in (await session.execute(stmt)).all():
        found.setdefault(file.id, (file, grant))  # the newest live grant, as the single route
    rotating = [fid for fid, (_, grant) in found.items() if grant.relationship in ROTATORS]
    pending: dict[uuid.UUID, set[str]] = {}
    if rotating:
        rows = await session.execute(
            select(Rotation.file_id, Rotation.scope).where(
                Rotation.file_id.in_(rotating), Rotation.done_at.is_(None),
                Rotation.rotated_version.is_(None)))
        for fid, scope in rows.all():
            pending.setdefault(fid, set()).add(scope)
    return [AccessOut(file_id=file.id, account_id=account_id, relationship=grant.relationship,
                      scopes=grant.scopes, state=file.state,
                      valid_until=_aware(grant.valid_until) if grant.valid_until else None,
                      key_versions=dict(file.key_versions or {}),
                      pending_rotations=sorted(pending.get(file.id, ())))
            for file, grant in (found[fid] for fid in file_ids if fid in found)]


@internal.post("/access/batch", response_model=BatchAccessOut)
async def batch_access(body: BatchAccessIn, claims: InternalClaimsDep, request: Request,
                       session: SessionDep) -> BatchAccessOut:
    """Like the single route, only about the user the forwarded token names."""
    if claims.principal is None or claims.principal.account_id != str(body.account_id):
        raise NotFound("No such file.")
    caller = request.headers.get("x-ecrin-caller", claims.audience)
    if caller != claims.audience:
        raise NotFound("No such file.")
    return BatchAccessOut(items=await accesses(
        session, body.account_id, list(dict.fromkeys(body.file_ids)),
        include_pending=claims.audience == "kms", now=request.app.state.clock.now()))
