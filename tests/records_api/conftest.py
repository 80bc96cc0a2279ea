"""A live records-api app per test with the sharing service replaced by a fake decider.

Apps run with ``rollback=False``: content uploads write their rows in short transactions
of their own (see ``records_api.records.content``), which a single rolled-back outer
transaction cannot host. Every test uses fresh random file and record ids instead.

A module that sets ``BOTH_STORES = True`` runs each of its tests twice: large content kept
in database rows, and kept in files under a content directory (``records.content_rows``);
``rows_held`` and ``drop_rows`` look at and damage the stored rows wherever they are.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from ecrin_e2ee import EncryptedRecord, IdentityKeys, Scope, ScopeKey, encrypt_record
from ecrin_platform.access import FileAccess
from ecrin_platform.db import create_engine
from ecrin_platform.tokens import InternalTokenIssuer, Principal
from records_api.access import get_access_decider
from records_api.models import ContentChunk, ContentUpload
from records_api.records.content import ContentStore
from tests.support.apps import Caller, build_app, running


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def stream(*parts: bytes) -> AsyncIterator[bytes]:
    """A request body without Content-Length, sent in these pieces."""
    for part in parts:
        yield part


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FakeSharing:
    """Answers like ``GET /internal/access/{file}/{account}`` of the sharing service,
    ``key_versions`` included (per file, as the kms would report its rotations)."""

    def __init__(self) -> None:
        self.grants: dict[tuple[uuid.UUID, uuid.UUID], FileAccess] = {}
        self.key_versions: dict[uuid.UUID, dict[str, int]] = {}
        self.pending: dict[uuid.UUID, set[str]] = {}
        self.tokens: list[str] = []
        self.fresh_asks = 0

    def grant(self, file_id: uuid.UUID, account_id: uuid.UUID, relationship: str = "owner",
              **scopes: str) -> None:
        self.grants[(file_id, account_id)] = FileAccess(file_id, account_id, relationship,
                                                        scopes)

    def revoke(self, file_id: uuid.UUID, account_id: uuid.UUID) -> None:
        self.grants.pop((file_id, account_id), None)

    def rotated(self, file_id: uuid.UUID, scope: str, version: int) -> None:
        """The kms now holds ``version`` of the scope key."""
        self.key_versions.setdefault(file_id, {})[scope] = version

    def pend(self, file_id: uuid.UUID, scope: str) -> None:
        """A member left: a rotation of ``scope`` is pending."""
        self.pending.setdefault(file_id, set()).add(scope)

    def done(self, file_id: uuid.UUID, scope: str) -> None:
        self.pending.get(file_id, set()).discard(scope)

    async def access(self, file_id: uuid.UUID, account_id: uuid.UUID, *, token: str,
                     request_id: str | None = None, fresh: bool = False) -> FileAccess | None:
        self.tokens.append(token)
        self.fresh_asks += fresh
        found = self.grants.get((file_id, account_id))
        if found is None:
            return None
        return replace(found, key_versions=dict(self.key_versions.get(file_id, {})),
                       pending_rotations=frozenset(self.pending.get(file_id, set())))


@dataclass
class Actor:
    keys: IdentityKeys
    role: str = "practitioner"

    @property
    def id(self) -> uuid.UUID:
        return self.keys.account_id


@dataclass
class Practice:
    """One patient file with its scope keys, and helpers to drive the API as someone."""

    app: FastAPI
    client: httpx.AsyncClient
    sharing: FakeSharing
    caller: Caller
    owner: Actor
    file_id: uuid.UUID = field(default_factory=uuid.uuid4)
    keys: dict[str, ScopeKey] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for scope in Scope:
            self.keys[scope.value] = ScopeKey.generate(self.file_id, scope, 1)
        self.sharing.grant(self.file_id, self.owner.id, "owner", clinical="append",
                           shared="append", administrative="append")

    def actor(self, role: str = "practitioner") -> Actor:
        return Actor(IdentityKeys.generate(uuid.uuid4()), role)

    def headers(self, actor: Actor | None = None, **extra: str) -> dict[str, str]:
        actor = actor or self.owner
        return {**self.caller.headers(Principal(str(actor.id), actor.role)), **extra}

    def encrypt(self, content: bytes, *, scope: str = "clinical", version: int = 1,
                record_id: uuid.UUID | None = None, author: Actor | None = None,
                metadata: dict[str, Any] | None = None) -> EncryptedRecord:
        return encrypt_record(content, metadata or {"kind": "session_note", "title": "séance"},
                              file_id=self.file_id, record_id=record_id or uuid.uuid4(),
                              record_version=version, scope_key=self.keys[scope],
                              author=(author or self.owner).keys)

    @staticmethod
    def body(record: EncryptedRecord, **overrides: Any) -> dict[str, Any]:
        header = record.header
        body = {"record_id": str(header.record_id), "file_id": str(header.file_id),
                "scope": header.scope.value, "header": b64(header.to_bytes()),
                "metadata_ciphertext": b64(record.metadata_ciphertext),
                "content_length": sum(len(c) for c in record.chunks)}
        body.update(overrides)
        return body

    async def create(self, record: EncryptedRecord, *, actor: Actor | None = None,
                     key: str | None = None, **overrides: Any) -> httpx.Response:
        headers = self.headers(actor, **{"Idempotency-Key": key or uuid.uuid4().hex})
        return await self.client.post("/v1/records", json=self.body(record, **overrides),
                                      headers=headers)

    async def upload(self, record: EncryptedRecord,
                     content: bytes | AsyncIterable[bytes] | None = None, *,
                     actor: Actor | None = None, **headers: str) -> httpx.Response:
        header = record.header
        data = b"".join(record.chunks) if content is None else content
        url = f"/v1/records/{header.record_id}/versions/{header.record_version}/content"
        return await self.client.put(url, content=data, headers=self.headers(
            actor, **{"content-type": "application/octet-stream", **headers}))

    async def add(self, content: bytes = b"bilan", **kwargs: Any) -> EncryptedRecord:
        record = self.encrypt(content, **kwargs)
        assert (await self.create(record)).status_code == 201
        assert (await self.upload(record)).status_code == 204
        return record


@pytest.fixture
def content_store() -> str:
    """Where large content is kept: "database" unless the module sets ``BOTH_STORES``."""
    return "database"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if getattr(metafunc.module, "BOTH_STORES", False) and "content_store" in metafunc.fixturenames:
        metafunc.parametrize("content_store", ["database", "files"])


async def rows_held(practice: Practice, upload_id: uuid.UUID) -> int:
    """Rows of this upload stored anywhere: database rows and files."""
    store: ContentStore = practice.app.state.content_store
    count = (await store.database.tally(upload_id))[0]
    if store.files is not None:
        count += (await store.files.tally(upload_id))[0]
    return count


async def drop_rows(practice: Practice, upload_id: uuid.UUID, *seqs: int) -> None:
    """Delete these rows of a stored upload (all of them if none is named), wherever they
    are: what a lost file, a bad restore or a tampering operator would leave."""
    store: ContentStore = practice.app.state.content_store
    async with practice.app.state.sessionmaker() as session:
        upload = await session.get(ContentUpload, upload_id)
    assert upload is not None
    if upload.in_files:
        assert store.files is not None
        folder = store.files.folder(upload_id)
        for path in folder.iterdir():
            if path.name.isdigit() and (not seqs or int(path.name) in seqs):
                path.unlink()
        return
    chunks = ContentChunk.upload_id == upload_id
    if seqs:
        chunks &= ContentChunk.seq.in_(seqs)
    async with practice.app.state.sessionmaker() as session, session.begin():
        await session.execute(ContentChunk.__table__.delete().where(chunks))


@pytest.fixture
async def records_app(database_url_for: Callable[[str], str],
                      internal_keys: tuple[bytes, bytes], issuer: InternalTokenIssuer,
                      content_store: str, tmp_path: Path) -> AsyncIterator[Any]:
    """``async with records_app(**settings) as practice``: a live app and one patient file."""
    with_files = False

    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Practice]:
        nonlocal with_files
        overrides.setdefault("purge_interval_s", 0)
        if content_store == "files":
            overrides.setdefault("content_dir", tmp_path / "content")
        with_files = with_files or overrides.get("content_dir") is not None
        app = build_app("records-api", database_url_for("records-api"), internal_keys,
                        **overrides)
        sharing = FakeSharing()
        app.dependency_overrides[get_access_decider] = lambda: sharing
        async with running(app, rollback=False) as client:
            yield Practice(app, client, sharing, Caller(issuer, "records-api"),
                           Actor(IdentityKeys.generate(uuid.uuid4())))

    yield make
    if with_files:
        # The worker's tests share its database: uploads kept in this test's temporary
        # content directory would make every later app without one refuse to start.
        engine = create_engine(database_url_for("records-api"))
        try:
            async with engine.begin() as conn:
                await conn.execute(update(ContentUpload).where(ContentUpload.in_files)
                                   .values(in_files=False))
        finally:
            await engine.dispose()


@pytest.fixture
async def practice(records_app) -> AsyncIterator[Practice]:
    async with records_app() as p:
        yield p
