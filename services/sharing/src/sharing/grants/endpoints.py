from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import TypeAdapter

from ecrin_platform.conventions import IfNoneMatch, json_with_etag
from ecrin_platform.deps import CurrentUser, InternalClaimsDep, SessionDep
from ecrin_platform.openapi import DIGEST_ETAG, LOCATION
from ecrin_platform.problems import NotFound
from ecrin_platform.tokens import HEADER
from sharing.grants.rules import DEFAULTS
from sharing.grants.schemas import (
    GrantCreate,
    GrantOut,
    InvitationCreate,
    InvitationLookupOut,
    InvitationOut,
    InvitationRedeem,
    MemberOut,
    RotationDone,
    RotationDoneOut,
    RotationOut,
    ScopeName,
)
from sharing.grants.service import GrantsService

AUDIT_READERS = frozenset({"owner", "patient", "parent", "guardian"})
#: A rotation changes what the records API checks (key versions, pending rotations), not
#: what the kms caches (grants).
RECORDS_ONLY = frozenset({"records-api"})
NO_STORE = {"Cache-Control": "no-store"}


async def get_service(request: Request, session: SessionDep) -> GrantsService:
    # async: FastAPI runs a plain ``def`` dependency in a worker thread
    return GrantsService(session, request.app.state.clock.now(), request.app.state.audit)


Service = Annotated[GrantsService, Depends(get_service)]

grants = APIRouter(prefix="/v1/grants", tags=["sharing"])
invitations = APIRouter(prefix="/v1/invitations", tags=["sharing"])
rotations = APIRouter(prefix="/v1/rotations", tags=["sharing"])
files_extra = APIRouter(prefix="/v1/files", tags=["sharing"])
internal = APIRouter(prefix="/internal", include_in_schema=False)


async def tell_changes(request: Request, service: GrantsService, *,
                       only: frozenset[str] | None = None) -> None:
    """Commit now, then tell the records API and the kms which files' access changed:
    by a POST (``sharing.notify``; to the services ``only`` names, if given) and on the
    feed both follow (``sharing.feed``): every change, since the records API keeps its
    answers longer while it follows (a rotation's key versions included; the kms drops an
    answer it did not need to). Told before the commit, they could ask again and cache the
    old answer. The request's own commit afterwards has nothing left to do."""
    notifier = getattr(request.app.state, "notifier", None)
    feed = getattr(request.app.state, "access_feed", None)
    if not service.changed or (notifier is None and feed is None):
        return
    await service.session.commit()
    telling = []
    if feed is not None:
        telling.append(feed.publish(service.changed))
    if notifier is not None:
        telling.append(notifier.files_changed(
            service.changed, token=request.headers.get(HEADER, ""),
            request_id=request.headers.get("x-request-id"), only=only))
    await asyncio.gather(*telling)


def me(user: CurrentUser) -> uuid.UUID:
    return uuid.UUID(user.account_id)


Me = Annotated[uuid.UUID, Depends(me)]


@grants.get("/defaults", summary="The scopes each relationship gets by default")
async def defaults(_: Me) -> dict[str, dict[str, str]]:
    return DEFAULTS


@grants.post("", status_code=201, response_model=GrantOut, responses={201: LOCATION},
             summary="Create a grant (pending until the grantee's keyring entries are stored)")
async def create_grant(body: GrantCreate, account: Me, service: Service,
                       response: Response) -> GrantOut:
    out, created = await service.create(account, body)
    response.status_code = 201 if created else 200
    if created:
        response.headers["Location"] = f"/v1/grants/{out.id}"
    return out


_GRANT_LIST = TypeAdapter(list[GrantOut])


@grants.get("", response_model=list[GrantOut], responses={200: DIGEST_ETAG},
            summary="A file's grants")
async def list_grants(file_id: uuid.UUID, account: Me, service: Service,
                      if_none_match: IfNoneMatch = None) -> Response:
    listed = await service.list_for_file(file_id, account)
    return json_with_etag(_GRANT_LIST.dump_json(listed, by_alias=True), if_none_match,
                          NO_STORE)


@grants.get("/{grant_id:uuid}", response_model=GrantOut, responses={200: DIGEST_ETAG},
            summary="One grant (granter or grantee)")
async def get_grant(grant_id: uuid.UUID, account: Me, service: Service,
                    if_none_match: IfNoneMatch = None) -> Response:
    out = await service.get(grant_id, account)
    return json_with_etag(out.model_dump_json(by_alias=True).encode(), if_none_match)


@grants.delete("/{grant_id:uuid}", response_model=GrantOut,
               summary="Revoke a grant: access stops at once and the scopes' rotation is queued")
async def revoke_grant(grant_id: uuid.UUID, account: Me, service: Service,
                       request: Request) -> GrantOut:
    out = await service.revoke(grant_id, account)
    await tell_changes(request, service)
    return out


@files_extra.get("/{file_id}/members", response_model=list[MemberOut],
                 summary="The file's live members, for a rotation (owner and care team only)")
