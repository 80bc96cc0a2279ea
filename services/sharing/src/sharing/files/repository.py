from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from sharing.models import Grant, PatientFile, Rotation, SearchToken


def live_grant(now: datetime):  # type: ignore[no-untyped-def]
    return and_(Grant.status == "active",
                or_(Grant.valid_from.is_(None), Grant.valid_from <= now),
                or_(Grant.valid_until.is_(None), Grant.valid_until > now))


class FilesRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: object) -> None:
        self.session.add(obj)

    async def flush(self) -> None:
        await self.session.flush()

    async def file(self, file_id: uuid.UUID) -> PatientFile | None:
        return await self.session.get(PatientFile, file_id)

    async def live_grant(self, file_id: uuid.UUID, account_id: uuid.UUID,
                         now: datetime) -> Grant | None:
        rows = await self.session.execute(
            select(Grant).where(Grant.file_id == file_id, Grant.grantee_id == account_id,
                                live_grant(now)).order_by(Grant.created_at.desc()).limit(1))
        return rows.scalar_one_or_none()

    async def pending_rotations(self, file_id: uuid.UUID) -> list[str]:
        """Scopes of the file a member left whose new key version is not stored yet (index
        ix_rotations_file_pending). One whose new version is stored but whose records are
        not all re-keyed yet is not listed: new content under that version is safe."""
        rows = await self.session.execute(
            select(Rotation.scope).where(Rotation.file_id == file_id,
                                         Rotation.done_at.is_(None),
                                         Rotation.rotated_version.is_(None)).distinct())
        return sorted(rows.scalars())

    async def accessible_files(self, account_id: uuid.UUID, now: datetime, *,
                               tokens: list[str], after: tuple[datetime, uuid.UUID] | None,
                               limit: int) -> list[tuple[PatientFile, Grant]]:
        stmt = (select(PatientFile, Grant)
                .join(Grant, Grant.file_id == PatientFile.id)
                .where(Grant.grantee_id == account_id, live_grant(now),
                       PatientFile.state == "active", PatientFile.deleted_at.is_(None)))
        if tokens:
            matching = (select(SearchToken.file_id)
                        .where(SearchToken.owner_id == account_id,
                               SearchToken.token.in_(tokens))
                        .group_by(SearchToken.file_id)
                        .having(func.count() == len(set(tokens))))
            stmt = stmt.where(PatientFile.id.in_(matching))
        if after is not None:
            created, file_id = after
            stmt = stmt.where(or_(PatientFile.created_at < created,
                                  and_(PatientFile.created_at == created,
                                       PatientFile.id < file_id)))
        stmt = stmt.order_by(PatientFile.created_at.desc(), PatientFile.id.desc()).limit(limit)
        return [(f, g) for f, g in (await self.session.execute(stmt)).all()]

    async def replace_tokens(self, file_id: uuid.UUID, owner_id: uuid.UUID,
                             tokens: list[str]) -> None:
        await self.session.execute(delete(SearchToken).where(SearchToken.file_id == file_id))
        for token in sorted(set(tokens)):
            self.session.add(SearchToken(file_id=file_id, token=token, owner_id=owner_id))

    async def tokens_of(self, file_id: uuid.UUID) -> list[str]:
        rows = await self.session.execute(
            select(SearchToken.token).where(SearchToken.file_id == file_id))
        return sorted(rows.scalars())
