from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kms.models import DirectoryEntry, KeyChangeRow, WrappedKey

#: One row per key change (one row with none when there is none), each with the wrap and
#: the entry; built once: it runs on every login and unlock.
_UNLOCK_BUNDLE = (
    select(WrappedKey.wrap, DirectoryEntry, KeyChangeRow)
    .join(DirectoryEntry, DirectoryEntry.account_id == WrappedKey.account_id)
    .outerjoin(KeyChangeRow, KeyChangeRow.account_id == WrappedKey.account_id)
    .where(WrappedKey.account_id == bindparam("account_id"),
           WrappedKey.purpose == "passphrase", WrappedKey.key_id == bindparam("key_id"))
    .order_by(KeyChangeRow.seq))


class AccountKeysRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def directory_entry(self, account_id: uuid.UUID, *, for_update: bool = False
                              ) -> DirectoryEntry | None:
        if not for_update:
            return await self.session.get(DirectoryEntry, account_id)
        row = await self.session.execute(
            select(DirectoryEntry).where(DirectoryEntry.account_id == account_id)
            .with_for_update())
        return row.scalar_one_or_none()

    async def key_changes(self, account_id: uuid.UUID) -> list[KeyChangeRow]:
        rows = await self.session.execute(
            select(KeyChangeRow).where(KeyChangeRow.account_id == account_id)
            .order_by(KeyChangeRow.seq))
        return list(rows.scalars())

    async def delete_other_passphrase_wraps(self, account_id: uuid.UUID, keep: str) -> None:
        await self.session.execute(delete(WrappedKey).where(
            WrappedKey.account_id == account_id, WrappedKey.purpose == "passphrase",
            WrappedKey.key_id != keep))

    async def unlock_bundle(self, account_id: uuid.UUID, key_id: str
                            ) -> tuple[dict[str, Any], DirectoryEntry, list[KeyChangeRow]] | None:
        """The passphrase wrap for ``key_id``, the directory entry and its key changes in
        order, in one statement (one snapshot, even outside a transaction: the unlock
        answer); None when the wrap or the entry is missing."""
        rows = (await self.session.execute(_UNLOCK_BUNDLE, {
            "account_id": account_id, "key_id": key_id})).all()
        if not rows:
            return None
        return rows[0][0], rows[0][1], [row[2] for row in rows if row[2] is not None]

    async def wrap(self, account_id: uuid.UUID, purpose: str, key_id: str) -> WrappedKey | None:
        return await self.session.get(WrappedKey, (account_id, purpose, key_id))

    async def delete_wrap(self, account_id: uuid.UUID, purpose: str, key_id: str) -> None:
        await self.session.execute(delete(WrappedKey).where(
            WrappedKey.account_id == account_id, WrappedKey.purpose == purpose,
            WrappedKey.key_id == key_id))

    async def delete_account(self, account_id: uuid.UUID) -> None:
        await self.session.execute(delete(WrappedKey).where(WrappedKey.account_id == account_id))
        await self.session.execute(delete(KeyChangeRow).where(
            KeyChangeRow.account_id == account_id))
        await self.session.execute(delete(DirectoryEntry).where(
            DirectoryEntry.account_id == account_id))

    async def has_any(self, account_id: uuid.UUID) -> bool:
        row = await self.session.execute(
            select(WrappedKey.key_id).where(WrappedKey.account_id == account_id).limit(1))
        return row.first() is not None

    def add(self, obj: DirectoryEntry | WrappedKey | KeyChangeRow) -> None:
        self.session.add(obj)
