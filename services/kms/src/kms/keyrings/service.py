"""Rules for keyrings. The kms checks who may add what and that every entry is signed by
its granter's published identity for the member's published key; it opens nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ecrin_e2ee import E2EEError, KeyringEntry, PublicIdentity
from ecrin_platform.access import FileAccess
from ecrin_platform.problems import Conflict, Forbidden, NotFound, ServiceError
from kms.models import DirectoryEntry, KeyringEntryRow, KeyringVersion

SCOPES = ("clinical", "shared", "administrative")
#: Relationships that may rotate a scope (create its next version).
ROTATORS = frozenset({"owner", "care_team"})


class InvalidEntry(ServiceError):
    status, slug, title = 422, "invalid-keyring-entry", "Invalid keyring entry"


def _now() -> datetime:
    return datetime.now(UTC)


class KeyringService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        #: scopes whose version the last add_entries call moved on
        self.rotated: dict[str, int] = {}

    async def _identity(self, account_id: uuid.UUID) -> tuple[PublicIdentity, str]:
        row = await self.session.get(DirectoryEntry, account_id)
        if row is None:
            raise InvalidEntry("An account named in the entry has no published identity.")
        return PublicIdentity.from_json(row.identity), row.fingerprint

    async def _checked(self, raw: dict[str, Any], file_id: uuid.UUID,
                       caller: uuid.UUID) -> KeyringEntry:
        try:
            entry = KeyringEntry.from_json(raw)
        except (E2EEError, ValueError, TypeError, KeyError):
            raise InvalidEntry("The entry is malformed.") from None
        if entry.file_id != file_id:
            raise InvalidEntry("The entry belongs to another file.")
        if entry.granter_id != caller:
            raise InvalidEntry("Entries are signed by the caller.")
        granter, _ = await self._identity(caller)
        try:
            VerifyKey(granter.sign_public).verify(entry.signed_bytes(), entry.signature)
        except (BadSignatureError, ValueError):
            raise InvalidEntry("The granter's signature does not verify.") from None
        member, _ = await self._identity(entry.member_id)
        if entry.member_fingerprint != member.fingerprint():
            raise InvalidEntry("The entry is sealed to a key the member did not publish.")
        return entry

    async def current_versions(self, file_id: uuid.UUID) -> dict[str, int]:
        rows = await self.session.execute(
            select(KeyringVersion).where(KeyringVersion.file_id == file_id))
        return {row.scope: row.version for row in rows.scalars()}

    async def create_initial(self, access: FileAccess, entries: list[dict[str, Any]]) -> bool:
        """The keyring's first version, sealed to the owner. True when newly stored."""
        caller = access.account_id
        if access.relationship != "owner":
            raise Forbidden("Only the file's owner creates its keyring.")
        checked = [await self._checked(e, access.file_id, caller) for e in entries]
        scopes = sorted(e.scope.value for e in checked)
        if scopes != sorted(SCOPES) or any(e.version != 1 or e.member_id != caller
                                           for e in checked):
            raise InvalidEntry("The first keyring is version 1 of each scope, sealed to the "
                               "owner.")
        if await self.current_versions(access.file_id):
            stored = await self._entries(access.file_id, caller, None, None)
            if sorted(map(_key, stored)) == sorted(map(_key, (e.to_json() for e in checked))):
                return False  # a retry of the same request
            raise Conflict("This file already has a keyring.")
        now = _now()
        for entry in checked:
            self.session.add(KeyringEntryRow(file_id=access.file_id, scope=entry.scope.value,
                                             version=1, member_id=caller, granter_id=caller,
                                             entry=entry.to_json(), created_at=now))
            self.session.add(KeyringVersion(file_id=access.file_id, scope=entry.scope.value,
                                            version=1, updated_at=now))
        await self.session.flush()
        return True

    async def _entries(self, file_id: uuid.UUID, member: uuid.UUID, scopes: set[str] | None,
                       version: int | None) -> list[dict[str, Any]]:
        stmt = select(KeyringEntryRow).where(KeyringEntryRow.file_id == file_id,
                                             KeyringEntryRow.member_id == member)
        if scopes is not None:
            stmt = stmt.where(KeyringEntryRow.scope.in_(scopes))
        if version is not None:
            stmt = stmt.where(KeyringEntryRow.version == version)
        rows = await self.session.execute(stmt.order_by(KeyringEntryRow.scope,
                                                        KeyringEntryRow.version))
        return [row.entry for row in rows.scalars()]

    async def my_entries(self, access: FileAccess, scope: str | None,
                         version: int | None) -> list[dict[str, Any]]:
        """Only the caller's own entries, only for the scopes they may read now."""
        readable = {s for s in access.scopes if scope is None or s == scope}
        if scope is not None and scope not in access.scopes:
            raise NotFound("No such keyring.")
        return await self._entries(access.file_id, access.account_id, readable, version)

    async def store_grant(self, grant: dict[str, Any], caller: uuid.UUID,
                          entries: list[dict[str, Any]]) -> int:
        """Keyring entries that make a grant real. Each must match the grant exactly:
        member, scope, relationship, permissions and end date; the granter seals them, or
        the invitee seals them to itself when redeeming an invitation."""
        file_id = uuid.UUID(grant["file_id"])
        grantee = uuid.UUID(grant["grantee_id"])
        scopes: dict[str, str] = grant["scopes"]
        checked = [await self._checked(e, file_id, caller) for e in entries]
        versions = await self.current_versions(file_id)
        covered: set[str] = set()
        now = _now()
        for entry in checked:
            scope = entry.scope.value
            wanted = {"read"} | ({"append"} if scopes.get(scope) == "append" else set())
            until = entry.valid_until.isoformat() if entry.valid_until else None
            granted_until = grant.get("valid_until")
            same_end = (until is None and granted_until is None) or (
                until is not None and granted_until is not None
                and datetime.fromisoformat(granted_until).timestamp()
                == entry.valid_until.timestamp())  # type: ignore[union-attr]
            if (entry.member_id != grantee or scope not in scopes
                    or entry.relationship.value != grant["relationship"]
                    or {p.value for p in entry.permissions} != wanted or not same_end):
                raise InvalidEntry("The entry does not match the grant.")
            if not 1 <= entry.version <= versions.get(scope, 0):
                raise InvalidEntry("Grants hand over existing versions only.")
            if entry.version == versions[scope]:
                covered.add(scope)
            existing = await self.session.get(KeyringEntryRow,
                                              (file_id, scope, entry.version, grantee))
            if existing is None:
                self.session.add(KeyringEntryRow(file_id=file_id, scope=scope,
                                                 version=entry.version, member_id=grantee,
                                                 granter_id=caller, entry=entry.to_json(),
                                                 created_at=now))
            elif existing.entry != entry.to_json():
                raise Conflict("This member already holds this version.")
        if covered != set(scopes):
            raise InvalidEntry("A grant needs the current version of every granted scope.")
        await self.session.flush()
        return len(checked)

    async def add_entries(self, access: FileAccess, entries: list[dict[str, Any]],
                          members: list[dict[str, Any]] | None = None) -> int:
        """Rotations: the next version of a scope, sealed to its remaining members.

        ``members`` is the sharing service's list of live members: every entry must go to
        one of them, for a scope their grant holds, so a rotator cannot hand a key to
        someone without a grant (or to a member outside their scopes)."""
        caller = access.account_id
        checked = [await self._checked(e, access.file_id, caller) for e in entries]
        if members is not None:
            holds = {(m["account_id"], scope) for m in members for scope in m["scopes"]}
            for entry in checked:
                if (str(entry.member_id), entry.scope.value) not in holds:
                    raise InvalidEntry("An entry goes to someone who holds no grant of that "
                                       "scope.")
        versions = await self.current_versions(access.file_id)
        now = _now()
        bumped: dict[str, int] = {}
        for entry in checked:
            scope = entry.scope.value
            if scope not in access.scopes:
                raise Forbidden("The caller holds no key of this scope.")
            current = versions.get(scope, 0)
            if entry.version == current + 1:
                if access.relationship not in ROTATORS:
                    raise Forbidden("Only the owner or the care team rotate a scope.")
                bumped[scope] = entry.version
            elif entry.version > current or entry.version < 1:
                raise InvalidEntry("Versions grow one at a time.")
            existing = await self.session.get(
                KeyringEntryRow, (access.file_id, scope, entry.version, entry.member_id))
            if existing is not None:
                if existing.entry != entry.to_json():
                    raise Conflict("This member already holds this version.")
                continue
            self.session.add(KeyringEntryRow(file_id=access.file_id, scope=scope,
                                             version=entry.version, member_id=entry.member_id,
                                             granter_id=caller, entry=entry.to_json(),
                                             created_at=now))
        for scope, version in bumped.items():
            row = await self.session.get(KeyringVersion, (access.file_id, scope))
            assert row is not None
            row.version, row.updated_at = version, now
        await self.session.flush()
        self.rotated = bumped
        return len(checked)


def _key(entry: dict[str, Any]) -> str:
    return f"{entry['scope']}:{entry['version']}:{entry['member_id']}:{entry['signature']}"
