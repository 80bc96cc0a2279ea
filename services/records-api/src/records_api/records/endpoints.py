"""The records routes: parse, authorise, delegate."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from ecrin_platform.conventions import IfNoneMatch, not_modified
from ecrin_platform.openapi import ETAG, LOCATION
from records_api.records.audit import (
    AUDIT,
    file_chain,
    record_target,
    scope_chain,
)
from records_api.records.content import ContentTooLong, RowTaken
from records_api.records.deps import (
    AuditRead,
    CallerDep,
    ContentRecord,
    ContentStoreDep,
    DeletableRecord,
    HistoryRecord,
    LatestReadableRecord,
    ReadableRecord,
    ReadService,
    ReadSessionDep,
    RecordId,
    Service,
    VersionableRecord,
    VersionNumber,
    WrapRestorableRecord,
)
from records_api.records.errors import (
    ContentLengthMismatch,
    IdempotencyKeyRequired,
    RecordNotFound,
    UnsupportedContentType,
    VersionCommitted,
    VersionConflict,
)
from records_api.records.resumable import upload_target
from records_api.records.schemas import (
    HEADERS_PAGE_MAX,
    HeaderPage,
    RecordIn,
    RecordOut,
    RecordPage,
    RecordWithContent,
    RekeyIn,
    RekeyOut,
    Scope,
    VersionIn,
    VersionOut,
    VersionPage,
    WrapRestoreIn,
)
from records_api.records.service import (
    commit_upload,
    etag,
    header_etag,
    listing_target,
    version_out,
)

router = APIRouter(prefix="/v1/records", tags=["records-api"])

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=8,
                                              max_length=128, pattern=r"^[\x21-\x7e]+$")]
IfMatch = Annotated[str | None, Header(alias="If-Match", max_length=200)]
OCTET_STREAM = "application/octet-stream"
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such record, or no access to it (never distinguished)"},
}
_WRITE_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **_PROBLEMS,
    403: {"description": "Read-only access to the scope, or a write the caller's "
                         "relationship does not allow (docs/records.md, Who may write what)"},
}


@router.post("", status_code=201, response_model=RecordOut,
             responses={**_WRITE_PROBLEMS, 201: LOCATION},
             summary="Create a record (committed at once when its content is sent inline, "
                     "pending until it is uploaded otherwise)")
async def create_record(body: RecordIn, caller: CallerDep, service: Service,
                        idempotency_key: IdempotencyKey = None) -> JSONResponse:
    if idempotency_key is None:
        raise IdempotencyKeyRequired("Send an Idempotency-Key header (a fresh random value).")
    response, replayed = await service.create(caller, body, idempotency_key)
    location = (f"/v1/records/{body.record_id}" if response["state"] == "committed"
                else f"/v1/records/{body.record_id}/versions/1/content")
    headers = {"Location": location}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(response, status_code=201, headers=headers)


@router.get("", response_model=RecordPage, responses=_PROBLEMS,
            summary="List a file's committed records, newest first (cursor pagination)")
async def list_records(caller: CallerDep, service: ReadService, audit_read: AuditRead,
                       file_id: uuid.UUID, scope: Scope | None = None,
                       cursor: Annotated[str | None, Query(max_length=200)] = None,
                       limit: Annotated[int, Query(ge=1, le=200)] = 50) -> RecordPage:
    page, listed = await service.page(caller, file_id, scope, cursor, limit)
    await audit_read(file_id, "record.list", {s: listing_target(file_id, s) for s in listed})
    return page


@router.get("/headers", response_model=HeaderPage, responses={
    **_PROBLEMS, 403: {"description": "Read-only access to the scope, or a relationship that "
                                      "does not re-key (re-keying is a write)"}},
            summary="Headers of a scope's committed record versions, for re-keying after a "
                    "key rotation (cursor pagination)")
async def list_headers(caller: CallerDep, service: ReadService, audit_read: AuditRead,
                       file_id: uuid.UUID, scope: Scope,
                       below_key_version: Annotated[int | None, Query(ge=1, le=0xFFFFFFFF)] = None,
                       cursor: Annotated[str | None, Query(max_length=200)] = None,
                       limit: Annotated[int, Query(ge=1, le=HEADERS_PAGE_MAX)] = 500
                       ) -> HeaderPage:
    page = await service.header_page(caller, file_id, scope, below_key_version, cursor, limit)
    await audit_read(file_id, "record.headers.list", {scope: listing_target(file_id, scope)})
    return page


AUDIT_READERS = frozenset({"owner", "patient", "parent", "guardian"})


@router.get("/audit", responses=_PROBLEMS,
            summary="The records API's audit chain of a file's scope (reads, writes, refusals); "
                    "without scope, the file's chain of events from before chains were per "
                    "scope")
async def file_audit(caller: CallerDep, session: ReadSessionDep, request: Request,
                     response: Response, file_id: uuid.UUID,
                     scope: Scope | None = None) -> dict[str, Any]:
    # The owner, the patient and their representatives read the audit, each only of the
    # scopes they may read: a patient never sees the clinical scope's chain.
    access = await caller.access(file_id)
    if access is None or access.relationship not in AUDIT_READERS or (
            scope is not None and not access.can_read(scope)):
        raise RecordNotFound()
    response.headers["Cache-Control"] = "no-store"
    chain = file_chain(file_id) if scope is None else scope_chain(file_id, scope)
    return await AUDIT.served(session, chain, request.app.state.audit_key)


@router.post("/rekey", response_model=RekeyOut, responses={
    **_WRITE_PROBLEMS,
    409: {"description": "A new wrap not under the scope's current key version "
                         "(key-version-not-current) or older than the stored one"},
    422: {"description": "A header that does not parse, changes more than the wrap, or "
                         "whose wrap is not the caller's (invalid-header, with item)"}},
             summary="Replace the DEK wraps of up to 500 record versions (key rotation; "
                     "owner and care team only)")
async def rekey(body: RekeyIn, caller: CallerDep, service: Service) -> RekeyOut:
    return await service.rekey(caller, body)


@router.get("/{record_id:uuid}", response_model=RecordWithContent,
            response_model_exclude_unset=True, responses={**_PROBLEMS, 200: ETAG},
            summary="A record and its latest committed version (ETag: \"v<version>\")")
async def get_record(record: LatestReadableRecord, service: ReadService, audit_read: AuditRead,
                     response: Response, include: Annotated[Literal["content"] | None, Query(
                         description="content: add the version's content ciphertext when at "
                                     "most 256 KiB (a small record in one request)")] = None,
                     if_none_match: IfNoneMatch = None) -> RecordOut | Response:
    # The ETag names the version and its key version (a re-key replaces the header's wrap
    # under the same version number): If-None-Match is answered once the version is read.
    out: RecordOut
    action = "record.read"
    end = then = None
    if include == "content":
        out, end, then = await service.latest_with_content(record)
        if then is not None or "content" in out.model_fields_set:
            action = "record.content.read"  # one event: the version and its content
    else:
        out = await service.latest(record)
    response.headers["ETag"] = header_etag(out.version.version, out.version.key_version)
    unchanged = not_modified(if_none_match, response.headers["ETag"])
    if unchanged is not None:
        return unchanged  # not audited: nothing released
    content = await audit_read(record.file_id, action,
                               {record.scope: record_target(record.id, record.current_version)},
                               end=end, then=then)
    if then is not None:
        assert isinstance(out, RecordWithContent)
        service.add_content(out, content, then.params["upload_id"])
    return out


@router.delete("/{record_id:uuid}", status_code=204, responses=_WRITE_PROBLEMS,
               summary="Delete a record (tombstone; the ciphertext is purged later): one's "
                       "own, or any as the file's owner")
async def delete_record(record: DeletableRecord, caller: CallerDep, service: Service,
                        if_match: IfMatch = None) -> Response:
    await service.delete(caller, record, if_match)
    return Response(status_code=204)


@router.get("/{record_id:uuid}/versions", response_model=VersionPage, responses=_PROBLEMS,
            summary="A record's committed versions, newest first")
async def list_versions(record: HistoryRecord, service: ReadService, audit_read: AuditRead,
                        before: Annotated[int | None, Query(ge=1)] = None,
                        limit: Annotated[int, Query(ge=1, le=200)] = 50) -> VersionPage:
    items, next_before = await service.history(record, before, limit)
    await audit_read(record.file_id, "record.history", {record.scope: record_target(record.id)})
    return VersionPage(items=items, next_before=next_before)


@router.post("/{record_id:uuid}/versions", status_code=201, response_model=RecordOut,
             responses={**_WRITE_PROBLEMS, 201: LOCATION},
             summary="Add a version (If-Match: the version it replaces; committed at once "
                     "when its content is sent inline): to one's own record, or any as the "
                     "owner or a care-team colleague")
async def add_version(record: VersionableRecord, body: VersionIn, caller: CallerDep,
                      service: Service, response: Response,
                      if_match: IfMatch = None) -> RecordOut:
    out = await service.add_version(caller, record, body, if_match)
    response.headers["Location"] = (
        f"/v1/records/{record.id}/versions/{out.version.version}"
        + ("" if out.version.committed else "/content"))
    return out


@router.get("/{record_id:uuid}/versions/{version}", response_model=VersionOut,
            responses={**_PROBLEMS, 200: ETAG},
            summary="One committed version's header and metadata ciphertext")
async def get_version(record: ReadableRecord, version: VersionNumber, service: ReadService,
                      audit_read: AuditRead, response: Response,
                      if_none_match: IfNoneMatch = None) -> VersionOut | Response:
    row = await service.committed_version(record, version)
    unchanged = not_modified(if_none_match, header_etag(version, row.key_version))
    if unchanged is not None:
        return unchanged  # not audited: nothing released
    target = record_target(record.id, version)
    await audit_read(record.file_id, "record.read", {record.scope: target})
    response.headers["ETag"] = header_etag(version, row.key_version)
    return version_out(row)


@router.post("/{record_id:uuid}/versions/{version}/wrap", response_model=VersionOut,
             responses={**_WRITE_PROBLEMS,
                        404: {"description": "No such record or version, no access to it, "
                                             "or no wrap of that key version kept"}},
             summary="Put back the wrap of a key version that a re-key replaced (undoes a "
                     "bad re-key; owner only)")
async def restore_wrap(record: WrapRestorableRecord, version: VersionNumber,
                       body: WrapRestoreIn, caller: CallerDep, service: Service) -> VersionOut:
    return await service.restore_wrap(caller, record, version, body.key_version)


@router.get("/{record_id:uuid}/versions/{version}/content", responses={
    200: {"content": {OCTET_STREAM: {}}, "description": "The content ciphertext", **ETAG},
    **_PROBLEMS},
    response_class=StreamingResponse, summary="Download a version's content ciphertext")
async def download_content(record: ContentRecord, version: VersionNumber,
                           service: ReadService, store: ContentStoreDep,
                           audit_read: AuditRead,
                           if_none_match: IfNoneMatch = None) -> Response:
    row = await service.committed_version(record, version)
    assert row.content_upload_id is not None
    unchanged = not_modified(if_none_match, etag(version))
    if unchanged is not None:
        return unchanged  # before the content is checked or read; not audited
    await service.release()  # the content check and the audit take connections of their own
    rows = await store.check_complete(row.content_upload_id, row.content_length)
    await audit_read(record.file_id, "record.content.read",
                     {record.scope: record_target(record.id, version)})
    return StreamingResponse(store.stream(row.content_upload_id, row.content_length, rows),
                             media_type=OCTET_STREAM,
                             headers={"Content-Length": str(row.content_length),
                                      "ETag": etag(version)})


@router.put("/{record_id:uuid}/versions/{version}/content", status_code=204,
            responses={**_PROBLEMS, 204: ETAG, 413: {"description": "Over the upload limit"},
                       415: {"description": "Not sent as application/octet-stream"},
                       422: {"description": "Wrong length or content for the header"}},
            openapi_extra={"requestBody": {"required": True, "content": {
                OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}}}},
            summary="Upload a version's content ciphertext (streamed); commits the version")
async def upload_content(record_id: RecordId, version: VersionNumber, request: Request,
                         caller: CallerDep, store: ContentStoreDep) -> Response:
    # Only the version's author uploads its content; looked up in a read transaction
    # closed before the body streams in (nothing held open during a large upload).
    _, row = await upload_target(request, caller, record_id, version)
    if row.committed:
        raise VersionCommitted("This version's content is already uploaded.")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != OCTET_STREAM:
        raise UnsupportedContentType(f"Send the ciphertext as {OCTET_STREAM}.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) != row.content_length:
        raise ContentLengthMismatch(f"The header announces {row.content_length} bytes.")
    try:
        received = await store.receive(request.stream(), record_id=record_id, version=version,
                                       account_id=caller.account_id,
                                       max_length=row.content_length)
    except ContentTooLong:
        raise ContentLengthMismatch(
            f"More than the {row.content_length} bytes the header announces.") from None
    except RowTaken:  # the upload was deleted meanwhile (the purge of a stalled one)
        raise VersionConflict("The upload was discarded meanwhile; send it again.") from None
    try:
        await commit_upload(store.sessionmaker, caller.account_id, record_id, version,
                            received)
    except BaseException:
        await store.discard_quietly(received.upload_id)
        raise
    return Response(status_code=204, headers={"ETag": etag(version)})
