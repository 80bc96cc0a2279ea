from __future__ import annotations

import uuid
from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response

from ecrin_platform.deps import (
    CurrentPrincipal,
    CurrentUser,
    GatewaySystem,
    InternalClaimsDep,
    ReadSessionDep,
    SessionDep,
)
from ecrin_platform.tokens import Principal
from kms.accounts.repository import AccountKeysRepository
from kms.accounts.schemas import (
    AccountKeysIn,
    DirectoryEntryOut,
    IdentityChangeIn,
    KeyChangeOut,
    PublicIdentityIn,
    UnlockOut,
    WrappedIdentityIn,
)
from kms.accounts.service import AccountKeysService, StepUpRequired, require_owner
from kms.models import DirectoryEntry, KeyChangeRow

#: The claim the gateway puts in the internal token of a call it makes right after checking
#: a fresh passphrase proof (and the second factor) for an identity change. The proxy never
#: issues it, and services trust no client header.
STEP_UP_CLAIM = "step_up"


async def get_service(session: SessionDep) -> AccountKeysService:
    # async: FastAPI runs a plain ``def`` dependency in a worker thread
    return AccountKeysService(AccountKeysRepository(session))


Service = Annotated[AccountKeysService, Depends(get_service)]


async def get_read_service(session: ReadSessionDep) -> AccountKeysService:
    """For routes that only read, each answer from one statement (no transaction block
    on PostgreSQL)."""
    return AccountKeysService(AccountKeysRepository(session))


ReadService = Annotated[AccountKeysService, Depends(get_read_service)]
KeyId = Annotated[str, Path(min_length=8, max_length=64, pattern="^[A-Za-z0-9_-]+$",
                            description="The KDF salt (b64) that the wrapping KEK came from")]

directory = APIRouter(prefix="/v1/directory", tags=["kms"])
keys = APIRouter(prefix="/v1/keys/me", tags=["kms"])
internal = APIRouter(prefix="/internal/accounts", include_in_schema=False)


async def step_up_for_identity(claims: InternalClaimsDep) -> Principal:
    """The account whose fresh passphrase proof the gateway checked for this very call."""
    if claims.principal is None or claims.extra.get(STEP_UP_CLAIM) != "identity":
        raise StepUpRequired("Replacing an identity needs a fresh passphrase proof "
                             "(POST /v1/auth/identity).")
    return claims.principal


StepUpPrincipal = Annotated[Principal, Depends(step_up_for_identity)]


def _out(entry: DirectoryEntry, changes: list[KeyChangeRow]) -> DirectoryEntryOut:
    # SQLite hands timestamps back without their zone; they are stored in UTC. A naive
    # value would be rendered without an offset, which is no RFC 3339 date-time.
    updated_at = entry.updated_at
    if updated_at.tzinfo is None:
        updated_at = updated_at.replace(tzinfo=UTC)
    return DirectoryEntryOut(
        account_id=entry.account_id, identity=entry.identity, fingerprint=entry.fingerprint,
        updated_at=updated_at,
        key_changes=[KeyChangeOut(previous_identity=c.previous_identity, statement=c.statement)
                     for c in changes])


@directory.put("/{account_id}", response_model=DirectoryEntryOut,
               summary="Publish one's own public identity (self-signature checked); replacing "
                       "it is refused here (403 step-up-required): see POST /v1/auth/identity")
async def publish_identity(account_id: uuid.UUID, body: PublicIdentityIn, user: CurrentUser,
                           service: Service) -> DirectoryEntryOut:
    require_owner(user.account_id, account_id)
    entry = await service.publish_identity(account_id, body)
    return _out(entry, await service.key_changes(account_id))


@directory.get("/{account_id}", response_model=DirectoryEntryOut,
               summary="Fetch an account's public identity, fingerprint and key changes")
async def get_identity(account_id: uuid.UUID, user: CurrentUser,
                       service: Service) -> DirectoryEntryOut:
    entry = await service.get_identity(account_id)
    return _out(entry, await service.key_changes(account_id))


@keys.get("/wraps/passphrase/{key_id}", summary="Fetch one's identity keys wrapped under a KEK")
async def get_passphrase_wrap(key_id: KeyId, user: CurrentUser,
                              service: Service) -> dict[str, Any]:
    return await service.get_wrap(uuid.UUID(user.account_id), "passphrase", key_id)


@keys.get("/unlock/{key_id}", response_model=UnlockOut,
          summary="Fetch one's identity keys wrapped under a KEK and one's own directory "
                  "entry, in one request (login, unlock)")
async def get_unlock(key_id: KeyId, user: CurrentUser, service: ReadService) -> UnlockOut:
    wrap, entry, changes = await service.unlock(uuid.UUID(user.account_id), key_id)
    return UnlockOut(wrap=wrap, directory=_out(entry, changes))


@keys.put("/wraps/passphrase/{key_id}", status_code=204,
          summary="Store one's identity keys wrapped under a new KEK (passphrase change)")
async def put_passphrase_wrap(key_id: KeyId, body: WrappedIdentityIn,
                              principal: CurrentPrincipal, service: Service) -> Response:
    await service.put_wrap(uuid.UUID(principal.account_id), "passphrase", key_id, body)
    return Response(status_code=204)


@keys.delete("/wraps/passphrase/{key_id}", status_code=204,
             summary="Delete a wrap under an old KEK")
async def delete_passphrase_wrap(key_id: KeyId, user: CurrentUser, service: Service) -> Response:
    await service.delete_wrap(uuid.UUID(user.account_id), key_id)
    return Response(status_code=204)


@keys.get("/wraps/recovery", summary="Fetch one's identity keys wrapped under the recovery key")
async def get_recovery_wrap(principal: CurrentPrincipal, service: Service) -> dict[str, Any]:
    return await service.get_wrap(uuid.UUID(principal.account_id), "recovery", "recovery")


@internal.put("/{account_id}/keys", status_code=204)
async def store_account_keys(account_id: uuid.UUID, body: AccountKeysIn, _: GatewaySystem,
                             service: Service) -> Response:
    await service.store_new_account(account_id, body)
    return Response(status_code=204)


@internal.put("/{account_id}/identity", response_model=DirectoryEntryOut)
async def change_identity(account_id: uuid.UUID, body: IdentityChangeIn,
                          principal: StepUpPrincipal, service: Service) -> DirectoryEntryOut:
    require_owner(principal.account_id, account_id)
    entry = await service.change_identity(account_id, body)
    return _out(entry, await service.key_changes(account_id))


@internal.delete("/{account_id}/keys", status_code=204)
async def forget_account_keys(account_id: uuid.UUID, _: GatewaySystem,
                              service: Service) -> Response:
    await service.forget_account(account_id)
    return Response(status_code=204)


@internal.get("/{account_id}/wraps/passphrase/{key_id}", status_code=204)
async def has_passphrase_wrap(account_id: uuid.UUID, key_id: KeyId, _: GatewaySystem,
                              service: Service) -> Response:
    await service.get_wrap(account_id, "passphrase", key_id)
    return Response(status_code=204)
