from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from ecrin_platform.access import AccessClient, FileAccess
from ecrin_platform.deps import CurrentUser, RawInternalToken, SessionDep
from ecrin_platform.problems import NotFound, ServiceUnavailable
from kms.keyrings.service import KeyringService

router = APIRouter(prefix="/v1/keyrings", tags=["kms"])
NO_STORE = {"Cache-Control": "no-store"}


class EntriesIn(BaseModel):
    entries: list[dict[str, Any]] = Field(min_length=1, max_length=500)


class EntriesOut(BaseModel):
    file_id: uuid.UUID
    versions: dict[str, int]
    entries: list[dict[str, Any]]


def get_access_client(request: Request) -> AccessClient:
    return request.app.state.access


async def file_access(file_id: uuid.UUID, user: CurrentUser, token: RawInternalToken,
                      client: Annotated[AccessClient, Depends(get_access_client)]) -> FileAccess:
    access = await client.access(file_id, uuid.UUID(user.account_id), token)
    if access is None:
        raise NotFound("No such keyring.")
    return access


Access = Annotated[FileAccess, Depends(file_access)]


@router.put("/{file_id}/initial", status_code=201, response_model=EntriesOut,
            summary="Store a new file's first keyring (v1 of each scope, sealed to the owner)")
async def create_initial(file_id: uuid.UUID, body: EntriesIn, access: Access,
                         session: SessionDep, token: RawInternalToken,
                         client: Annotated[AccessClient, Depends(get_access_client)],
                         response: Response) -> EntriesOut:
    service = KeyringService(session)
    created = await service.create_initial(access, body.entries)
    await session.commit()  # the keyring is durable before the file is activated
    status = await client.post(f"/internal/files/{file_id}/activate", token)
    if status != 204:
        raise ServiceUnavailable("The file could not be activated; retry the same request.",
                                 headers={"Retry-After": "2"})
    client.forget(file_id, access.account_id)
    response.status_code = 201 if created else 200
    return EntriesOut(file_id=file_id, versions=await service.current_versions(file_id),
                      entries=await service.my_entries(access, None, None))


@router.get("/{file_id}/entries", response_model=EntriesOut,
            summary="One's own keyring entries for the scopes one may read")
async def my_entries(file_id: uuid.UUID, access: Access, session: SessionDep,
                     response: Response,
                     scope: Annotated[str | None, Query(pattern="^(clinical|shared|administrative)$")] = None,  # noqa: E501
                     version: Annotated[int | None, Query(ge=1)] = None) -> EntriesOut:
    if access.state != "active":
        raise NotFound("No such keyring.")
    service = KeyringService(session)
    response.headers.update(NO_STORE)
    versions = await service.current_versions(file_id)
    return EntriesOut(file_id=file_id,
                      versions={s: v for s, v in versions.items() if s in access.scopes},
                      entries=await service.my_entries(access, scope, version))


@router.post("/{file_id}/entries", status_code=201,
             summary="Add entries: grant existing versions to a member, or rotate a scope")
async def add_entries(file_id: uuid.UUID, body: EntriesIn, access: Access,
                      session: SessionDep) -> dict[str, int]:
    if access.state != "active":
        raise NotFound("No such keyring.")
    return {"stored": await KeyringService(session).add_entries(access, body.entries)}
