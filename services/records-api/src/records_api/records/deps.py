"""Request dependencies of the records routes."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlalchemy.ext.asyncio import AsyncSession

from ecrin_platform.audit import ChainEnd
from ecrin_platform.db import release
from ecrin_platform.deps import CurrentUser, InternalClaimsDep, ReadSessionDep, SessionDep
from ecrin_platform.problems import Unauthorized
from ecrin_platform.tokens import HEADER
from records_api.access import AccessDeciderDep
from records_api.models import Record
from records_api.records.audit import AUDIT, audit_apart, record_target, scope_chain
from records_api.records.content import ContentStore
from records_api.records.policy import Write
from records_api.records.repository import ReadWithEvent, RecordsRepository
from records_api.records.service import Caller, RecordsService, current_target


def _max_content(request: Request) -> int:
    return int(request.app.state.settings.max_upload_bytes)


async def get_service(request: Request, session: SessionDep) -> RecordsService:
    return RecordsService(RecordsRepository(session), max_content_bytes=_max_content(request),
                          refusals=request.app.state.sessionmaker)


async def get_read_service(request: Request, session: ReadSessionDep) -> RecordsService:
    return RecordsService(RecordsRepository(session), max_content_bytes=_max_content(request),
                          refusals=request.app.state.sessionmaker)


Service = Annotated[RecordsService, Depends(get_service)]
ReadService = Annotated[RecordsService, Depends(get_read_service)]


async def get_caller(request: Request, user: CurrentUser, claims: InternalClaimsDep,
                     decider: AccessDeciderDep) -> Caller:
    try:
        account_id = uuid.UUID(user.account_id)
    except ValueError:
        raise Unauthorized("The token names no account.") from None
    return Caller(account_id=account_id, token=request.headers.get(HEADER, ""),
                  request_id=claims.request_id, decider=decider)


CallerDep = Annotated[Caller, Depends(get_caller)]
RecordId = Annotated[uuid.UUID, Path(description="The record's id (made by the client)")]
VersionNumber = Annotated[int, Path(ge=1, le=0xFFFFFFFF)]


def path_version(request: Request) -> int | None:
    """The route's version number, when it names one that is valid (the route itself
    refuses the others, after its dependencies ran)."""
    raw = request.path_params.get("version")
    if not isinstance(raw, str) or not raw.isdigit() or not 1 <= int(raw) <= 0xFFFFFFFF:
        return None
    return int(raw)


def readable(action: str, *, versioned: bool,
             latest: bool = False) -> Callable[..., Awaitable[Record]]:
    """The dependency of a read route: a record the caller may read, a refusal audited
    as ``action`` on what the route would have read (the version in the path, or the
    record itself, or else its latest version). ``latest``: with ``?include=content``,
    the current version and its small content are read with the record, in one query."""

    async def readable_record(request: Request, record_id: RecordId, caller: CallerDep,
                              service: ReadService) -> Record:
        version = path_version(request)

        def target(record: Record) -> str:
            if version is None and versioned:
                return current_target(record)
            return record_target(record.id, version)

        return await service.readable(
            caller, record_id, action=action, target=target,
            latest=latest and request.query_params.get("include") == "content")

    return readable_record


async def versionable_record(record_id: RecordId, caller: CallerDep,
                             service: Service) -> Record:
    return await service.writable(caller, record_id, Write.VERSION)


async def deletable_record(record_id: RecordId, caller: CallerDep, service: Service) -> Record:
    return await service.writable(caller, record_id, Write.DELETE)


async def wrap_restorable_record(request: Request, record_id: RecordId, caller: CallerDep,
                                 service: Service) -> Record:
    return await service.writable(caller, record_id, Write.RESTORE_WRAP,
                                  version=path_version(request))


#: A committed, live record the caller may read (a refusal audited as the route's read).
ReadableRecord = Annotated[Record, Depends(readable("record.read", versioned=True))]
#: The same, for ``GET /v1/records/{id}``: with ``?include=content`` the version and its
#: content are read with the record.
LatestReadableRecord = Annotated[Record, Depends(readable("record.read", versioned=True,
                                                          latest=True))]
HistoryRecord = Annotated[Record, Depends(readable("record.history", versioned=False))]
ContentRecord = Annotated[Record, Depends(readable("record.content.read", versioned=True))]
#: Live, locked, and the caller may add a version / delete it / restore a wrap of it.
VersionableRecord = Annotated[Record, Depends(versionable_record)]
DeletableRecord = Annotated[Record, Depends(deletable_record)]
WrapRestorableRecord = Annotated[Record, Depends(wrap_restorable_record)]


async def get_content_store(request: Request) -> ContentStore:
    store: ContentStore = request.app.state.content_store
    return store


ContentStoreDep = Annotated[ContentStore, Depends(get_content_store)]


class ReadAuditor:
    """Records a read in the audit chain of the scope read (its own short transaction).
    The request's read session gives its connection back first: a request never holds a
    read connection while it waits for a write one (64 concurrent reads used to take every
    pooled connection for reading and then wait 30 s for a second)."""

    def __init__(self, request: Request, caller: Caller, read_session: AsyncSession) -> None:
        self.sessionmaker = request.app.state.sessionmaker
        self.actor = caller.account_id
        self.read_session = read_session

    async def __call__(self, file_id: uuid.UUID, action: str, targets: dict[str, str], *,
                       end: ChainEnd | None = None, then: ReadWithEvent | None = None) -> Any:
        """``targets``: scope -> what was read of it (one event in each scope's chain).
        ``end``: the end of the one scope's chain, read (without its lock) by the query
        that read the record. ``then``: a value the read releases, read by the statement
        that writes the event where it can be, else once the event is written; returned
        (None without ``then``). No event written, nothing read."""
        if not targets:
            return None
        session = self.read_session
        if len(targets) == 1 and session.bind is not None \
                and session.bind.dialect.name == "postgresql":
            # The read session is outside any transaction block on PostgreSQL: one event is
            # two round trips there, where a transaction of its own takes five; when
            # another append to the chain came between, it is written the locked way.
            ((scope, target),) = targets.items()
            written = await AUDIT.append_unlocked(
                session, chain=scope_chain(file_id, scope), actor=self.actor,
                events=[(action, target)], end=end,
                statement=None if then is None else then.with_event,
                params=None if then is None else then.params)
            await release(session)
            if written is not None:
                return None if then is None else written[0].released
        await release(session)
        await audit_apart(self.sessionmaker, actor=self.actor, events={
            scope_chain(file_id, scope): [(action, target)]
            for scope, target in targets.items()})
        if then is None:
            return None
        value = (await session.execute(then.alone, then.params)).scalar_one_or_none()
        await release(session)
        return value


async def get_read_auditor(request: Request, caller: CallerDep,
                           read_session: ReadSessionDep) -> ReadAuditor:
    return ReadAuditor(request, caller, read_session)


AuditRead = Annotated[ReadAuditor, Depends(get_read_auditor)]
