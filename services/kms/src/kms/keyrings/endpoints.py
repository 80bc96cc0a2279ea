from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from ecrin_platform.access import AccessClient, FileAccess
from ecrin_platform.deps import CurrentUser, RawInternalToken, SessionDep
from ecrin_platform.problems import Forbidden, NotFound, ServiceUnavailable
from kms.keyrings.service import ROTATORS, KeyringService

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
                     response: Response, request: Request,
                     scope: Annotated[str | None, Query(pattern="^(clinical|shared|administrative)$")] = None,  # noqa: E501
                     version: Annotated[int | None, Query(ge=1)] = None) -> EntriesOut:
    if access.state != "active":
        raise NotFound("No such keyring.")
    service = KeyringService(session)
    response.headers.update(NO_STORE)
    versions = await service.current_versions(file_id)
    entries = await service.my_entries(access, scope, version)
    released = ",".join(sorted({f"{e['scope']}:v{e['version']}" for e in entries})) or "none"
    await request.app.state.audit.append(session, chain=f"file:{file_id}",
                                         actor=access.account_id, action="keys.release",
                                         target=released[:200])
    return EntriesOut(file_id=file_id,
                      versions={s: v for s, v in versions.items() if s in access.scopes},
                      entries=entries)


@router.post("/{file_id}/entries", status_code=201,
             summary="Rotate scopes: the next version sealed to each remaining member")
async def add_entries(file_id: uuid.UUID, body: EntriesIn, access: Access,
                      session: SessionDep, token: RawInternalToken, request: Request,
                      client: Annotated[AccessClient, Depends(get_access_client)]
                      ) -> dict[str, int]:
    if access.state != "active":
        raise NotFound("No such keyring.")
    if access.relationship not in ROTATORS:
        raise Forbidden("Only the owner or the care team rotate a scope.")
    members = await client.get_json(f"/internal/files/{file_id}/members", token)
    if members is None:
        raise NotFound("No such keyring.")
    service = KeyringService(session)
    stored = await service.add_entries(access, body.entries, members)
    for scope, version in service.rotated.items():
        await request.app.state.audit.append(session, chain=f"file:{file_id}",
                                             actor=access.account_id, action="scope.rotate",
                                             target=f"{scope}:v{version}")
    await session.commit()
    for scope, version in service.rotated.items():
        # The sharing service learns the scope's current version (the records API re-keys
        # only to it); the rotation is done once the rotating device re-keyed the records.
        # Best effort: a rotation the sharing service missed stays pending, and the next
        # sync rotates again.
        await client.post(f"/internal/rotations/{file_id}/{scope}/rotated", token,
                          json={"version": version})
    return {"stored": stored, **{f"{s}_version": v for s, v in service.rotated.items()}}


@router.post("/{file_id}/grants/{grant_id}", status_code=201,
             summary="Store the keyring entries of a grant (sealed by the granter, or by the "
                     "invitee on redemption), which activates it")
async def store_grant(file_id: uuid.UUID, grant_id: uuid.UUID, body: EntriesIn,
                      user: CurrentUser, session: SessionDep, token: RawInternalToken,
                      request: Request,
                      client: Annotated[AccessClient, Depends(get_access_client)]
                      ) -> dict[str, int]:
    grant = await client.get_json(f"/internal/grants/{grant_id}", token)
    if grant is None or grant["file_id"] != str(file_id):
        raise NotFound("No such grant.")
    caller = uuid.UUID(user.account_id)
    stored = await KeyringService(session).store_grant(grant, caller, body.entries)
    await request.app.state.audit.append(session, chain=f"file:{file_id}", actor=caller,
                                         action="keys.grant", target=str(grant_id))
    await session.commit()  # the entries are durable before the grant turns active
    status = await client.post(f"/internal/grants/{grant_id}/activate", token)
    if status != 204:
        raise ServiceUnavailable("The grant could not be activated; retry the same request.",
                                 headers={"Retry-After": "2"})
    return {"stored": stored}


AUDIT_READERS = frozenset({"owner", "patient", "parent", "guardian"})


@router.get("/{file_id}/audit", summary="The kms's audit chain of a file (key releases)")
async def audit(file_id: uuid.UUID, access: Access, session: SessionDep, request: Request,
                response: Response) -> dict[str, Any]:
    if access.state != "active" or access.relationship not in AUDIT_READERS:
        raise NotFound("No such keyring.")
    response.headers.update(NO_STORE)
    return await request.app.state.audit.served(session, f"file:{file_id}",
                                                request.app.state.audit_key)
