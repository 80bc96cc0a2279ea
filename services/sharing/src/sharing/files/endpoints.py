from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from ecrin_platform.conventions import IfNoneMatch, json_with_etag
from ecrin_platform.db import read_only_session
from ecrin_platform.deps import CurrentUser, InternalClaimsDep, SessionDep
from ecrin_platform.openapi import DIGEST_ETAG, LOCATION
from ecrin_platform.problems import Forbidden, NotFound
from sharing.files.repository import FilesRepository
from sharing.files.schemas import AccessOut, FileCreate, FileOut, FilePage, SearchTokensIn
from sharing.files.service import FilesService


async def get_service(request: Request, session: SessionDep) -> FilesService:
    # async: FastAPI runs a plain ``def`` dependency in a worker thread
    return FilesService(FilesRepository(session), request.app.state.clock.now())


Service = Annotated[FilesService, Depends(get_service)]


async def get_read_service(request: Request) -> AsyncIterator[FilesService]:
    """For routes that only read: on PostgreSQL no BEGIN and ROLLBACK around their
    queries (``read_only_session``). The access decision is asked on every cache miss of
    the records API and the kms, so its round trips count."""
    async with read_only_session(request.app.state.engine) as session:
        yield FilesService(FilesRepository(session), request.app.state.clock.now())


ReadService = Annotated[FilesService, Depends(get_read_service)]
NO_STORE = {"Cache-Control": "no-store"}

router = APIRouter(prefix="/v1/files", tags=["sharing"])
internal = APIRouter(prefix="/internal", include_in_schema=False)


@router.post("", status_code=201, response_model=FileOut,
             summary="Create a patient file (pending until its keyring is stored in the kms)",
             responses={200: {"model": FileOut,
                              "description": "The caller already made this file (a retry)"},
                        201: LOCATION})
async def create_file(body: FileCreate, user: CurrentUser, service: Service,
                      response: Response) -> FileOut:
    if user.role != "practitioner":
        raise Forbidden("Only practitioners create patient files.")
    out, created = await service.create(uuid.UUID(user.account_id), body)
    response.status_code = 201 if created else 200
    response.headers.update(NO_STORE)
    if created:
        response.headers["Location"] = f"/v1/files/{out.id}"
    return out


@router.get("", response_model=FilePage,
            summary="List the files one may access; `token` filters by blind-index tokens")
async def list_files(user: CurrentUser, service: Service, response: Response,
                     token: Annotated[list[str], Query(max_length=16)] = [],  # noqa: B006 (the framework copies list defaults; never mutated)
                     cursor: Annotated[str | None, Query(max_length=200)] = None,
                     limit: Annotated[int, Query(ge=1, le=200)] = 50) -> FilePage:
    response.headers.update(NO_STORE)
    return await service.page(uuid.UUID(user.account_id), tokens=token, cursor=cursor,
                              limit=limit)


@router.get("/{file_id}", response_model=FileOut, responses={200: DIGEST_ETAG},
            summary="Get a file and one's access to it")
async def get_file(file_id: uuid.UUID, user: CurrentUser, service: Service,
                   if_none_match: IfNoneMatch = None) -> Response:
    out = await service.get(file_id, uuid.UUID(user.account_id))
    return json_with_etag(out.model_dump_json(by_alias=True).encode(), if_none_match,
                          NO_STORE)


@router.put("/{file_id}/search-tokens", status_code=204,
            summary="Replace a file's blind-index tokens (owner only)")
async def put_tokens(file_id: uuid.UUID, body: SearchTokensIn, user: CurrentUser,
                     service: Service) -> Response:
    await service.replace_tokens(file_id, uuid.UUID(user.account_id), body.search_tokens)
    return Response(status_code=204)


@internal.get("/access/{file_id}/{account_id}", response_model=AccessOut)
async def access(file_id: uuid.UUID, account_id: uuid.UUID, claims: InternalClaimsDep,
                 request: Request, service: ReadService) -> AccessOut:
    """The decision point for records-api and kms. They forward the user's own token, so
    they can only ask about the user the gateway authenticated."""
    if claims.principal is None or claims.principal.account_id != str(account_id):
        raise NotFound("No such file.")
    caller = request.headers.get("x-ecrin-caller", claims.audience)
    if caller != claims.audience:
        raise NotFound("No such file.")
    return await service.access(file_id, account_id, include_pending=claims.audience == "kms")


@internal.post("/files/{file_id}/activate", status_code=204)
async def activate(file_id: uuid.UUID, claims: InternalClaimsDep, service: Service) -> Response:
    """Called by the kms once the file's first keyring is stored (the saga's last step)."""
    if claims.audience != "kms" or claims.principal is None:
        raise NotFound("No such file.")
    await service.activate(file_id, uuid.UUID(claims.principal.account_id))
    return Response(status_code=204)
