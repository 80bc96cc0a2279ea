"""Rules for records: who may touch what, headers that match, versions, tombstones, rekey.

Authorisation, everywhere: no access to the file, or no access to the record's scope,
is a 404 exactly like a record that does not exist; a scope that may be read but not
appended to is a 403 on writes; a write the caller's relationship does not allow (deleting
or versioning what someone else wrote, re-keying) is a 403 too (``records.policy``).

A refusal on a record that exists is audited (outcome ``denied``, in the record's scope
chain) in a short transaction of its own, after the request's own is rolled back: the
request fails, its record of the attempt stays. An id that names no record writes nothing,
so guessing ids costs the server no audit row.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrin_platform.access import AccessDecider, FileAccess
from ecrin_platform.audit import ChainEnd
from ecrin_platform.db import autocommit_session, release
from records_api.models import ContentChunk, ContentUpload, IdempotencyKey, Record, RecordVersion
from records_api.records.audit import (
    AUDIT,
    DENIED,
    ChainEvents,
    audit,
    audit_apart,
    audit_chains,
    audit_events,
    record_target,
    scope_chain,
)
from records_api.records.content import (
    CONTENT_ROW_BYTES,
    ContentUnavailable,
    ReceivedContent,
    content_digest,
)
from records_api.records.errors import (
    ContentDigestMismatch,
    ContentLengthMismatch,
    ContentTooLarge,
    FileNotFound,
    IdempotencyKeyReused,
    InvalidCursor,
    InvalidHeader,
    KeyVersionNotCurrent,
    PreconditionRequired,
    RecordIdTaken,
    RecordNotFound,
    StaleKeyVersion,
    StaleVersion,
    VersionCommitted,
    VersionConflict,
    WrapNotKept,
)
from records_api.records.header import IMMUTABLE_SIZE, HeaderFacts, MalformedHeader, parse_header
from records_api.records.policy import REFUSALS, Write, key_problem, permit
from records_api.records.repository import (
    HeaderPosition,
    KeptWrap,
    Position,
    ReadWithEvent,
    RecordsRepository,
    ScopedRecord,
    VersionWithContent,
)
from records_api.records.schemas import (
    INLINE_CONTENT_MAX,
    HeaderItem,
    HeaderPage,
    RecordIn,
    RecordOut,
    RecordPage,
    RecordWithContent,
    RekeyedItem,
    RekeyIn,
    RekeyItem,
    RekeyOut,
    VersionIn,
    VersionOut,
)

log = logging.getLogger("ecrin.records-api.records")

# Inline content is stored as one content row.
assert INLINE_CONTENT_MAX <= CONTENT_ROW_BYTES


def now() -> datetime:
    return datetime.now(UTC)


def utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


#: What If-Match accepts: ``"v<version>"`` or a read's ``"v<version>.k<key version>"``.
_VERSION_TAG = re.compile(r'"v(\d{1,9})(?:\.k\d{1,9})?"')


def etag(version: int) -> str:
    return f'"v{version}"'


def header_etag(version: int, key_version: int) -> str:
    """The validator of a read that returns a version's header: a re-key replaces the
    header's wrap under the same version number, so the key version is part of it.
    If-Match accepts it as well as ``"v<version>"`` (only the version matters there)."""
    return f'"v{version}.k{key_version}"'


@dataclass(frozen=True)
class Caller:
    """The authenticated account, and the means to ask what it may do."""

    account_id: uuid.UUID
    token: str
    request_id: str | None
    decider: AccessDecider

    async def access(self, file_id: uuid.UUID, *, fresh: bool = False) -> FileAccess | None:
        return await self.decider.access(file_id, self.account_id, token=self.token,
                                         request_id=self.request_id, fresh=fresh)

    async def may_read(self, file_id: uuid.UUID, scope: str) -> FileAccess:
        access = await self.access(file_id)
        if access is None or not access.can_read(scope):
            raise RecordNotFound()
        return access

    async def may(self, write: Write, file_id: uuid.UUID, scope: str, *,
                  own: bool = True) -> FileAccess:
        """The caller's access if it may do ``write`` there (``records.policy.permit``)."""
        return permit(await self.access(file_id), scope, write, own=own)


