"""Resumable uploads of a version's content: a session that survives a dropped connection.

The one-shot ``PUT …/content`` discards what it stored when its request fails, so a 200 MiB
upload cut at 190 MiB starts over. A *session* keeps its rows instead, and the client asks
where it stands and goes on from there. Header names and semantics follow the IETF draft
"Resumable Uploads for HTTP" (draft-ietf-httpbis-resumable-upload-12): ``Upload-Offset``,
``Upload-Complete`` (a structured boolean, ``?1``/``?0``), ``Upload-Length``,
``Upload-Limit``; a wrong offset is a 409 whose problem names the expected offset. Pieces
are ``application/octet-stream`` (what the OpenAPI document declares, for generators) or the
draft's ``application/partial-upload``. Differences from the draft (docs/records.md):

- the session is opened by an empty ``POST …/content/uploads`` (the version already states
  the length and the digest of its content), not by a first request carrying data;
- the offset is the bytes of whole 1 MiB rows stored, so every piece but the last is a
  whole number of rows (``min-append-size`` in ``Upload-Limit``): the part of a row a cut
  request was still buffering is not stored and is sent again;
- the content digest is checked once complete: from the running digest the process kept
  while it stored every row in turn (``ContentStore.completed``), else (another replica
  took some pieces, a restart, rows written out of turn) by reading the rows back, one in
  memory at a time.

Only the account that opened a session appends to it or sees it (404 to anyone else, and
the attempt audited as a refused ``record.content.write``); its write access is checked
again on every request, so a revoked grant stops the appends. The version is committed,
with its one ``record.content.write`` event, by the piece that completes the content. A
completion that does not match the header (length, digest) ends the session: the content is
wrong, and resuming cannot mend it. Sessions left without an append for
``resumable_upload_after_s`` are purged (``records.purge``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from ecrin_platform.db import read_only_session
from ecrin_platform.openapi import LOCATION
from ecrin_platform.problems import Conflict, ServiceError
from records_api.models import ContentUpload, Record, RecordVersion
from records_api.records.audit import DENIED, audit_apart, record_target, scope_chain
from records_api.records.content import (
    CONTENT_ROW_BYTES,
    ContentMissing,
    ContentStore,
    ContentTooLong,
    PieceMisaligned,
    RowTaken,
)
from records_api.records.deps import CallerDep, ContentStoreDep, RecordId, VersionNumber
from records_api.records.errors import (
    ContentLengthMismatch,
    ContentTooLarge,
    RecordNotFound,
    UnsupportedContentType,
    VersionCommitted,
    VersionConflict,
)
from records_api.records.policy import REFUSALS, Write
from records_api.records.repository import RecordsRepository
from records_api.records.service import Caller, commit_upload, etag

router = APIRouter(prefix="/v1/records", tags=["records-api"])

PARTIAL_UPLOAD = "application/partial-upload"
OCTET_STREAM = "application/octet-stream"
UploadId = Annotated[uuid.UUID, Path(description="The upload session's id")]
UploadOffset = Annotated[str, Header(
    alias="Upload-Offset", pattern=r"^[0-9]{1,16}$",
    description="Where this piece starts: the bytes the upload holds (HEAD says).")]
UploadComplete = Annotated[str, Header(
    alias="Upload-Complete", pattern=r"^\?[01]$",
    description="`?1` on the piece that completes the content, `?0` on the others.")]
UploadLength = Annotated[str | None, Header(
    alias="Upload-Length", pattern=r"^[0-9]{1,16}$",
    description="The content's length; if sent, must be the version's `content_length`.")]

_HEADER_DOCS = {
    "Upload-Offset": "Bytes of the content stored so far (whole 1 MiB rows; the length once "
                     "complete): where the next piece starts.",
    "Upload-Complete": "`?1` once the content is complete and the version committed, `?0` "
                       "before (a structured-field boolean).",
    "Upload-Length": "The content's length, as the version's header states it.",
    "Upload-Limit": "`max-size` (the length), `min-append-size` (1 MiB: every piece but the "
                    "last is a whole number of MiB) and `expires` (seconds this session is "
                    "kept without an append).",
}
_STATE_HEADERS = {"headers": {name: {"description": text, "schema": {"type": "string"}}
                              for name, text in _HEADER_DOCS.items()}}
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such record, version or session, or not the caller's (never "
                         "distinguished)"},
}
_OPEN_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **_PROBLEMS,
    403: {"description": "Read-only access to the scope, or a version someone else created"},
}


class MismatchingUploadOffset(Conflict):
    """The draft's ``mismatching-upload-offset`` problem: the piece does not start where the
    stored content ends. ``Upload-Offset`` and ``expected-offset`` say where it does."""

    slug, title = "mismatching-upload-offset", "Upload offset does not match"

    def __init__(self, expected: int, provided: int | None) -> None:
        super().__init__(f"The upload holds {expected} bytes: send the piece that starts there.",
                         headers={"Upload-Offset": str(expected)},
                         **{"expected-offset": expected, "provided-offset": provided})


class MisalignedPiece(ServiceError):
    status, slug, title = 422, "misaligned-upload-piece", "Piece not a whole number of MiB"

    def __init__(self, stored: int) -> None:
        super().__init__(f"Every piece but the last is a whole number of {CONTENT_ROW_BYTES} "
                         f"bytes; the upload holds {stored} bytes.",
                         headers={"Upload-Offset": str(stored)}, expected_offset=stored)


class UploadCut(ServiceError):
    """Never seen by the client that went away; logged as a 400, not an error."""

    status, slug, title = 400, "upload-cut", "The piece was cut short"


class UploadSessionOut(BaseModel):
    upload_id: uuid.UUID
    #: Bytes stored so far (0 for a new session).
    offset: int
    #: The content's length (the version's ``content_length``).
    length: int


def _offset(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if value.isdigit() and len(value) <= 16 else None


def _state(upload: ContentUpload, row: RecordVersion, offset: int, *, complete: bool,
           keep_s: int) -> dict[str, str]:
    touched = upload.touched_at or upload.started_at
    touched = touched if touched.tzinfo is not None else touched.replace(tzinfo=UTC)
    left = (touched + timedelta(seconds=keep_s) - datetime.now(UTC)).total_seconds()
    return {"Upload-Offset": str(offset), "Upload-Complete": "?1" if complete else "?0",
            "Upload-Length": str(row.content_length),
            "Upload-Limit": f"max-size={row.content_length}, "
                            f"min-append-size={CONTENT_ROW_BYTES}, expires={max(0, int(left))}"}


async def refused_upload(request: Request, caller: Caller, record: Record, version: int) -> None:
    await audit_apart(request.app.state.sessionmaker, actor=caller.account_id, events={
        scope_chain(record.file_id, record.scope): [
            ("record.content.write", record_target(record.id, version))]}, outcome=DENIED)


async def upload_target(request: Request, caller: Caller, record_id: uuid.UUID, version: int,
                        *, hide: bool = False) -> tuple[Record, RecordVersion]:
    """The record and version whose content the caller may upload (only the version's author
    does); a refusal on a record that exists is audited, and with ``hide`` answered as a 404
    (a session is its opener's: no one else learns that it exists). Read in a transaction
    closed before any body streams in."""
    async with read_only_session(request.app.state.engine) as session:
        repo = RecordsRepository(session)
        record = await repo.record(record_id)
        row = await repo.version(record_id, version) if record is not None else None
    if record is None:
        raise RecordNotFound()
    try:
        await caller.may(Write.UPLOAD, record.file_id, record.scope,
                         own=row is None or row.author == caller.account_id)
    except REFUSALS:
        await refused_upload(request, caller, record, version)
        if hide:
            raise RecordNotFound() from None
        raise
    if row is None:
        raise RecordNotFound()
    return record, row


async def _session(request: Request, caller: Caller, store: ContentStore,
                   record_id: uuid.UUID, version: int,
                   upload_id: uuid.UUID) -> tuple[Record, RecordVersion, ContentUpload]:
    record, row = await upload_target(request, caller, record_id, version, hide=True)
    upload = await store.session(upload_id)
    if upload is None or not upload.resumable:
        raise RecordNotFound()
    if upload.account_id != caller.account_id:
        # Another account's session, under its own record or under one the caller may
        # write to: refused and audited alike.
        await refused_upload(request, caller, record, version)
        raise RecordNotFound()
    if upload.record_id != record_id or upload.version != version:
        raise RecordNotFound()
    return record, row, upload


def _keep_s(request: Request) -> int:
    return int(request.app.state.settings.resumable_upload_after_s)


@router.post("/{record_id:uuid}/versions/{version}/content/uploads", status_code=201,
             response_model=UploadSessionOut,
             responses={**_OPEN_PROBLEMS, 201: {"headers": {
                 **LOCATION["headers"], **_STATE_HEADERS["headers"]}},
                        409: {"description": "The version's content is already uploaded"},
                        413: {"description": "The version's length is over the upload limit"},
                        422: {"description": "Upload-Length is not the version's length"}},
             summary="Open a resumable upload of a version's content (its author only); "
                     "send the content with PATCH to the Location")
async def open_upload(record_id: RecordId, version: VersionNumber, request: Request,
                      caller: CallerDep, store: ContentStoreDep,
                      upload_length: UploadLength = None) -> JSONResponse:
    record, row = await upload_target(request, caller, record_id, version)
    if row.committed:
        raise VersionCommitted("This version's content is already uploaded.")
    if upload_length is not None and _offset(upload_length) != row.content_length:
        raise ContentLengthMismatch(f"The header announces {row.content_length} bytes.",
                                    expected=row.content_length)
    limit = int(request.app.state.settings.max_upload_bytes)
    if row.content_length > limit:
        raise ContentTooLarge(f"Content over {limit} bytes is refused.", max_bytes=limit)
    upload_id = await store.open_session(record_id=record_id, version=version,
                                         account_id=caller.account_id,
                                         content_length=row.content_length)
    upload = await store.session(upload_id)
    if upload is None:  # another open of this version by this account replaced it at once
        raise VersionConflict("Another upload session of this version replaced this one.")
    headers = _state(upload, row, 0, complete=False, keep_s=_keep_s(request))
    headers["Location"] = (f"/v1/records/{record_id}/versions/{version}/content/uploads/"
                           f"{upload_id}")
    body = UploadSessionOut(upload_id=upload_id, offset=0, length=row.content_length)
    return JSONResponse(body.model_dump(mode="json"), status_code=201, headers=headers)


_SESSION_PATH = "/{record_id:uuid}/versions/{version}/content/uploads/{upload_id}"


@router.head(_SESSION_PATH, status_code=204, responses={**_PROBLEMS, 204: _STATE_HEADERS},
             summary="Where a resumable upload stands (Upload-Offset, Upload-Complete)")
async def upload_offset(record_id: RecordId, version: VersionNumber, upload_id: UploadId,
                        request: Request, caller: CallerDep,
                        store: ContentStoreDep) -> Response:
    _, row, upload = await _session(request, caller, store, record_id, version, upload_id)
    complete = row.committed and row.content_upload_id == upload.id
    offset = row.content_length if complete else await store.stored(upload)
    return Response(status_code=204, headers=_state(upload, row, offset, complete=complete,
                                                    keep_s=_keep_s(request)))


@router.patch(_SESSION_PATH, status_code=204,
              responses={**_PROBLEMS, 204: _STATE_HEADERS,
                         409: {"description": "Upload-Offset is not where the stored content "
                                              "ends (mismatching-upload-offset, with "
                                              "Upload-Offset), or the version is committed"},
                         415: {"description": f"Not sent as {OCTET_STREAM} (or the draft's "
                                              f"{PARTIAL_UPLOAD})"},
                         422: {"description": "A piece that is not the last and not a whole "
                                              "number of MiB; past the length; a completed "
                                              "content whose length or digest does not "
                                              "match the header (the session ends)"}},
              openapi_extra={"requestBody": {
                  "required": True, "description": f"The piece's bytes ({PARTIAL_UPLOAD}, "
                                                   "the draft's media type, is accepted too)",
                  "content": {OCTET_STREAM: {"schema": {"type": "string",
                                                        "format": "binary"}}}}},
              summary="Append a piece at Upload-Offset; the piece with Upload-Complete: ?1 "
                      "completes the content and commits the version")
async def append_upload(record_id: RecordId, version: VersionNumber, upload_id: UploadId,
                        request: Request, caller: CallerDep, store: ContentStoreDep,
                        upload_offset: UploadOffset, upload_complete: UploadComplete
                        ) -> Response:
    _, row, upload = await _session(request, caller, store, record_id, version, upload_id)
    if row.committed:
        raise VersionCommitted("This version's content is already uploaded.",
                               **({"headers": {"Upload-Offset": str(row.content_length),
                                               "Upload-Complete": "?1"}}
                                  if row.content_upload_id == upload.id else {}))
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in (PARTIAL_UPLOAD, OCTET_STREAM):
        raise UnsupportedContentType(f"Send each piece as {OCTET_STREAM}.")
    offset, final = int(upload_offset), upload_complete == "?1"
    stored = await store.stored(upload)
    if offset != stored:
        raise MismatchingUploadOffset(stored, offset)
    declared = _offset(request.headers.get("content-length"))
    if declared is not None:
        if offset + declared > row.content_length or (
                final and offset + declared != row.content_length):
            raise ContentLengthMismatch(
                f"The piece ends at {offset + declared}; the content is {row.content_length} "
                "bytes.", expected=row.content_length - offset)
        if not final and declared % CONTENT_ROW_BYTES:
            raise MisalignedPiece(stored)
    if offset % CONTENT_ROW_BYTES and (declared or not final):
        # Only a completion may follow a stored last row (one cut before its commit).
        raise ContentLengthMismatch("The content is already whole: complete it with an empty "
                                    "piece.", expected=0)
    try:
        total = await store.append(upload, request.stream(), offset=offset,
                                   length=row.content_length, final=final)
    except ContentTooLong:
        await store.discard_quietly(upload.id)
        raise ContentLengthMismatch(
            f"More than the {row.content_length} bytes the header announces; the upload "
            "is discarded.") from None
    except PieceMisaligned as exc:
        raise MisalignedPiece(exc.stored) from None
    except RowTaken:
        raise MismatchingUploadOffset(await store.stored(upload), offset) from None
    except ClientDisconnect:
        raise UploadCut("The connection closed before the piece ended; HEAD the upload "
                        "for its offset.") from None
    if total > offset:
        # Only a piece that stored something keeps the session from the purge: empty
        # pieces cannot hold an abandoned upload's rows forever.
        await store.touch(upload.id)
    if not final:
        return Response(status_code=204, headers=_state(
            upload, row, total, complete=False, keep_s=_keep_s(request)))
    if total != row.content_length:
        await store.discard_quietly(upload.id)
        raise ContentLengthMismatch(f"Received {total} bytes; the header announces "
                                    f"{row.content_length}. The upload is discarded.")
    try:
        received = await store.completed(upload, total)
        await commit_upload(store.sessionmaker, caller.account_id, record_id, version, received)
    except ContentMissing:
        await store.discard_quietly(upload.id)
        raise ContentLengthMismatch("The stored pieces are not the whole content; the upload "
                                    "is discarded.") from None
    except (VersionCommitted, VersionConflict):
        # Another completion of this session (a retry) committed it first, or another
        # version did: nothing here to discard (a finished upload is never deleted).
        raise
    except BaseException:
        await store.discard_quietly(upload.id)
        raise
    headers = _state(upload, row, total, complete=True, keep_s=_keep_s(request))
    headers["ETag"] = etag(version)
    return Response(status_code=204, headers=headers)


@router.delete(_SESSION_PATH, status_code=204, responses={**_PROBLEMS},
               summary="Abandon a resumable upload (its stored pieces are deleted)")
async def cancel_upload(record_id: RecordId, version: VersionNumber, upload_id: UploadId,
                        request: Request, caller: CallerDep, store: ContentStoreDep) -> Response:
    _, row, upload = await _session(request, caller, store, record_id, version, upload_id)
    if row.committed and row.content_upload_id == upload.id:
        raise VersionCommitted("This upload completed: it is the version's content now.")
    await store.discard(upload.id)
    return Response(status_code=204)
