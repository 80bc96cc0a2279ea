"""``POST /v1/records/batch``: the latest version of many records, small content inline.

What ``GET /v1/records/{id}?include=content`` answers for one record, for up to
``MAX_RECORDS`` at once: a device lists a page of patients by reading their identity
records in one request (``docs/records.md``, batch read) instead of one listing and one
read per file. Nothing is relaxed: each record is served only if its file's access (asked
of the sharing service for all the files in one call) lets the caller read its scope;
each read is audited as the single read audits it (one event per record in its scope's
chain, before any byte is served), and each refusal of an existing record as ``denied``.
A record that does not exist, is not committed, or may not be read is left out of the
answer, never told apart.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, select

from ecrin_platform.db import release
from records_api.models import ContentChunk, Record, RecordVersion
from records_api.records.audit import AUDIT, DENIED, record_target, scope_chain
from records_api.records.deps import CallerDep, ReadSessionDep
from records_api.records.schemas import INLINE_CONTENT_MAX, RecordWithContent
from records_api.records.service import record_out

#: Records per call (a page of ``GET /v1/files``).
MAX_RECORDS = 200
#: Inline content of one answer, in total: beyond it, content is left out (the client
#: downloads it), so an answer stays a few MiB whatever the records' sizes.
MAX_INLINE_TOTAL = 4 << 20

router = APIRouter(prefix="/v1/records", tags=["records"])


class BatchReadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    record_ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_RECORDS)


class BatchReadOut(BaseModel):
    items: list[RecordWithContent] = Field(
        description="The records the caller may read, in the order asked; the others are "
                    "left out (no such record, or no access: never distinguished)")


async def _latest(session: ReadSessionDep, ids: Sequence[uuid.UUID]
                  ) -> dict[uuid.UUID, tuple[Record, RecordVersion]]:
    rows = await session.execute(
        select(Record, RecordVersion).join(RecordVersion, and_(
            RecordVersion.record_id == Record.id,
            RecordVersion.version == Record.current_version))
        .where(Record.id.in_(ids), Record.state == "committed", RecordVersion.committed))
    return {record.id: (record, version) for record, version in rows.all()}


async def _first_rows(session: ReadSessionDep, uploads: Sequence[uuid.UUID]
                      ) -> dict[uuid.UUID, bytes]:
    if not uploads:
        return {}
    rows = await session.execute(select(ContentChunk.upload_id, ContentChunk.data).where(
        ContentChunk.upload_id.in_(uploads), ContentChunk.seq == 0))
    return {upload: bytes(data) for upload, data in rows.all()}


@router.post("/batch", response_model=BatchReadOut, response_model_exclude_unset=True,
             summary="The latest version of up to 200 records, small content inline "
                     "(one audit event per record)")
async def batch_read(body: BatchReadIn, caller: CallerDep, session: ReadSessionDep,
                     request: Request, response: Response) -> BatchReadOut:
    ids = list(dict.fromkeys(body.record_ids))
    found = await _latest(session, ids)
    files = list(dict.fromkeys(record.file_id for record, _ in found.values()))
    access = await caller.decider.access_many(files, caller.account_id, token=caller.token,
                                              request_id=caller.request_id) if files else {}
    readable: list[uuid.UUID] = []
    refused: dict[str, list[tuple[str, str]]] = {}
    for rid in ids:
        if rid not in found:
            continue
        record = found[rid][0]
        held = access.get(record.file_id)
        if held is not None and held.can_read(record.scope):
            readable.append(rid)
        else:
            refused.setdefault(scope_chain(record.file_id, record.scope), []).append(
                ("record.read", record_target(record.id, record.current_version)))
    # Which contents come inline, decided on their lengths before any is loaded: memory
    # stays bounded by MAX_INLINE_TOTAL whatever the records asked for.
    inline: list[uuid.UUID] = []
    budget = MAX_INLINE_TOTAL
    for rid in readable:
        version = found[rid][1]
        if (version.content_upload_id is not None
                and version.content_length <= min(INLINE_CONTENT_MAX, budget)):
            inline.append(version.content_upload_id)
            budget -= version.content_length
    contents = await _first_rows(session, inline)
    items: list[RecordWithContent] = []
    served: dict[str, list[tuple[str, str]]] = {}
    for rid in readable:
        record, version = found[rid]
        out = record_out(record, version, RecordWithContent)
        assert isinstance(out, RecordWithContent)
        data = contents.get(version.content_upload_id) if version.content_upload_id else None
        action = "record.read"
        if data is not None and len(data) == version.content_length:
            out.content, action = data, "record.content.read"
        items.append(out)
        served.setdefault(scope_chain(record.file_id, record.scope), []).append(
            (action, record_target(record.id, record.current_version)))
    # Recorded before any byte is served, in a short write transaction of its own (the
    # read session gives its connection back first, as the single read does).
    # A scope's chain is all served or all refused (the access is per file and scope).
    await release(session)
    async with request.app.state.sessionmaker() as writing, writing.begin():
        await AUDIT.append_chains(writing, actor=caller.account_id, events={**served, **refused},
                                  outcome={**dict.fromkeys(served, "ok"),
                                           **dict.fromkeys(refused, DENIED)})
    response.headers["Cache-Control"] = "no-store"
    return BatchReadOut(items=items)