def checked_header(data: bytes, *, file_id: uuid.UUID, record_id: uuid.UUID, version: int,
                   scope: str, author: uuid.UUID, content_length: int) -> HeaderFacts:
    """The header parses and names this file, record, version, scope and author, and the
    content length is what its padded length implies."""
    try:
        facts = parse_header(data)
    except MalformedHeader as exc:
        raise InvalidHeader(f"The header does not parse: {exc}.") from None
    for name, got, want in (("file_id", facts.file_id, file_id),
                            ("record_id", facts.record_id, record_id),
                            ("record_version", facts.record_version, version),
                            ("scope", facts.scope, scope),
                            ("author_id", facts.author_id, author)):
        if got != want:
            raise InvalidHeader(f"The header's {name} does not match the request.", field=name)
    if facts.ciphertext_length != content_length:
        raise InvalidHeader("content_length is not the ciphertext length the header implies.",
                            field="content_length", expected=facts.ciphertext_length)
    return facts


def check_inline_content(body: VersionIn, facts: HeaderFacts) -> None:
    """Content sent with the version is exactly the ciphertext its header names."""
    if body.content is None:
        return
    if len(body.content) != body.content_length:
        raise ContentLengthMismatch(
            f"content is {len(body.content)} bytes; content_length says {body.content_length}.")
    if content_digest(body.content) != facts.content_digest:
        raise ContentDigestMismatch("The content is not the one the header's digest names.")


def expect_version(if_match: str | None, current: int) -> None:
    if if_match is None:
        raise PreconditionRequired(f"Send If-Match: {etag(current)} (the version you read).")
    named = {int(m.group(1)) for tag in if_match.split(",")
             if (m := _VERSION_TAG.fullmatch(tag.strip()))}
    if current not in named:
        raise StaleVersion("The record has a newer version; read it again.",
                           headers={"ETag": etag(current)}, current_version=current)


def version_out(row: RecordVersion) -> VersionOut:
    return VersionOut(record_id=row.record_id, version=row.version, key_version=row.key_version,
                      content_length=row.content_length, author_id=row.author,
                      created_at=utc(row.created_at), committed=row.committed,
                      header=row.header, metadata_ciphertext=row.metadata_ciphertext)


def record_out(record: Record, row: RecordVersion, cls: type[RecordOut] = RecordOut
               ) -> RecordOut:
    return cls(record_id=record.id, file_id=record.file_id,
               scope=record.scope,  # type: ignore[arg-type]  # a str column the schema's Literal validates
               state=record.state,  # type: ignore[arg-type]  # a str column the schema's Literal validates
               created_at=utc(record.created_at), updated_at=utc(record.updated_at),
               created_by=record.created_by, current_version=record.current_version,
               version=version_out(row))


