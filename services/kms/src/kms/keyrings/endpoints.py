"""Keyring routes. Their audit events go to one chain per scope of a file
(``file:<id>:<scope>``: key releases, rotations), or to the file's chain (``file:<id>``:
grants, and refused releases that name no scope), so that a reader of the ``shared`` scope
never sees the clinical scope's key releases (``docs/sharing.md``, audit)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from ecrin_platform.access import AccessClient, FileAccess
from ecrin_platform.audit import AuditLog
from ecrin_platform.deps import CurrentUser, RawInternalToken, SessionDep
from ecrin_platform.openapi import LOCATION
from ecrin_platform.problems import Forbidden, NotFound, ServiceUnavailable
from kms.keyrings.service import ROTATORS, KeyringService

router = APIRouter(prefix="/v1/keyrings", tags=["kms"])
NO_STORE = {"Cache-Control": "no-store"}
ScopeQuery = Annotated[str | None, Query(pattern="^(clinical|shared|administrative)$")]


def file_chain(file_id: uuid.UUID) -> str:
    return f"file:{file_id}"


def scope_chain(file_id: uuid.UUID, scope: str) -> str:
    return f"file:{file_id}:{scope}"


class EntriesIn(BaseModel):
    entries: list[dict[str, Any]] = Field(min_length=1, max_length=500)


class EntriesOut(BaseModel):
    file_id: uuid.UUID
    versions: dict[str, int]
    entries: list[dict[str, Any]]


async def get_access_client(request: Request) -> AccessClient:
    return request.app.state.access_client


async def file_access(file_id: uuid.UUID, user: CurrentUser, token: RawInternalToken,
                      client: Annotated[AccessClient, Depends(get_access_client)]) -> FileAccess:
    access = await client.access(file_id, uuid.UUID(user.account_id), token=token)
    if access is None:
        raise NotFound("No such keyring.")
    return access


Access = Annotated[FileAccess, Depends(file_access)]


async def maybe_file_access(file_id: uuid.UUID, user: CurrentUser, token: RawInternalToken,
                            client: Annotated[AccessClient, Depends(get_access_client)]
                            ) -> FileAccess | None:
    return await client.access(file_id, uuid.UUID(user.account_id), token=token)


MaybeAccess = Annotated[FileAccess | None, Depends(maybe_file_access)]


async def refused_release(request: Request, file_id: uuid.UUID, actor: uuid.UUID,
                          scope: str | None, version: int | None) -> None:
    """Audit a refused key release (``denied``) in a short transaction of its own: the
    request's is rolled back. Only for a file that has a keyring, so that guessing file ids
    writes nothing."""
    audit: AuditLog = request.app.state.audit
    async with request.app.state.sessionmaker() as session, session.begin():
        if not await KeyringService(session).current_versions(file_id):
            return
        if scope is None:
            chain, target = file_chain(file_id), f"file:{file_id}"
        else:
            chain = scope_chain(file_id, scope)
            target = f"{scope}:v{version}" if version is not None else scope
        await audit.append(session, chain=chain, actor=actor, action="keys.release",
                           target=target, outcome="denied")


@router.put("/{file_id}/initial", status_code=201, response_model=EntriesOut,
            responses={201: LOCATION, 403: {"description": "Not the file's owner"}},
            summary="Store a new file's first keyring (v1 of each scope, sealed to the owner)")
async def create_initial(file_id: uuid.UUID, body: EntriesIn, access: Access,
                         session: SessionDep, token: RawInternalToken,
                         client: Annotated[AccessClient, Depends(get_access_client)],
                         response: Response) -> EntriesOut:
    service = KeyringService(session)
    created = await service.create_initial(access, body.entries)
    await session.commit()  # the keyring is durable before the file is activated
    activated = await client.send("POST", f"/internal/files/{file_id}/activate", token)
    if activated.status_code != 204:
        raise ServiceUnavailable("The file could not be activated; retry the same request.",
                                 headers={"Retry-After": "2"})
    client.forget(file_id, access.account_id)
    response.status_code = 201 if created else 200
    if created:
        response.headers["Location"] = f"/v1/keyrings/{file_id}/entries"
    return EntriesOut(file_id=file_id, versions=await service.current_versions(file_id),
                      entries=await service.my_entries(access, None, None))


@router.get("/{file_id}/entries", response_model=EntriesOut,
            summary="One's own keyring entries for the scopes one may read")
async def my_entries(file_id: uuid.UUID, access: MaybeAccess, user: CurrentUser,
                     session: SessionDep, response: Response, request: Request,
                     scope: ScopeQuery = None,
                     version: Annotated[int | None, Query(ge=1)] = None) -> EntriesOut:
    # Refusals are decided before the request's transaction reads anything: the audit
    # event of one is written in a transaction of its own.
    if access is None or (scope is not None and scope not in access.scopes):
        await refused_release(request, file_id, uuid.UUID(user.account_id), scope, version)
        raise NotFound("No such keyring.")
    if access.state != "active":
        raise NotFound("No such keyring.")
    service = KeyringService(session)
    response.headers.update(NO_STORE)
    versions = await service.current_versions(file_id)
    entries = await service.my_entries(access, scope, version)
    # One event per scope asked for, in that scope's chain: what was released of it.
    released: dict[str, set[int]] = {s: set() for s in access.scopes
                                     if scope is None or s == scope}
    for entry in entries:
        released.setdefault(entry["scope"], set()).add(entry["version"])
    audit: AuditLog = request.app.state.audit
    for one in sorted(released):  # chains locked in name order (one transaction)
        target = ",".join(f"{one}:v{v}" for v in sorted(released[one])) or f"{one}:none"
        await audit.append(session, chain=scope_chain(file_id, one), actor=access.account_id,
                           action="keys.release", target=target[:200])
    return EntriesOut(file_id=file_id,
                      versions={s: v for s, v in versions.items() if s in access.scopes},
                      entries=entries)


@router.post("/{file_id}/entries", status_code=201,
             responses={201: LOCATION, 403: {"description": "Not the owner or the care team, "
                                                            "or no key of the scope held"}},
             summary="Rotate scopes: the next version sealed to each remaining member")
async def add_entries(file_id: uuid.UUID, body: EntriesIn, access: Access,
                      session: SessionDep, token: RawInternalToken, request: Request,
                      response: Response,
                      client: Annotated[AccessClient, Depends(get_access_client)]
                      ) -> dict[str, int]:
    if access.state != "active":
        raise NotFound("No such keyring.")
    if access.relationship not in ROTATORS:
        raise Forbidden("Only the owner or the care team rotate a scope.")
    members = await client.ask("GET", f"/internal/files/{file_id}/members", token)
    if members is None:
        raise NotFound("No such keyring.")
    service = KeyringService(session)
    stored = await service.add_entries(access, body.entries, members)
    for scope, version in sorted(service.rotated.items()):
        await request.app.state.audit.append(session, chain=scope_chain(file_id, scope),
                                             actor=access.account_id, action="scope.rotate",
                                             target=f"{scope}:v{version}")
    await session.commit()
    for scope, version in service.rotated.items():
        # The sharing service learns the scope's current version (the records API re-keys
        # only to it); the rotation is done once the rotating device re-keyed the records.
        # Best effort: a rotation the sharing service missed stays pending, and the next
        # sync rotates again.
        await client.send("POST", f"/internal/rotations/{file_id}/{scope}/rotated", token,
                          json={"version": version})
    response.headers["Location"] = f"/v1/keyrings/{file_id}/entries"
    return {"stored": stored, **{f"{s}_version": v for s, v in service.rotated.items()}}


@router.post("/{file_id}/grants/{grant_id}", status_code=201, responses={201: LOCATION},
             summary="Store the keyring entries of a grant (sealed by the granter, or by the "
                     "invitee on redemption), which activates it")
async def store_grant(file_id: uuid.UUID, grant_id: uuid.UUID, body: EntriesIn,
                      user: CurrentUser, session: SessionDep, token: RawInternalToken,
                      request: Request, response: Response,
                      client: Annotated[AccessClient, Depends(get_access_client)]
                      ) -> dict[str, int]:
    grant = await client.ask("GET", f"/internal/grants/{grant_id}", token)
    if grant is None or grant["file_id"] != str(file_id):
        raise NotFound("No such grant.")
    caller = uuid.UUID(user.account_id)
    stored = await KeyringService(session).store_grant(grant, caller, body.entries)
    await request.app.state.audit.append(session, chain=file_chain(file_id), actor=caller,
                                         action="keys.grant", target=str(grant_id))
    await session.commit()  # the entries are durable before the grant turns active
    activated = await client.send("POST", f"/internal/grants/{grant_id}/activate", token)
    if activated.status_code != 204:
        raise ServiceUnavailable("The grant could not be activated; retry the same request.",
                                 headers={"Retry-After": "2"})
    # What the entries made: the grant, now active (the grantee reads the entries at
    # /v1/keyrings/{file_id}/entries).
    response.headers["Location"] = f"/v1/grants/{grant_id}"
    return {"stored": stored}


AUDIT_READERS = frozenset({"owner", "patient", "parent", "guardian"})


@router.get("/{file_id}/audit",
            summary="The kms's audit chain of a file's scope (key releases, rotations); "
                    "without scope, the file's chain (grants, refusals, and releases from "
                    "before chains were per scope)")
async def audit(file_id: uuid.UUID, access: Access, session: SessionDep, request: Request,
                response: Response, scope: ScopeQuery = None) -> dict[str, Any]:
    # The owner, the patient and their representatives, each only for the scopes they
    # may read: a patient never sees the clinical scope's releases.
    if access.state != "active" or access.relationship not in AUDIT_READERS or (
            scope is not None and not access.can_read(scope)):
        raise NotFound("No such keyring.")
    response.headers.update(NO_STORE)
    chain = file_chain(file_id) if scope is None else scope_chain(file_id, scope)
    return await request.app.state.audit.served(session, chain, request.app.state.audit_key)
