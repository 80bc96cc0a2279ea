from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kms.models import DirectoryEntry, KeyChangeRow, WrappedKey


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

    async def passphrase_wrap_and_entry(self, account_id: uuid.UUID, key_id: str
                                        ) -> tuple[dict[str, Any], DirectoryEntry] | None:
        """The passphrase wrap for ``key_id`` and the directory entry, in one query (the
        unlock answer); None when either is missing."""
        row = (await self.session.execute(
            select(WrappedKey.wrap, DirectoryEntry)
            .join(DirectoryEntry, DirectoryEntry.account_id == WrappedKey.account_id)
            .where(WrappedKey.account_id == account_id, WrappedKey.purpose == "passphrase",
                   WrappedKey.key_id == key_id))).one_or_none()
        return None if row is None else (row[0], row[1])

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