async def members(file_id: uuid.UUID, account: Me, service: Service) -> list[MemberOut]:
    return await service.members(file_id, account)


@files_extra.get("/{file_id}/audit", summary="The sharing service's audit chain of a file")
async def file_audit(file_id: uuid.UUID, account: Me, service: Service, request: Request,
                     response: Response) -> dict[str, Any]:
    mine = await service._my_grant(file_id, account)
    if mine.relationship not in AUDIT_READERS:
        raise NotFound("No such file.")
    response.headers.update(NO_STORE)
    return await request.app.state.audit.served(service.session, f"file:{file_id}",
                                                request.app.state.audit_key)


@rotations.get("", response_model=list[RotationOut],
               summary="Scopes waiting for a key rotation (revocations and expiries)")
async def pending_rotations(account: Me, service: Service, request: Request,
                            file_id: Annotated[uuid.UUID | None, Query()] = None
                            ) -> list[RotationOut]:
    out = await service.rotations(account, file_id)
    await tell_changes(request, service)  # grants found expired
    return out


@rotations.post("/{file_id}/{scope}/done", response_model=RotationDoneOut,
                summary="Say the scope's records are re-keyed to its current key version: "
                        "its pending rotations are done (owner or care team)")
async def rotation_done(file_id: uuid.UUID, scope: ScopeName, body: RotationDone, account: Me,
                        service: Service, request: Request) -> RotationDoneOut:
    done = await service.rotation_done(file_id, scope, body.version, account)
    await tell_changes(request, service, only=RECORDS_ONLY)
    return RotationDoneOut(done=done)


@invitations.post("", status_code=201, response_model=InvitationOut,
                  responses={201: LOCATION, 403: {"description": "Not the file's owner"}},
                  summary="Invite someone without an account (keys wrapped under a code)")
async def invite(body: InvitationCreate, account: Me, service: Service,
                 response: Response) -> InvitationOut:
    out = await service.invite(account, body)
    # The invitation itself (cancelled with DELETE there; listed at /v1/invitations).
    response.headers["Location"] = f"/v1/invitations/{out.id}"
    return out


@invitations.get("", response_model=list[InvitationOut], summary="A file's invitations")
async def list_invitations(file_id: uuid.UUID, account: Me,
                           service: Service) -> list[InvitationOut]:
    return await service.invitations(file_id, account)


@invitations.get("/lookup/{lookup_id}", response_model=InvitationLookupOut,
                 summary="Find an open invitation by the id derived from its code")
async def lookup(lookup_id: str, _: Me, service: Service,
                 response: Response) -> InvitationLookupOut:
    response.headers.update(NO_STORE)
    return await service.lookup(lookup_id)


@invitations.post("/{invitation_id}/redeem", response_model=GrantOut,
                  summary="Redeem an invitation (single use): a pending grant for the caller")
async def redeem(invitation_id: uuid.UUID, body: InvitationRedeem, account: Me,
                 service: Service) -> GrantOut:
    return await service.redeem(invitation_id, account, body.lookup_id, body.proof)


@invitations.delete("/{invitation_id}", status_code=204, summary="Cancel an invitation")
async def cancel(invitation_id: uuid.UUID, account: Me, service: Service,
                 request: Request) -> Response:
    await service.cancel_invitation(invitation_id, account)
    await tell_changes(request, service)
    return Response(status_code=204)


async def _kms_principal(claims: InternalClaimsDep) -> uuid.UUID:
    if claims.audience != "kms" or claims.principal is None:
        raise NotFound("No such grant.")
    return uuid.UUID(claims.principal.account_id)


KmsCaller = Annotated[uuid.UUID, Depends(_kms_principal)]


@internal.get("/grants/{grant_id}", response_model=GrantOut)
async def grant_for_keys(grant_id: uuid.UUID, account: KmsCaller, service: Service) -> GrantOut:
    return await service.for_keys(grant_id, account)


@internal.post("/grants/{grant_id}/activate", status_code=204)
async def activate_grant(grant_id: uuid.UUID, account: KmsCaller, service: Service,
                         request: Request) -> Response:
    """The grant's keys are stored: it is live. The grantee's answer changes (the newest
    live grant wins, and it may give less than an older one): told like any change."""
    await service.activate(grant_id, account)
    await tell_changes(request, service)
    return Response(status_code=204)


@internal.post("/rotations/{file_id}/{scope}/rotated", status_code=204)
async def scope_rotated(file_id: uuid.UUID, scope: ScopeName, body: RotationDone,
                        account: KmsCaller, service: Service, request: Request) -> Response:
    """The kms stored a rotation's keys: the scope's current version for re-keys."""
    await service.scope_rotated(file_id, scope, body.version, account)
    await tell_changes(request, service, only=RECORDS_ONLY)
    return Response(status_code=204)


@internal.get("/files/{file_id}/members", response_model=list[MemberOut])
async def members_for_kms(file_id: uuid.UUID, account: KmsCaller,
                          service: Service) -> list[MemberOut]:
    """For the kms, checking a rotation: who may receive the next version of a scope."""
    return await service.members(file_id, account)