def encode_cursor(record: Record) -> str:
    raw = f"{utc(record.created_at).isoformat()}|{record.id.hex}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> Position:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, record_id = raw.split("|")
        return utc(datetime.fromisoformat(created)), uuid.UUID(hex=record_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor("The cursor is not one this service issued.") from None


def encode_header_cursor(position: HeaderPosition) -> str:
    created, record_id, version = position
    raw = f"h|{created.isoformat()}|{record_id.hex}|{version}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_header_cursor(cursor: str) -> HeaderPosition:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, created, record_id, version = raw.split("|")
        number = int(version)
        if kind != "h" or not 1 <= number <= 0xFFFFFFFF:
            raise ValueError(kind)
        return utc(datetime.fromisoformat(created)), uuid.UUID(hex=record_id), number
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor("The cursor is not one this service issued.") from None


#: The audit action of each write, refused or done.
WRITE_ACTIONS = {Write.CREATE: "record.create", Write.UPLOAD: "record.content.write",
                 Write.VERSION: "record.version.create", Write.DELETE: "record.delete",
                 Write.REKEY: "record.rekey", Write.RESTORE_WRAP: "record.wrap.restore"}


def listing_target(file_id: uuid.UUID, scope: str) -> str:
    return f"file:{file_id}/{scope}"


def current_target(record: Record) -> str:
    return record_target(record.id, record.current_version)


def legacy_request_digest(body: RecordIn) -> str:
    """The digest keys were stored with before ``request_digest``: a create retried across
    that deploy (a rolling one lasts minutes, while the SDK retries) is still a replay.
    Only compared when the new digest differs; remove once keys stored before it have
    expired (``idempotency_ttl_s``, 24 h by default)."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def request_digest(body: RecordIn) -> str:
    """SHA-256 over every field of a create, each length-prefixed, in one fixed order: what
    a replay under the same Idempotency-Key must repeat. The fields are hashed as they were
    decoded (a canonical JSON dump re-encoded the inline content to base64 and cost more
    than the hash)."""
    digest = hashlib.sha256()
    for part in (body.record_id.bytes, body.file_id.bytes, body.scope.encode(),
                 body.header, body.metadata_ciphertext, b"%d" % body.content_length,
                 b"-" if body.content is None else b"+" + body.content):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class RecordsService:
    def __init__(self, repository: RecordsRepository, *, max_content_bytes: int,
                 refusals: async_sessionmaker[AsyncSession] | None = None) -> None:
        self.repo = repository
        self.max_content_bytes = max_content_bytes
        #: What ``readable(latest=True)`` read with the record it allowed.
        self._latest: VersionWithContent | None = None
        #: Where refusals are audited (a transaction of their own); None: not audited.
        self.refusals = refusals

    async def _refused(self, caller: Caller, events: ChainEvents) -> None:
        """Audit refused accesses (``denied``) before the problem is raised. The request's
        transaction is rolled back first (the request fails anyway): it holds no lock or
        connection while the event is written, and on SQLite a second writer could not
        start while it held the write lock."""
        if self.refusals is None or not events:
            return
        await self.repo.session.rollback()
        await audit_apart(self.refusals, actor=caller.account_id, events=events,
                          outcome=DENIED)

    def _fits(self, content_length: int) -> None:
        if content_length > self.max_content_bytes:
            raise ContentTooLarge(f"Content over {self.max_content_bytes} bytes is refused.",
                                  max_bytes=self.max_content_bytes)

    # --- reads ---------------------------------------------------------------------

    async def release(self) -> None:
        """A read-only service gives its pooled connection back (it takes one again if it
        reads again): a request never holds one while it waits for another."""
        await release(self.repo.session)

    async def readable(self, caller: Caller, record_id: uuid.UUID, *,
                       action: str = "record.read",
                       target: Callable[[Record], str] = current_target,
                       latest: bool = False) -> Record:
        """A committed, live record the caller may read; a refusal is audited as
        ``action`` on ``target(record)``. ``latest``: its current version (and, on
        PostgreSQL, the end of its scope's audit chain) is read in the same query, for
        ``latest_with_content`` (kept here, in this request's service, once the caller may
        read it)."""
        latest_found: VersionWithContent | None = None
        if latest:
            found = await self.repo.record_with_latest(record_id)
            record, latest_found = found if found is not None else (None, None)
        else:
            record = await self.repo.record(record_id)
        if record is None or record.state != "committed":
            raise RecordNotFound()
        try:
            await caller.may_read(record.file_id, record.scope)
        except RecordNotFound:
            await self._refused(caller, {scope_chain(record.file_id, record.scope):
                                         [(action, target(record))]})
            raise
        self._latest = latest_found
        return record

    async def latest(self, record: Record) -> RecordOut:
        return record_out(record, await self.committed_version(record, record.current_version))

    async def latest_with_content(self, record: Record) -> tuple[
            RecordWithContent, ChainEnd | None, ReadWithEvent | None]:
        """The latest version and, when small enough to travel inline, its content (read
        in the same read session: one request, no second round of checks); and, on
        PostgreSQL, the end of the scope's audit chain, read in the same query for the
        read's event (``ReadAuditor``). There, a content not read yet is left to the
        statement that writes that event: the third item, whose value goes to
        ``add_content`` (None: nothing left to read)."""
        found = self._latest
        if found is not None and found.version.record_id == record.id \
                and found.version.version == record.current_version:
            # Read with the record, but without its content: the content is read only now
            # that the caller may read it (a refused caller would otherwise time its size).
            row = found.version
            small = row.content_length <= INLINE_CONTENT_MAX and row.content_upload_id
            if small and found.end is not None and row.committed:
                assert row.content_upload_id is not None
                out = record_out(record, row, RecordWithContent)
                assert isinstance(out, RecordWithContent)
                return out, found.end, ReadWithEvent.inline_content(row.content_upload_id)
            found = found._replace(content=await self.repo.inline_content(
                row.content_upload_id) if small and row.content_upload_id else None)
        else:
            found = await self.repo.version_with_content(
                record.id, record.current_version, inline_max=INLINE_CONTENT_MAX,
                chain=scope_chain(record.file_id, record.scope))
        if found is None or not found.version.committed:
            raise RecordNotFound()
        row, data = found.version, found.content
        out = record_out(record, row, RecordWithContent)
        assert isinstance(out, RecordWithContent)
        if row.content_length > INLINE_CONTENT_MAX or row.content_upload_id is None:
            return out, found.end, None
        self.add_content(out, data, row.content_upload_id)
        return out, found.end, None

    @staticmethod
    def add_content(out: RecordWithContent, data: bytes | None, upload_id: object) -> None:
        """The small version's whole content (of upload ``upload_id``), checked against
        its length."""
        if data is None or len(data) != out.version.content_length:
            log.error("content row missing or altered",
                      extra={"record_id": str(out.record_id), "upload_id": str(upload_id)})
            raise ContentUnavailable()
        out.content = bytes(data)

    async def committed_version(self, record: Record, version: int) -> RecordVersion:
        row = await self.repo.version(record.id, version)
        if row is None or not row.committed:
            raise RecordNotFound()
        return row

    async def history(self, record: Record, before: int | None,
                      limit: int) -> tuple[list[VersionOut], int | None]:
        rows = await self.repo.committed_versions(record.id, before=before, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return [version_out(r) for r in rows], (rows[-1].version if more and rows else None)

    async def page(self, caller: Caller, file_id: uuid.UUID, scope: str | None,
                   cursor: str | None, limit: int) -> tuple[RecordPage, list[str]]:
        """A page of the file's records, and the scopes it lists."""
        access = await caller.access(file_id)
        if access is None:
            raise FileNotFound()
        readable = access.readable_scopes()
        if scope is not None:
            if scope not in readable:
                # A member of the file asked for a scope it may not read: audited.
                await self._refused(caller, {scope_chain(file_id, scope): [
                    ("record.list", listing_target(file_id, scope))]})
                raise FileNotFound()
            readable = [scope]
        after = decode_cursor(cursor) if cursor else None
        # One index range per scope the caller may read, merged: a page costs at most
        # three bounded range scans whatever the file's size, and scopes the caller may not
        # read are never queried, so they cannot show in items or counts.
        rows: list[tuple[Record, RecordVersion]] = []
        for one in readable:
            rows += await self.repo.listed_page(file_id, one, after, limit + 1)
        rows.sort(key=lambda rv: (utc(rv[0].created_at), rv[0].id), reverse=True)
        items = rows[:limit]
        next_cursor = encode_cursor(items[-1][0]) if len(rows) > limit and items else None
        return (RecordPage(items=[record_out(r, v) for r, v in items], next_cursor=next_cursor),
                readable)

    async def header_page(self, caller: Caller, file_id: uuid.UUID, scope: str,
                          below_key_version: int | None, cursor: str | None,
                          limit: int) -> HeaderPage:
        """Headers of every committed version of a scope's live records, for re-keying
        after a rotation: only for those who may re-key (no access to the file or scope:
        404 like a listing; read-only or another relationship: 403)."""
        access = await caller.access(file_id)
        if access is None:
            raise FileNotFound()
        try:
            if not access.can_read(scope):
                raise FileNotFound()
            permit(access, scope, Write.REKEY)
        except (FileNotFound, *REFUSALS):
            await self._refused(caller, {scope_chain(file_id, scope): [
                ("record.headers.list", listing_target(file_id, scope))]})
            raise
        after = decode_header_cursor(cursor) if cursor else None
        rows = await self.repo.header_page(file_id, scope, below_key_version, after, limit + 1)
        items = rows[:limit]
        next_cursor = None
        if len(rows) > limit and items:
            last = items[-1]
            next_cursor = encode_header_cursor((utc(last.created_at), last.record_id,
                                                last.version))
        return HeaderPage(items=[HeaderItem(record_id=r.record_id, version=r.version,
                                            key_version=r.key_version, header=r.header)
                                 for r in items], next_cursor=next_cursor)

    # --- writes --------------------------------------------------------------------

    async def create(self, caller: Caller, body: RecordIn, key: str) -> tuple[dict[str, Any], bool]:
        """The new record as JSON (committed when its content came inline, pending
        otherwise), and whether it is a replay of an earlier call.

        Round trips are most of a create's cost. On PostgreSQL it is first tried in two
        statements outside any transaction block: the look-up reads the audit chain's end
        without its lock, and one statement writes every row and the audit events sealed
        on that end, taking the chain's lock before it writes them
        (``RecordsRepository.insert_sealed``). When a unique key refuses that statement
        (another append to the chain came between, or a concurrent create with this
        idempotency key or record id), nothing was written and the create runs again the
        locked way, in the request's transaction: the look-up takes the lock, one
        statement writes the rows and reads the chain's end after it, then the audit
        INSERT (five round trips with BEGIN and COMMIT; SQLite always goes this way, its
        writers serialised by BEGIN IMMEDIATE)."""
        access = await caller.may(Write.CREATE, body.file_id, body.scope)
        if self.repo.postgres:
            async with autocommit_session(self.repo.engine) as session:
                made = await self._create(RecordsRepository(session), caller, access, body,
                                          key, locked=False)
            if made is not None:
                return made
        made = await self._create(self.repo, caller, access, body, key, locked=True)
        assert made is not None  # the locked way writes, or raises
        return made

    async def _create(self, repo: RecordsRepository, caller: Caller, access: FileAccess,
                      body: RecordIn, key: str, *, locked: bool
                      ) -> tuple[dict[str, Any], bool] | None:
        digest = request_digest(body)
        chain = scope_chain(body.file_id, body.scope)
        seen = await repo.before_create(caller.account_id, key, body.record_id, chain,
                                        locked=locked)
        if seen.seen_digest is not None:
            if seen.seen_digest != digest and seen.seen_digest != legacy_request_digest(body):
                raise IdempotencyKeyReused("This Idempotency-Key was used with another body.")
            assert seen.seen_response is not None
            return seen.seen_response, True
        self._fits(body.content_length)
        facts = checked_header(body.header, file_id=body.file_id, record_id=body.record_id,
                               version=1, scope=body.scope, author=caller.account_id,
                               content_length=body.content_length)
        check_inline_content(body, facts)
        if seen.taken:
            raise RecordIdTaken("A record with this id already exists.")
        await self._key_current(caller, access, body.file_id, body.scope, facts.key_version,
                                Write.CREATE, own=True)
        at = now()
        record = Record(id=body.record_id, file_id=body.file_id, scope=body.scope,
                        created_at=at, updated_at=at, current_version=0, state="pending",
                        created_by=caller.account_id, deleted_at=None, purged_at=None)
        row = self._version_row(record.id, 1, body, facts, caller.account_id, at)
        target = record_target(record.id, 1)
        events = [("record.create", target)]
        content: list[ContentUpload | ContentChunk] = []
        if body.content is not None:
            content = self._inline_rows(record, row, body.content, caller.account_id, at)
            events.append(("record.content.write", target))
        response = record_out(record, row).model_dump(mode="json")
        rows = [record, row, *content, IdempotencyKey(
            account_id=caller.account_id, key=key, request_digest=digest, record_id=record.id,
            status=201, response=response, created_at=at)]
        if seen.end is not None:
            sealed = AUDIT.sealed(chain=chain, actor=caller.account_id, events=events,
                                  end=seen.end)
            return (response, False) if await repo.insert_sealed(rows, sealed) else None
        end = await repo.insert_then(rows, AUDIT.chain_end, {"chain": chain})
        await audit_events(repo.session, actor=caller.account_id, file_id=record.file_id,
                           scope=record.scope, events=events, end=AUDIT.end_of(end))
        return response, False

    @staticmethod
    async def _key_current(caller: Caller, access: FileAccess, file_id: uuid.UUID, scope: str,
                           key_version: int, write: Write, *, own: bool) -> None:
        """New content is stored only under the scope's current key version, and not while
        a rotation the caller must do is pending (``records.policy.key_problem``). A
        refusal is decided on a fresh answer from the sharing service: a cached one may
        predate the rotation this device just finished."""
        if key_problem(access, scope, key_version) is None:
            return
        fresh = permit(await caller.access(file_id, fresh=True), scope, write, own=own)
        problem = key_problem(fresh, scope, key_version)
        if problem is not None:
            raise problem

    @staticmethod
    def _inline_rows(record: Record, row: RecordVersion, content: bytes, author: uuid.UUID,
                     at: datetime) -> list[ContentUpload | ContentChunk]:
        """The version's content arrived with it (checked by ``check_inline_content``): it
        becomes a finished one-row upload, and the version and record are committed."""
        upload_id = uuid.uuid4()
        row.committed, row.committed_at, row.content_upload_id = True, at, upload_id
        record.current_version, record.state, record.updated_at = row.version, "committed", at
        return [ContentUpload(id=upload_id, record_id=row.record_id, version=row.version,
                              account_id=author, started_at=at, finished_at=at,
                              resumable=False, in_files=False),
                ContentChunk(upload_id=upload_id, seq=0, data=content)]

    @staticmethod
    def _version_row(record_id: uuid.UUID, version: int, body: VersionIn, facts: HeaderFacts,
                     author: uuid.UUID, at: datetime) -> RecordVersion:
        return RecordVersion(record_id=record_id, version=version, header=body.header,
                             metadata_ciphertext=body.metadata_ciphertext,
                             content_length=body.content_length, key_version=facts.key_version,
                             author=author, created_at=at, committed=False)

    async def writable(self, caller: Caller, record_id: uuid.UUID, write: Write, *,
                       version: int | None = None) -> Record:
        """A live record, locked, to which the caller may do ``write`` (``records.policy``:
        append on its scope, and a relationship that allows it on this record). A refusal
        is audited on the record (its next version for a new version; ``version``, the
        route's, for a wrap restore)."""
        record = await self.repo.record(record_id, for_update=True)
        if record is None:
            raise RecordNotFound()
        try:
            await caller.may(write, record.file_id, record.scope,
                             own=record.created_by == caller.account_id)
        except REFUSALS:
            aimed = record.current_version + 1 if write is Write.VERSION else version
            await self._refused(caller, {scope_chain(record.file_id, record.scope): [
                (WRITE_ACTIONS[write], record_target(record.id, aimed))]})
            raise
        return record

    async def add_version(self, caller: Caller, record: Record, body: VersionIn,
                          if_match: str | None) -> RecordOut:
        expect_version(if_match, record.current_version)
        if record.state != "committed":
            raise VersionConflict("The first version's content is not uploaded yet.")
        version = record.current_version + 1
        self._fits(body.content_length)
        facts = checked_header(body.header, file_id=record.file_id, record_id=record.id,
                               version=version, scope=record.scope, author=caller.account_id,
                               content_length=body.content_length)
        check_inline_content(body, facts)
        own = record.created_by == caller.account_id
        await self._key_current(caller, await caller.may(Write.VERSION, record.file_id,
                                                         record.scope, own=own),
                                record.file_id, record.scope, facts.key_version,
                                Write.VERSION, own=own)
        abandoned = await self.repo.version(record.id, version, for_update=True)
        if abandoned is not None:
            # An earlier attempt at this version never got its content: replace it. An
            # upload still running for it cannot be adopted (its digest is the old one's),
            # and wraps kept from re-keying it belong to the old header.
            await self.repo.delete_version(abandoned)
            await self.repo.forget_wraps(record.id, version)
            await self.repo.session.flush()
        at = now()
        row = self._version_row(record.id, version, body, facts, caller.account_id, at)
        self.repo.add(row)
        target = record_target(record.id, version)
        events = [("record.version.create", target)]
        if body.content is not None:
            await self.repo.insert(*self._inline_rows(record, row, body.content,
                                                      caller.account_id, at))
            events.append(("record.content.write", target))
        await self.repo.session.flush()
        await audit_events(self.repo.session, actor=caller.account_id, file_id=record.file_id,
                           scope=record.scope, events=events)
        return record_out(record, row)

    async def delete(self, caller: Caller, record: Record, if_match: str | None) -> None:
        expect_version(if_match, record.current_version)
        record.deleted_at = now()
        record.updated_at = record.deleted_at
        await self.repo.session.flush()
        await audit(self.repo.session, actor=caller.account_id, file_id=record.file_id,
                    scope=record.scope, action="record.delete", target=record_target(record.id))

    async def rekey(self, caller: Caller, body: RekeyIn) -> RekeyOut:
        """Replace only the wrap (bytes 254..410) of many headers; all or nothing.

        Only the owner and care-team colleagues re-key (``records.policy``). A changed wrap
        must be the caller's (``wrapper_id``) and use the scope's current key version (the
        one the kms holds, as the sharing service reports it), never an older one than
        stored. Each replaced header is kept (``replaced_wraps``) so that the owner can put
        it back (``restore_wrap``).

        Reads only the columns it checks (no metadata ciphertext, no ORM objects) and
        writes every new wrap with one executemany: per item the cost is a dictionary
        look-up, a header parse and a byte comparison."""
        pairs = [(item.record_id, item.version) for item in body.items]
        if len(set(pairs)) != len(pairs):
            raise InvalidHeader("A (record_id, version) appears twice in the batch.")
        ids = {item.record_id for item in body.items}
        records = await self.repo.lock_live_records(ids)
        wraps = await self.repo.lock_wraps(ids, {p[1] for p in pairs})
        accesses = await self._may_rekey_all(caller, body.items, records)
        refreshed: set[uuid.UUID] = set()
        at = now()
        out: list[RekeyedItem] = []
        changes: list[tuple[uuid.UUID, int, bytes, int]] = []
        kept: list[KeptWrap] = []
        rekeyed: dict[str, list[tuple[str, str]]] = {}  # chain -> events, in item order
        for index, item in enumerate(body.items):
            row = wraps.get((item.record_id, item.version))
            if row is None:
                raise RecordNotFound()
            try:
                facts = parse_header(item.header)
            except MalformedHeader:
                raise InvalidHeader("The header does not parse.", item=index) from None
            if item.header[:IMMUTABLE_SIZE] != row.header[:IMMUTABLE_SIZE]:
                raise InvalidHeader("Only the wrap (bytes 254..410) may change.", item=index)
            changed = item.header != row.header
            key_version = row.key_version
            if changed:
                record = records[item.record_id]
                if facts.wrapper_id != caller.account_id:
                    raise InvalidHeader("The new wrap must be made and signed by you: its "
                                        "wrapper_id is another account.", item=index,
                                        field="wrapper_id")
                access = accesses[record.file_id]
                current = access.key_version(record.scope)
                if facts.key_version > current and record.file_id not in refreshed:
                    # The rotation may have been stored after the cached answer: ask again.
                    refreshed.add(record.file_id)
                    access = permit(await caller.access(record.file_id, fresh=True),
                                    record.scope, Write.REKEY)
                    accesses[record.file_id] = access
                    current = access.key_version(record.scope)
                if facts.key_version != current:
                    raise KeyVersionNotCurrent(
                        f"The {record.scope} scope's current key version is {current}; the "
                        f"new wrap uses {facts.key_version}.", item=index, key_version=current)
                if facts.key_version < row.key_version:
                    raise StaleKeyVersion("The stored wrap uses a newer key version.",
                                          item=index, key_version=row.key_version)
                key_version = facts.key_version
                changes.append((item.record_id, item.version, item.header, key_version))
                kept.append(KeptWrap(item.record_id, item.version, row.key_version, row.header,
                                     at, caller.account_id, "rekey"))
                rekeyed.setdefault(scope_chain(record.file_id, record.scope), []).append(
                    ("record.rekey", record_target(item.record_id, item.version)))
            out.append(RekeyedItem(record_id=item.record_id, version=item.version,
                                   key_version=key_version, changed=changed))
        await self.repo.keep_wraps(kept)
        await self.repo.replace_wraps(changes)
        await audit_chains(self.repo.session, actor=caller.account_id, events=rekeyed)
        return RekeyOut(items=out)

    async def _may_rekey_all(self, caller: Caller, items: Sequence[RekeyItem],
                             records: dict[uuid.UUID, ScopedRecord]
                             ) -> dict[uuid.UUID, FileAccess]:
        """Every record exists and the caller may re-key its scope; the access per file.
        Every item refused on a record that exists is audited, then the first problem (in
        item order) is raised."""
        answers: dict[uuid.UUID, FileAccess | None] = {}
        problem: Exception | None = None
        refused: dict[str, list[tuple[str, str]]] = {}
        for item in items:
            record = records.get(item.record_id)
            if record is None:
                problem = problem or RecordNotFound()
                continue
            if record.file_id not in answers:
                answers[record.file_id] = await caller.access(record.file_id)
            try:
                permit(answers[record.file_id], record.scope, Write.REKEY)
            except REFUSALS as exc:
                problem = problem or exc
                refused.setdefault(scope_chain(record.file_id, record.scope), []).append(
                    ("record.rekey", record_target(item.record_id, item.version)))
        await self._refused(caller, refused)
        if problem is not None:
            raise problem
        return {file_id: access for file_id, access in answers.items() if access is not None}

    async def restore_wrap(self, caller: Caller, record: Record, version: int,
                           key_version: int) -> VersionOut:
        """Put back the latest header of ``version`` under ``key_version`` that a re-key
        replaced (owner only: ``records.policy``). The header it replaces is kept too."""
        row = await self.repo.version(record.id, version, for_update=True)
        if row is None:
            raise RecordNotFound()
        kept = await self.repo.kept_wrap(record.id, version, key_version)
        if kept is None or kept.header[:IMMUTABLE_SIZE] != row.header[:IMMUTABLE_SIZE]:
            raise WrapNotKept(f"No wrap of key version {key_version} was replaced by a "
                              "re-key of this version.", key_version=key_version)
        if kept.header != row.header:
            await self.repo.keep_wraps([KeptWrap(record.id, version, row.key_version,
                                                 row.header, now(), caller.account_id,
                                                 "restore")])
            row.header, row.key_version = kept.header, kept.key_version
            await self.repo.session.flush()
            await audit(self.repo.session, actor=caller.account_id, file_id=record.file_id,
                        scope=record.scope, action="record.wrap.restore",
                        target=record_target(record.id, version))
        return version_out(row)


async def commit_upload(sessionmaker: async_sessionmaker[AsyncSession], actor: uuid.UUID,
                        record_id: uuid.UUID, version: int, received: ReceivedContent) -> None:
    """One short transaction: the version adopts a complete upload and becomes visible."""
    async with sessionmaker() as session, session.begin():
        repo = RecordsRepository(session)
        record = await repo.record(record_id, for_update=True)
        row = await repo.version(record_id, version, for_update=True)
        if record is None or row is None:
            raise RecordNotFound()
        if row.committed:
            raise VersionCommitted("This version's content is already uploaded.")
        if record.current_version != version - 1:
            raise VersionConflict("Another version was committed meanwhile.")
        if received.length != row.content_length:
            raise ContentLengthMismatch(
                f"Received {received.length} bytes; the header announces {row.content_length}.")
        if received.digest != parse_header(row.header).content_digest:
            raise ContentDigestMismatch("The content is not the one the header's digest names.")
        at = now()
        # Locked (PostgreSQL) against a concurrent discard, which takes unfinished uploads
        # only (content.delete_uploads): either it went first and the upload is gone, or
        # it waits and then sees this upload finished.
        upload = (await session.execute(
            select(ContentUpload).where(ContentUpload.id == received.upload_id)
            .with_for_update())).scalar_one_or_none()
        if upload is None or upload.finished_at is not None or await received.missing():
            raise VersionConflict("The upload was discarded meanwhile.")
        row.committed, row.committed_at, row.content_upload_id = True, at, received.upload_id
        upload.finished_at = at
        record.current_version, record.state, record.updated_at = version, "committed", at
        await audit(session, actor=actor, file_id=record.file_id, scope=record.scope,
                    action="record.content.write", target=record_target(record_id, version))
