"""Patient files and the decision "may account A do what on which scope of file F"."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

from ecrin_platform.problems import Conflict, Forbidden, NotFound, ServiceError
from sharing.files.repository import FilesRepository
from sharing.files.schemas import AccessOut, FileCreate, FileOut, FilePage
from sharing.grants.service import ROTATORS
from sharing.models import Grant, PatientFile

SCOPES = ("clinical", "shared", "administrative")
OWNER_SCOPES = {scope: "append" for scope in SCOPES}


class BadCursor(ServiceError):
    status, slug, title = 400, "bad-cursor", "Malformed cursor"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def encode_cursor(created: datetime, file_id: uuid.UUID) -> str:
    raw = f"{_aware(created).isoformat()}|{file_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, file_id = raw.split("|")
        return datetime.fromisoformat(created), uuid.UUID(file_id)
    except ValueError:
        raise BadCursor("The cursor is not one this service issued.") from None


def file_out(file: PatientFile, grant: Grant) -> FileOut:
    return FileOut(id=file.id, owner_id=file.owner_id, state=file.state,
                   created_at=_aware(file.created_at), updated_at=_aware(file.updated_at),
                   relationship=grant.relationship, scopes=grant.scopes,
                   identity_record_id=file.identity_record_id)


class FilesService:
    def __init__(self, repo: FilesRepository, now: datetime) -> None:
        self.repo = repo
        self.now = now

    async def create(self, owner: uuid.UUID, body: FileCreate) -> tuple[FileOut, bool]:
        """Creates the file pending its keyring; the same request again is a no-op."""
        existing = await self.repo.file(body.file_id)
        if existing is not None:
            if existing.owner_id != owner:
                raise Conflict("This file id is taken.")
            grant = await self.repo.live_grant(existing.id, owner, self.now)
            if grant is None or grant.relationship != "owner":
                raise Conflict("This file id is taken.")
            return file_out(existing, grant), False
        file = PatientFile(id=body.file_id, owner_id=owner, state="pending",
                           created_at=self.now, updated_at=self.now,
                           identity_record_id=body.identity_record_id)
        self.repo.add(file)
        await self.repo.flush()
        grant = Grant(id=uuid.uuid4(), file_id=file.id, grantee_id=owner, granter_id=owner,
                      relationship="owner", scopes=dict(OWNER_SCOPES), status="active",
                      created_at=self.now)
        self.repo.add(grant)
        await self.repo.replace_tokens(file.id, owner, body.search_tokens)
        await self.repo.flush()
        return file_out(file, grant), True

    async def access(self, file_id: uuid.UUID, account_id: uuid.UUID, *,
                     include_pending: bool = False) -> AccessOut:
        file = await self.repo.file(file_id)
        if file is None or file.deleted_at is not None:
            raise NotFound("No such file.")
        if file.state != "active" and not include_pending:
            raise NotFound("No such file.")
        grant = await self.repo.live_grant(file_id, account_id, self.now)
        if grant is None:
            raise NotFound("No such file.")
        pending = (await self.repo.pending_rotations(file_id)
                   if grant.relationship in ROTATORS else [])
        return AccessOut(file_id=file_id, account_id=account_id, relationship=grant.relationship,
                         scopes=grant.scopes, state=file.state,
                         valid_until=_aware(grant.valid_until) if grant.valid_until else None,
                         key_versions=dict(file.key_versions or {}),
                         pending_rotations=pending)

    async def activate(self, file_id: uuid.UUID, owner: uuid.UUID) -> None:
        file = await self.repo.file(file_id)
        if file is None or file.owner_id != owner:
            raise NotFound("No such file.")
        if file.state == "pending":
            file.state = "active"
            file.updated_at = self.now
            await self.repo.flush()

    async def get(self, file_id: uuid.UUID, account_id: uuid.UUID) -> FileOut:
        await self.access(file_id, account_id)
        file = await self.repo.file(file_id)
        grant = await self.repo.live_grant(file_id, account_id, self.now)
        assert file is not None and grant is not None
        return file_out(file, grant)

    async def page(self, account_id: uuid.UUID, *, tokens: list[str], cursor: str | None,
                   limit: int) -> FilePage:
        after = decode_cursor(cursor) if cursor else None
        rows = await self.repo.accessible_files(account_id, self.now, tokens=tokens, after=after,
                                                limit=limit + 1)
        items = [file_out(f, g) for f, g in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1][0]
            next_cursor = encode_cursor(last.created_at, last.id)
        return FilePage(items=items, next_cursor=next_cursor)

    async def replace_tokens(self, file_id: uuid.UUID, account_id: uuid.UUID,
                             tokens: list[str]) -> None:
        access = await self.access(file_id, account_id)
        if access.relationship != "owner":
            raise Forbidden("Only the file's owner indexes it.")
        await self.repo.replace_tokens(file_id, account_id, tokens)
        await self.repo.flush()
