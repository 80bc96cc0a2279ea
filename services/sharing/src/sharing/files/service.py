"""Patient files and the decision "may account A do what on which scope of file F"."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

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
        found = await self.accesses([file_id], account_id, include_pending=include_pending)
        if not found:
            raise NotFound("No such file.")
        return found[0]

    async def accesses(self, file_ids: Sequence[uuid.UUID], account_id: uuid.UUID, *,
                       include_pending: bool = False) -> list[AccessOut]:
        """The decision for each of ``file_ids`` the account may access, in their order
        (the others are left out), in one statement: a live grant (the newest wins) on a
        file not deleted, active unless ``include_pending`` (the kms, finishing the
        file's saga); pending rotations only for members who rotate."""
        newest: dict[uuid.UUID, Any] = {}  # file -> its row
        for row in await self.repo.access_rows(account_id, file_ids, self.now,
                                               include_pending=include_pending,
                                               rotators=ROTATORS):
            newest.setdefault(row[0], row)  # newest first
        return [AccessOut(file_id=file_id, account_id=account_id, relationship=relationship,
                          scopes=scopes, state=state,
                          valid_until=_aware(valid_until) if valid_until else None,
                          valid_for_s=self._valid_for(valid_until, next_start),
                          key_versions=dict(key_versions or {}),
                          pending_rotations=sorted(set(pending.split(","))) if pending else [])
                for (file_id, state, key_versions, relationship, scopes, valid_until, pending,
                     next_start) in (newest[f] for f in file_ids if f in newest)]

    def _valid_for(self, *ends: datetime | None) -> float | None:
        """Seconds from now (this service's clock) until the first of ``ends`` (the
        grant's end, the next grant's start): how long the answer may be kept at most."""
        known = [_aware(end) for end in ends if end is not None]
        if not known:
            return None
        return max(0.0, (min(known) - _aware(self.now)).total_seconds())

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
