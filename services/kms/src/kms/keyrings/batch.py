"""``POST /v1/keyrings/batch``: one's own keyring entries of one scope of many files.

What ``GET /v1/keyrings/{file}/entries?scope=...`` answers, for up to ``MAX_FILES`` files
at once: a device listing a page of patients fetches the ``administrative`` keys of the
page in one request (``docs/sharing.md``, listing patients). The rules are the single
route's, per file: the caller's access (asked of the sharing service for all the files in
one call) must hold the scope and the file be active; only the caller's own entries are
served; each release is audited in that file's scope chain, each refusal of a file that
has a keyring as ``denied``. A file the caller may not read is left out of the answer.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from ecrin_platform.access import AccessClient
from ecrin_platform.audit import AuditLog
from ecrin_platform.deps import CurrentUser, RawInternalToken, SessionDep
from kms.keyrings.endpoints import NO_STORE, EntriesOut, get_access_client, scope_chain
from kms.models import KeyringEntryRow, KeyringVersion

#: Files per call (a page of ``GET /v1/files``).
MAX_FILES = 200

router = APIRouter(prefix="/v1/keyrings", tags=["kms"])


class BatchEntriesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_FILES)
    scope: Literal["clinical", "shared", "administrative"]


class BatchEntriesOut(BaseModel):
    items: list[EntriesOut] = Field(
        description="Per file the caller may read the scope of, in the order asked: the "
                    "scope's current version and the caller's own entries of it")


@router.post("/batch", response_model=BatchEntriesOut,
             summary="One's own keyring entries of one scope of up to 200 files")
async def batch_entries(body: BatchEntriesIn, user: CurrentUser, token: RawInternalToken,
                        session: SessionDep, request: Request, response: Response,
                        client: Annotated[AccessClient, Depends(get_access_client)]
                        ) -> BatchEntriesOut:
    caller = uuid.UUID(user.account_id)
    files = list(dict.fromkeys(body.file_ids))
    access = await client.access_many(files, caller, token=token)
    allowed = [f for f in files if (a := access.get(f)) is not None
               and a.state == "active" and body.scope in a.scopes]
    versions = {row.file_id: row.version for row in (await session.execute(
        select(KeyringVersion).where(KeyringVersion.file_id.in_(files),
                                     KeyringVersion.scope == body.scope))).scalars()}
    entries: dict[uuid.UUID, list[dict[str, Any]]] = {f: [] for f in allowed}
    if allowed:
        rows = await session.execute(
            select(KeyringEntryRow).where(KeyringEntryRow.file_id.in_(allowed),
                                          KeyringEntryRow.member_id == caller,
                                          KeyringEntryRow.scope == body.scope)
            .order_by(KeyringEntryRow.file_id, KeyringEntryRow.version))
        for row in rows.scalars():
            entries[row.file_id].append(row.entry)
    events: dict[str, list[tuple[str, str]]] = {}
    outcomes: dict[str, str] = {}
    for file_id in files:
        chain = scope_chain(file_id, body.scope)
        if file_id in entries:
            target = ",".join(f"{body.scope}:v{v}" for v in
                              sorted({int(e["version"]) for e in entries[file_id]}))
            events[chain] = [("keys.release", (target or f"{body.scope}:none")[:200])]
            outcomes[chain] = "ok"
        elif file_id in versions:  # refused, on a file that has a keyring
            events[chain] = [("keys.release", body.scope)]
            outcomes[chain] = "denied"
    audit: AuditLog = request.app.state.audit
    await audit.append_chains(session, actor=caller, events=events, outcome=outcomes)
    response.headers.update(NO_STORE)
    return BatchEntriesOut(items=[
        EntriesOut(file_id=f, versions={body.scope: versions[f]} if f in versions else {},
                   entries=entries[f]) for f in allowed])
