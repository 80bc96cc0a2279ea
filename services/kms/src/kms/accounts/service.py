"""Rules for the directory and the wrapped keys. The kms checks signatures; it never
opens a wrap."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from ecrin_e2ee import E2EEError, IdentityMismatchError, KeyChange, PublicIdentity, WrappedIdentity
from ecrin_platform.problems import Conflict, Forbidden, NotFound, ServiceError
from kms.accounts.repository import AccountKeysRepository
from kms.accounts.schemas import (
    AccountKeysIn,
    IdentityChangeIn,
    PublicIdentityIn,
    WrappedIdentityIn,
)
from kms.models import DirectoryEntry, KeyChangeRow, WrappedKey


class InvalidIdentity(ServiceError):
    status, slug, title = 422, "invalid-identity", "Invalid public identity"


class InvalidWrap(ServiceError):
    status, slug, title = 422, "invalid-wrap", "Invalid wrapped key"


class InvalidKeyChange(ServiceError):
    status, slug, title = 422, "invalid-key-change", "Invalid key-change statement"


class StepUpRequired(Forbidden):
    slug, title = "step-up-required", "A fresh passphrase proof is required"


def _now() -> datetime:
    return datetime.now(UTC)


def verified_identity(body: PublicIdentityIn, account_id: uuid.UUID) -> PublicIdentity:
    if body.account_id != account_id:
        raise InvalidIdentity("The identity belongs to another account.")
    try:
        identity = PublicIdentity.from_json(body.model_dump(mode="json"))
        identity.verify()
    except (E2EEError, ValueError, TypeError):
        raise InvalidIdentity("The identity's self-signature does not verify.") from None
    return identity


def checked_wrap(body: WrappedIdentityIn, account_id: uuid.UUID, purpose: str) -> dict[str, Any]:
    if body.account_id != account_id or body.purpose != purpose:
        raise InvalidWrap("The wrap belongs to another account or purpose.")
    data = body.model_dump(mode="json")
    try:
        WrappedIdentity.from_json(data)
    except (E2EEError, ValueError, TypeError):
        raise InvalidWrap("The wrap is malformed.") from None
    return data


class AccountKeysService:
    def __init__(self, repository: AccountKeysRepository) -> None:
        self.repo = repository

    async def publish_identity(self, account_id: uuid.UUID, body: PublicIdentityIn
                               ) -> DirectoryEntry:
        """First publication, or the same identity again. Never a replacement: that takes a
        key-change statement and a fresh passphrase proof (:meth:`change_identity`)."""
        identity = verified_identity(body, account_id)
        entry = await self.repo.directory_entry(account_id)
        data = identity.to_json()
        if entry is None:
            entry = DirectoryEntry(account_id=account_id, identity=data,
                                   fingerprint=identity.fingerprint_hex(), created_at=_now(),
                                   updated_at=_now())
            self.repo.add(entry)
        elif entry.identity != data:
            raise StepUpRequired(
                "A published identity is replaced only by a key-change statement signed by "
                "its key, with a fresh passphrase proof (POST /v1/auth/identity).")
        await self.repo.session.flush()
        return entry

    async def get_identity(self, account_id: uuid.UUID) -> DirectoryEntry:
        entry = await self.repo.directory_entry(account_id)
        if entry is None:
            raise NotFound("No such account in the directory.")
        return entry

    async def key_changes(self, account_id: uuid.UUID) -> list[KeyChangeRow]:
        return await self.repo.key_changes(account_id)

    async def change_identity(self, account_id: uuid.UUID, body: IdentityChangeIn
                              ) -> DirectoryEntry:
        """Replace the published identity. The gateway has checked a fresh passphrase proof
        (and the second factor); here the statement must be signed by the identity the
        directory publishes now and name the new one. The wraps of the new identity keys
        replace the old ones in the same transaction, and the passphrase wraps of earlier
        salts (which hold the abandoned keys) are deleted."""
        entry = await self.repo.directory_entry(account_id, for_update=True)
        if entry is None:
            raise NotFound("No such account in the directory.")
        new = verified_identity(body.identity, account_id)
        try:
            statement = KeyChange.from_json(body.key_change.model_dump(mode="json"))
        except (E2EEError, ValueError, TypeError):
            raise InvalidKeyChange("The key-change statement is malformed.") from None
        passphrase = checked_wrap(body.passphrase.wrap, account_id, "passphrase")
        recovery = checked_wrap(body.recovery, account_id, "recovery")
        changes = await self.repo.key_changes(account_id)
        if entry.identity == new.to_json():
            if changes and changes[-1].statement == statement.to_json() and (
                    await self.get_wrap_or_none(account_id, "passphrase",
                                                body.passphrase.key_id)) == passphrase and (
                    await self.get_wrap_or_none(account_id, "recovery", "recovery")
                    ) == recovery:
                return entry  # a retry of the change just made
            raise Conflict("This identity is already the published one.")
        try:
            statement.verify(PublicIdentity.from_json(entry.identity), new)
        except IdentityMismatchError:
            raise InvalidKeyChange("The key-change statement is not signed by the published "
                                   "identity's key for this new identity.") from None
        current_wrap = await self.repo.wrap(account_id, "passphrase", body.passphrase.key_id)
        recovery_wrap = await self.repo.wrap(account_id, "recovery", "recovery")
        if current_wrap is None or recovery_wrap is None:
            raise Conflict("The account has no wrap for its current passphrase.")
        now = _now()
        self.repo.add(KeyChangeRow(account_id=account_id, seq=len(changes) + 1,
                                   previous_identity=entry.identity,
                                   statement=statement.to_json(), created_at=now))
        entry.identity = new.to_json()
        entry.fingerprint = new.fingerprint_hex()
        entry.updated_at = now
        current_wrap.wrap = passphrase
        recovery_wrap.wrap = recovery
        await self.repo.delete_other_passphrase_wraps(account_id, body.passphrase.key_id)
        await self.repo.session.flush()
        return entry

    async def put_wrap(self, account_id: uuid.UUID, purpose: str, key_id: str,
                       body: WrappedIdentityIn) -> None:
        data = checked_wrap(body, account_id, purpose)
        existing = await self.repo.wrap(account_id, purpose, key_id)
        if existing is None:
            self.repo.add(WrappedKey(account_id=account_id, purpose=purpose, key_id=key_id,
                                     wrap=data, created_at=_now()))
        else:
            existing.wrap = data
        await self.repo.session.flush()

    async def get_wrap(self, account_id: uuid.UUID, purpose: str, key_id: str) -> dict[str, Any]:
        wrap = await self.repo.wrap(account_id, purpose, key_id)
        if wrap is None:
            raise NotFound("No such wrapped key.")
        return wrap.wrap

    async def unlock(self, account_id: uuid.UUID, key_id: str
                     ) -> tuple[dict[str, Any], DirectoryEntry, list[KeyChangeRow]]:
        """The passphrase wrap, the directory entry and its key changes: what a device
        reads to unlock, opens and checks itself."""
        found = await self.repo.unlock_bundle(account_id, key_id)
        if found is None:
            raise NotFound("No such wrapped key.")
        return found

    async def delete_wrap(self, account_id: uuid.UUID, key_id: str) -> None:
        await self.repo.delete_wrap(account_id, "passphrase", key_id)

    async def store_new_account(self, account_id: uuid.UUID, body: AccountKeysIn) -> None:
        """The sign-up step: idempotent for the same keys, 409 for different ones."""
        identity = verified_identity(body.identity, account_id)
        passphrase = checked_wrap(body.passphrase.wrap, account_id, "passphrase")
        recovery = checked_wrap(body.recovery, account_id, "recovery")
        entry = await self.repo.directory_entry(account_id)
        if entry is not None:
            same = (entry.identity == identity.to_json()
                    and (await self.get_wrap_or_none(account_id, "passphrase",
                                                     body.passphrase.key_id)) == passphrase
                    and (await self.get_wrap_or_none(account_id, "recovery", "recovery"))
                    == recovery)
            if not same:
                raise Conflict("This account already has other keys.")
            return
        await self.publish_identity(account_id, body.identity)
        self.repo.add(WrappedKey(account_id=account_id, purpose="passphrase",
                                 key_id=body.passphrase.key_id, wrap=passphrase,
                                 created_at=_now()))
        self.repo.add(WrappedKey(account_id=account_id, purpose="recovery", key_id="recovery",
                                 wrap=recovery, created_at=_now()))
        await self.repo.session.flush()

    async def get_wrap_or_none(self, account_id: uuid.UUID, purpose: str, key_id: str
                               ) -> dict[str, Any] | None:
        wrap = await self.repo.wrap(account_id, purpose, key_id)
        return wrap.wrap if wrap else None

    async def forget_account(self, account_id: uuid.UUID) -> None:
        await self.repo.delete_account(account_id)


def require_owner(principal_account: str, account_id: uuid.UUID) -> None:
    if principal_account != str(account_id):
        raise Forbidden("Only the account's owner may change it.")
