from __future__ import annotations

import uuid
from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response

from ecrin_platform.deps import CurrentPrincipal, CurrentUser, GatewaySystem, SessionDep
from kms.accounts.repository import AccountKeysRepository
from kms.accounts.schemas import (
    AccountKeysIn,
    DirectoryEntryOut,
    PublicIdentityIn,
    WrappedIdentityIn,
)
from kms.accounts.service import AccountKeysService, require_owner


def get_service(session: SessionDep) -> AccountKeysService:
    return AccountKeysService(AccountKeysRepository(session))


Service = Annotated[AccountKeysService, Depends(get_service)]
KeyId = Annotated[str, Path(min_length=8, max_length=64, pattern="^[A-Za-z0-9_-]+$",
                            description="The KDF salt (b64) that the wrapping KEK came from")]

directory = APIRouter(prefix="/v1/directory", tags=["kms"])
keys = APIRouter(prefix="/v1/keys/me", tags=["kms"])
internal = APIRouter(prefix="/internal/accounts", include_in_schema=False)


def _out(entry: Any) -> DirectoryEntryOut:
    # SQLite hands timestamps back without their zone; they are stored in UTC. A naive
    # value would be rendered without an offset, which is no RFC 3339 date-time.
    updated_at = entry.updated_at
    if updated_at.tzinfo is None:
        updated_at = updated_at.replace(tzinfo=UTC)
    return DirectoryEntryOut(account_id=entry.account_id, identity=entry.identity,
                             fingerprint=entry.fingerprint, updated_at=updated_at)


@directory.put("/{account_id}", response_model=DirectoryEntryOut,
               summary="Publish or replace one's own public identity (self-signature checked)")
async def publish_identity(account_id: uuid.UUID, body: PublicIdentityIn, user: CurrentUser,
                           service: Service) -> DirectoryEntryOut:
    require_owner(user.account_id, account_id)
    return _out(await service.publish_identity(account_id, body))


@directory.get("/{account_id}", response_model=DirectoryEntryOut,
               summary="Fetch an account's public identity and fingerprint")
async def get_identity(account_id: uuid.UUID, user: CurrentUser,
                       service: Service) -> DirectoryEntryOut:
    return _out(await service.get_identity(account_id))


@keys.get("/wraps/passphrase/{key_id}", summary="Fetch one's identity keys wrapped under a KEK")
async def get_passphrase_wrap(key_id: KeyId, user: CurrentUser,
                              service: Service) -> dict[str, Any]:
    return await service.get_wrap(uuid.UUID(user.account_id), "passphrase", key_id)


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
