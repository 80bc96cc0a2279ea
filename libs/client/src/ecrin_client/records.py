"""Encrypted records of a patient file: create, version, list, read, download, delete.

Everything is encrypted and verified here, on the device, with ``ecrin_e2ee``; the server
only ever receives the 410-byte signed header, the padded metadata ciphertext and the
content ciphertext.

*Uploads.* The header carries the digest of the whole content ciphertext and must be sent
when the record is created, before the content. So a file is first encrypted chunk by
chunk into a temporary file of ciphertext (a worker thread; memory stays at a few chunks),
then the record is created and the ciphertext sent in resumable pieces (``uploads``: a
dropped connection costs one piece; one ``PUT .../content`` up to 1 MiB). Plaintext never
touches the disk outside the user's own file.

*Reading.* A version opens only if its header names the record, version, file and scope
that were asked for, verifies against the author's (and re-wrapper's) public identity, and
unwraps with a keyring entry signed by a granter entitled to hand this device that file's
keys — every identity trusted by this device's own records (:mod:`ecrin_client.trust`).
Downloads stream into ``decrypt_to_file``: a temporary file renamed only
once the whole stream verified. The highest version seen of each record is kept in the
profile: a server that later serves an older one is refused. Every failure is one
:class:`IntegrityError` (exit code 7); nothing unverified is shown or written.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import contextlib
import os
import secrets
import tempfile
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
)
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from ecrin_client.encoding import b64d, b64e
from ecrin_client.errors import (
    Conflict,
    EcrinError,
    IntegrityError,
    InvalidInput,
    NotFound,
    Unavailable,
)
from ecrin_client.kine import RecordMetadata
from ecrin_client.pinning import account_uuid
from ecrin_client.transport import GatewayTransport
from ecrin_client.trust import Trust
from ecrin_client.uploads import ROW_BYTES, resumable_upload
from ecrin_e2ee import (
    CHUNK_SIZE,
    DecryptionError,
    FormatError,
    IdentityKeys,
    KeyringEntry,
    PublicIdentity,
    RecordDecryptor,
    RecordEncryptor,
    RecordHeader,
    Scope,
    ScopeKey,
    decrypt_to_file,
    open_entry,
)

if TYPE_CHECKING:
    from ecrin_client.client import EcrinClient

__all__ = ["RecordInfo", "Records", "TransferProgress", "Unreadable"]

CHUNK_OVERHEAD = 17
UPLOAD_BLOCK = 1 << 20
#: Content read into memory (notes, identities) is at most this big; use download() else.
MAX_IN_MEMORY = 4 << 20
PAGE = 200


class TransferProgress(Protocol):
    """What the CLI's progress bar implements: one phase at a time."""

    def begin(self, label: str, total: int) -> None: ...

    def advance(self, amount: int) -> None: ...


class _NoProgress:
    def begin(self, label: str, total: int) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass


class RecordInfo(BaseModel):
    """One verified record version, its metadata decrypted."""

    # defer_build: validators built on first use, not at import (CLI start-up, docs/cli.md)
    model_config = ConfigDict(frozen=True, defer_build=True)

    record_id: str
    file_id: str
    scope: str
    version: int
    current_version: int
    key_version: int
    author_id: str
    created_at: datetime | None = None
    updated_at: datetime | None = None
    metadata: RecordMetadata

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class Unreadable(BaseModel):
    """A record that does not verify or open here: reported and skipped, never shown."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    record_id: str
    version: int | None = None
    #: the author the header names, when it parses (who to ask, or to verify)
    author_id: str | None = None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _unreadable(raw: Any, error: EcrinError) -> Unreadable:
    """What can be said of a record that failed, from the server's claims (not trusted:
    only to name it)."""
    version = raw.get("version") if isinstance(raw, dict) else None
    author: str | None = None
    if isinstance(version, dict):
        try:
            header = RecordHeader.from_bytes(b64d(str(version.get("header")), what="header"))
            author = str(header.author_id)
        except (DecryptionError, FormatError, ValueError, EcrinError):
            pass
    number = version.get("version") if isinstance(version, dict) else None
    return Unreadable(record_id=str(raw.get("record_id")) if isinstance(raw, dict) else "?",
                      version=number if isinstance(number, int) else None,
                      author_id=author, reason=error.message)


@dataclass(frozen=True, slots=True)
class _Version:
    """A version as the server sent it, its header parsed and checked."""

    info: RecordInfo
    header: RecordHeader
    metadata_ciphertext: bytes
    #: verified (both signatures) and unwrapped once: reused to decrypt the content
    decryptor: RecordDecryptor


def integrity_failure(what: str = "the record") -> IntegrityError:
    return IntegrityError(
        f"{what} does not verify: the server's data was altered, swapped or replayed. "
        "Refusing it; nothing was shown or written")


def _key_mark(file_id: uuid.UUID, scope: Scope) -> str:
    """The profile's high-water mark of a file scope's key version (rollback detection),
    kept beside the record versions seen."""
    return f"key:{file_id}:{scope.value}"


def _uuid(value: str | uuid.UUID, what: str) -> uuid.UUID:
    return uuid.UUID(account_uuid(str(value), what))


def _field(obj: Any, name: str) -> Any:
    try:
        return obj[name]
    except (KeyError, TypeError):
        raise integrity_failure("the server's answer") from None


class Records:
    """The records of patient files, for one unlocked account: ``Records(client, keys)``."""

    def __init__(self, client: EcrinClient, identity: IdentityKeys, *,
                 progress: TransferProgress | None = None,
                 spool_dir: Path | None = None) -> None:
        self.client = client
        self.identity = identity
        self.progress: TransferProgress = progress or _NoProgress()
        self.spool_dir = spool_dir
        self._keys: dict[tuple[uuid.UUID, Scope, int], ScopeKey] = {}
        self._latest: dict[tuple[uuid.UUID, Scope], int] = {}
        self.trust = Trust(client, identity)
        #: Records the listings of this session skipped because they do not verify here.
        self.unreadable: list[Unreadable] = []

    @property
    def _t(self) -> GatewayTransport:
        return self.client.transport

    # -- keys and identities ---------------------------------------------------------------

    def adopt_keys(self, keys: dict[Scope, ScopeKey]) -> None:
        """Scope keys this device just made (a new file): no need to fetch them back."""
        for scope, key in keys.items():
            self._keys[(key.file_id, scope, key.version)] = key
            self._latest[(key.file_id, scope)] = key.version
        self.client.profile.remember_versions(
            {_key_mark(key.file_id, scope): key.version for scope, key in keys.items()})

    async def identity_of(self, account_id: uuid.UUID, file_id: uuid.UUID | None = None
                          ) -> PublicIdentity:
        """A public identity this device trusts (:meth:`Trust.identity`), or Untrusted."""
        return await self.trust.identity(account_id, file_id=file_id)

    async def scope_key(self, file_id: uuid.UUID, scope: Scope,
                        version: int | None = None) -> ScopeKey:
        """My key of a file's scope (its latest version by default), from my keyring entries."""
        if version is None and (file_id, scope) in self._latest:
            version = self._latest[(file_id, scope)]
        if version is not None and (file_id, scope, version) in self._keys:
            return self._keys[(file_id, scope, version)]
        params: dict[str, Any] = {"scope": scope.value}
        if version is not None:
            params["version"] = version
        body = (await self._t.request("GET", f"/v1/keyrings/{file_id}/entries",
                                      params=params)).json()
        return await self.key_from_entries(file_id, scope, version, body)

    async def key_from_entries(self, file_id: uuid.UUID, scope: Scope, version: int | None,
                               body: Any, *, marks: dict[str, int] | None = None
                               ) -> ScopeKey:
        """My key of ``scope`` (``version``, or the latest the answer names) from a kms
        answer listing my entries of one file (the single route's, or one item of
        ``POST /v1/keyrings/batch``): every check :meth:`scope_key` makes (rollback of the
        latest version, a trusted and entitled granter, the entry's binding). ``marks``:
        the rollback mark is added there, for the caller to store with others at once."""
        versions = _field(body, "versions")
        newest_seen = self.client.profile.seen_version(_key_mark(file_id, scope))
        if version is None:
            latest = versions.get(scope.value) if isinstance(versions, dict) else None
            if not isinstance(latest, int):
                raise NotFound(f"no {scope.value} key of this patient file for you")
            if latest < newest_seen:
                raise IntegrityError(
                    f"the server offers {scope.value} key version {latest} of this patient "
                    "file as the latest, older than one this device already used: a key "
                    "rollback (a revoked member may hold it). Refusing it")
            version = latest
            self._latest[(file_id, scope)] = version
        for raw in _field(body, "entries"):
            try:
                entry = KeyringEntry.from_json(raw)
            except (FormatError, DecryptionError, ValueError):
                raise integrity_failure("a keyring entry") from None
            if (entry.file_id, entry.scope, entry.version) != (file_id, scope, version):
                continue
            # Only a granter this device trusts, and entitled to hand it this file's keys:
            # a key version signed by anyone else is never used (read or write).
            granter = await self.trust.granter(entry.granter_id, file_id, scope.value)
            try:
                key = open_entry(entry, self.identity, granter)
            except DecryptionError:
                raise integrity_failure("a keyring entry") from None
            self._keys[(file_id, scope, version)] = key
            if marks is None:
                self.client.profile.remember_versions({_key_mark(file_id, scope): version})
            else:
                marks[_key_mark(file_id, scope)] = version
            return key
        if version == newest_seen > 0:  # older ones may predate this member: not found
            raise IntegrityError(
                f"the server withholds {scope.value} key version {version} of this patient "
                "file, which it already showed this device: refusing to go on without it")
        raise NotFound(f"no {scope.value} key version {version} of this patient file for you")

    # -- opening what the server sends ---------------------------------------------------------

    async def _open(self, raw: dict[str, Any], *, record: dict[str, Any] | None,
                    expect_record: uuid.UUID | None = None,
                    expect_version: int | None = None) -> _Version:
        """Check and decrypt one version's header and metadata (not its content)."""
        try:
            header = RecordHeader.from_bytes(b64d(_field(raw, "header"), what="header"))
            metadata_ct = b64d(_field(raw, "metadata_ciphertext"), what="metadata")
            claimed_version = int(_field(raw, "version"))
            claimed_record = uuid.UUID(str(_field(raw, "record_id")))
        except (DecryptionError, FormatError, ValueError, EcrinError):
            raise integrity_failure() from None
        wanted_record = expect_record or claimed_record
        if (header.record_id != wanted_record or claimed_record != wanted_record
                or header.record_version != claimed_version
                or (expect_version is not None and header.record_version != expect_version)):
            raise integrity_failure()
        if record is not None and (
                str(header.file_id) != str(record.get("file_id"))
                or header.scope.value != record.get("scope")):
            raise integrity_failure()
        scope_key = await self.scope_key(header.file_id, header.scope, header.key_version)
        author = await self.identity_of(header.author_id, header.file_id)
        wrapper = await self.identity_of(header.wrapper_id, header.file_id)
        try:
            decryptor = RecordDecryptor(header, metadata_ct, scope_key=scope_key, author=author,
                                        wrapper=wrapper)
            metadata = RecordMetadata.model_validate(decryptor.metadata)
        except (DecryptionError, ValidationError):
            raise integrity_failure() from None
        current = header.record_version
        if record is not None:
            current = int(record.get("current_version") or current)
        info = RecordInfo(
            record_id=str(header.record_id), file_id=str(header.file_id),
            scope=header.scope.value, version=header.record_version, current_version=current,
            key_version=header.key_version, author_id=str(header.author_id),
            created_at=raw.get("created_at"),
            updated_at=record.get("updated_at") if record else None, metadata=metadata)
        return _Version(info, header, metadata_ct, decryptor)

    def _check_not_older(self, record_id: str, version: int) -> None:
        if version < self.client.profile.seen_version(record_id):
            raise IntegrityError(
                f"the server serves version {version} of record {record_id}, older than one "
                "this device already saw: a rollback. Refusing it")

    async def _record(self, record_id: uuid.UUID, *, include_content: bool = False
                      ) -> dict[str, Any]:
        params = {"include": "content"} if include_content else None
        body: dict[str, Any] = (await self._t.request("GET", f"/v1/records/{record_id}",
                                                      params=params)).json()
        if str(body.get("record_id")) != str(record_id):
            raise integrity_failure()
        return body

    # -- reads ---------------------------------------------------------------------------

    async def get(self, record_id: str | uuid.UUID) -> RecordInfo:
        """The latest version, verified; refused if older than one seen before."""
        rid = _uuid(record_id, "record id")
        body = await self._record(rid)
        current = int(_field(body, "current_version"))
        self._check_not_older(str(rid), current)
        opened = await self._open(_field(body, "version"), record=body, expect_record=rid,
                                  expect_version=current)
        self.client.profile.remember_versions({str(rid): current})
        return opened.info

    async def list(self, file_id: str | uuid.UUID, scope: str | None = None
                   ) -> list[RecordInfo]:
        """Every record of the file I may read (newest first), metadata decrypted.

        A record that does not verify (or whose author this device cannot trust) is not
        returned: it is added to :attr:`unreadable` with its id, author and why, and the
        rest of the listing goes on. A listing the server itself garbled still fails."""
        fid = _uuid(file_id, "patient file id")
        params: dict[str, Any] = {"file_id": str(fid), "limit": PAGE}
        if scope is not None:
            params["scope"] = Scope(scope).value
        out: list[RecordInfo] = []
        while True:
            page = (await self._t.request("GET", "/v1/records", params=params)).json()
            for item in _field(page, "items"):
                if str(item.get("file_id")) != str(fid):
                    raise integrity_failure("the record list")
                try:
                    current = int(_field(item, "current_version"))
                    rid = str(_field(item, "record_id"))
                    self._check_not_older(rid, current)
                    opened = await self._open(_field(item, "version"), record=item,
                                              expect_record=uuid.UUID(rid),
                                              expect_version=current)
                except (IntegrityError, ValueError) as error:
                    failure = error if isinstance(error, IntegrityError) else \
                        integrity_failure()
                    self.unreadable.append(_unreadable(item, failure))
                    continue
                out.append(opened.info)
            cursor = page.get("next_cursor")
            if not cursor:
                break
            params["cursor"] = cursor
        self.client.profile.remember_versions({r.record_id: r.version for r in out})
        return out

    async def history(self, record_id: str | uuid.UUID) -> builtins.list[RecordInfo]:
        """Every committed version, newest first, each verified."""
        rid = _uuid(record_id, "record id")
        body = await self._record(rid)
        versions: builtins.list[RecordInfo] = []
        params: dict[str, Any] = {"limit": PAGE}
        while True:
            page = (await self._t.request("GET", f"/v1/records/{rid}/versions",
                                          params=params)).json()
            for raw in _field(page, "items"):
                opened = await self._open(raw, record=body, expect_record=rid)
                versions.append(opened.info)
            before = page.get("next_before")
            if not before:
                break
            params["before"] = before
        numbers = [v.version for v in versions]
        if not numbers or max(numbers) != int(_field(body, "current_version")) or len(
                set(numbers)) != len(numbers):
            raise integrity_failure("the version history")
        self._check_not_older(str(rid), max(numbers))
        self.client.profile.remember_versions({str(rid): max(numbers)})
        return versions

    async def _version(self, rid: uuid.UUID, version: int | None) -> _Version:
        body = await self._record(rid)
        current = int(_field(body, "current_version"))
        self._check_not_older(str(rid), current)
        wanted = version or current
        if version is None:
            raw = _field(body, "version")
        else:
            raw = (await self._t.request("GET", f"/v1/records/{rid}/versions/{wanted}")).json()
        opened = await self._open(raw, record=body, expect_record=rid, expect_version=wanted)
        self.client.profile.remember_versions({str(rid): current})
        return opened

    async def read(self, record_id: str | uuid.UUID, version: int | None = None
                   ) -> tuple[RecordInfo, bytes]:
        """A small record's content (a note), in memory, returned only once fully verified.

        The latest version of a small record comes in one request with its content
        (``?include=content``, one audit event); a larger one, or an older version, is
        then downloaded."""
        rid = _uuid(record_id, "record id")
        inline: bytes | None = None
        if version is None:
            body = await self._record(rid, include_content=True)
            current = int(_field(body, "current_version"))
            self._check_not_older(str(rid), current)
            opened = await self._open(_field(body, "version"), record=body, expect_record=rid,
                                      expect_version=current)
            self.client.profile.remember_versions({str(rid): current})
            if body.get("content") is not None:
                try:
                    inline = b64d(str(body["content"]), what="content")
                except EcrinError:
                    raise integrity_failure() from None
        else:
            opened = await self._version(rid, version)
        if opened.info.metadata.size > MAX_IN_MEMORY:
            raise InvalidInput("this record is large: download it to a file (-o FILE)")
        decryptor = await self._decryptor(opened)
        if inline is not None:
            ciphertext = list(_split_chunks(inline, opened.header.padded_length))
        else:
            async with self._t.stream(
                    "GET", f"/v1/records/{rid}/versions/{opened.info.version}/content"
            ) as response:
                chunks = _ciphertext_chunks(response.aiter_bytes(), opened.header.padded_length)
                ciphertext = [chunk async for chunk in chunks]
        try:
            plaintext = b"".join(decryptor.decrypt(ciphertext))
        except DecryptionError:
            raise integrity_failure() from None
        return opened.info, plaintext

    async def download(self, record_id: str | uuid.UUID, path: str | Path,
                       version: int | None = None) -> RecordInfo:
        """Stream-decrypt a version into ``path``, written only if everything verifies."""
        rid = _uuid(record_id, "record id")
        target = Path(path)
        if target.is_dir():  # noqa: ASYNC240 (one stat, before any network)
            raise InvalidInput(f"{target} is a folder: give a file name")
        opened = await self._version(rid, version)
        decryptor = await self._decryptor(opened)
        self.progress.begin("Downloading and decrypting", opened.header.padded_length)
        loop = asyncio.get_running_loop()
        async with self._t.stream(
                "GET", f"/v1/records/{rid}/versions/{opened.info.version}/content") as response:
            chunks = _ciphertext_chunks(response.aiter_bytes(), opened.header.padded_length,
                                        self.progress.advance)
            feed = _Prefetched(chunks, loop)
            try:
                await asyncio.to_thread(decrypt_to_file, decryptor, feed, target)
            except DecryptionError:
                raise integrity_failure() from None
            finally:
                await feed.settle()
                await chunks.aclose()
        return opened.info

    async def _decryptor(self, opened: _Version) -> RecordDecryptor:
        """The decryptor ``_open`` already verified: no second round of signature checks."""
        return opened.decryptor

    # -- writes --------------------------------------------------------------------------

    async def _under_current_key(self, file_id: uuid.UUID, scope: Scope,
                                 write: Callable[[ScopeKey], Awaitable[RecordInfo]]
                                 ) -> RecordInfo:
        """Run ``write`` with the scope's latest key this device knows: in steady state
        the write is one request. New content never uses a key a revoked or expired member
        still holds, and the records API enforces it: it refuses a header under an older
        key version than the scope's current one (``key-version-not-current``: another
        device rotated; fetch the new key) and, from a member who rotates, any write while
        a rotation of the scope is pending (``rotation-pending``: finish the file's
        pending rotations here, then write under the new key). Nothing was stored by a
        refused attempt; each retry encrypts again."""
        from ecrin_client.sharing import rotate_before_write  # sharing builds on Records

        for attempt in range(WRITE_ATTEMPTS):
            scope_key = await self.scope_key(file_id, scope)
            try:
                return await write(scope_key)
            except Conflict as exc:
                if attempt + 1 == WRITE_ATTEMPTS or exc.slug not in STALE_KEY_PROBLEMS:
                    raise
                if exc.slug == "rotation-pending":
                    await rotate_before_write(self, file_id)
                self._latest.pop((file_id, scope), None)  # ask the kms for the latest
        raise AssertionError("unreachable")  # pragma: no cover

    async def create(self, file_id: str | uuid.UUID, scope: str, metadata: RecordMetadata,
                     content: bytes | Path, *, record_id: str | uuid.UUID | None = None
                     ) -> RecordInfo:
        """A new record (version 1): encrypt, create (idempotent), upload, commit. Small
        content travels inside the create request: one request, committed at once.
        ``record_id``: an id chosen beforehand (a patient's identity record, named in its
        file); a new random one by default."""
        fid = _uuid(file_id, "patient file id")
        rid = _uuid(record_id, "record id") if record_id is not None else uuid.uuid4()
        return await self._under_current_key(
            fid, Scope(scope), lambda key: self._create(fid, rid, key, metadata, content))

    async def _create(self, fid: uuid.UUID, rid: uuid.UUID, scope_key: ScopeKey,
                      metadata: RecordMetadata, content: bytes | Path) -> RecordInfo:
        async with self._sealed(fid, rid, 1, scope_key, metadata, content) as sealed:
            payload = {"record_id": str(rid), "file_id": str(fid), "scope": scope_key.scope.value,
                       **sealed.version_body()}
            key = secrets.token_urlsafe(24)  # the same for every retry of this create

            async def send() -> httpx.Response:
                return await self._t.request("POST", "/v1/records", json=payload, ok=(201,),
                                             headers={"idempotency-key": key})

            created = (await self.client._retrying(send)).json()
            if sealed.inline is None:
                await self._upload(rid, 1, sealed.length, sealed.body, sealed.spool)
        self.client.profile.remember_versions({str(rid): 1})
        return self._written(sealed.header, metadata, created, 1)

    async def add_version(self, record_id: str | uuid.UUID, metadata: RecordMetadata,
                          content: bytes | Path) -> RecordInfo:
        """A new version of a record (If-Match on the version this device last verified)."""
        rid = _uuid(record_id, "record id")
        current = await self.get(rid)
        fid = uuid.UUID(current.file_id)
        version = current.current_version + 1

        async def write(scope_key: ScopeKey) -> RecordInfo:
            async with self._sealed(fid, rid, version, scope_key, metadata,
                                    content) as sealed:
                created = (await self._t.request(
                    "POST", f"/v1/records/{rid}/versions", ok=(201,),
                    headers={"if-match": f'"v{current.current_version}"'},
                    json=sealed.version_body())).json()
                if sealed.inline is None:
                    await self._upload(rid, version, sealed.length, sealed.body, sealed.spool)
            self.client.profile.remember_versions({str(rid): version})
            return self._written(sealed.header, metadata, created, version)

        return await self._under_current_key(fid, Scope(current.scope), write)

    async def delete(self, record_id: str | uuid.UUID) -> RecordInfo:
        """Tombstone the record; If-Match on the latest version, verified first."""
        current = await self.get(record_id)
        await self._t.request("DELETE", f"/v1/records/{current.record_id}", ok=(200, 204),
                              headers={"if-match": f'"v{current.current_version}"'})
        return current

    def _written(self, header: RecordHeader, metadata: RecordMetadata, created: dict[str, Any],
                 version: int) -> RecordInfo:
        return RecordInfo(
            record_id=str(header.record_id), file_id=str(header.file_id),
            scope=header.scope.value, version=version, current_version=version,
            key_version=header.key_version, author_id=str(header.author_id),
            created_at=created.get("created_at"), updated_at=created.get("updated_at"),
            metadata=metadata)

    @contextlib.asynccontextmanager
    async def _sealed(self, fid: uuid.UUID, rid: uuid.UUID, version: int, scope_key: ScopeKey,
                      metadata: RecordMetadata, content: bytes | Path
                      ) -> AsyncIterator[Sealed]:
        """Encrypt: in memory for bytes, to a spool file for a path."""
        encryptor = RecordEncryptor(file_id=fid, record_id=rid, record_version=version,
                                    scope_key=scope_key, author=self.identity,
                                    metadata=metadata.to_json())
        if isinstance(content, bytes):
            blob = b"".join(encryptor.encrypt((content,)))

            async def small() -> AsyncIterator[bytes]:
                yield blob

            yield Sealed(encryptor.header, encryptor.metadata_ciphertext, len(blob), small,
                         blob if len(blob) <= INLINE_CONTENT_MAX else None)
            return
        fd, name = tempfile.mkstemp(prefix="ecrin-upload-", suffix=".ciphertext",
                                    dir=self.spool_dir)
        spool = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                self.progress.begin("Encrypting", metadata.size)
                await asyncio.to_thread(_spool, encryptor, content, out, self.progress.advance)
            length = spool.stat().st_size  # noqa: ASYNC240 (one stat)

            def from_spool() -> AsyncIterable[bytes]:
                return _file_blocks(spool, self.progress)

            yield Sealed(encryptor.header, encryptor.metadata_ciphertext, length, from_spool,
                         None, spool)
        finally:
            spool.unlink(missing_ok=True)  # noqa: ASYNC240 (one unlink)

    async def _upload(self, rid: uuid.UUID, version: int, length: int,
                      body: Callable[[], AsyncIterable[bytes]], spool: Path | None = None
                      ) -> None:
        """A spool over one server row goes up resumably (``uploads``: a cut connection
        costs one piece; progress counts what the server acknowledged); else one PUT."""
        if spool is not None and length > ROW_BYTES:
            self.progress.begin("Uploading", length)
            sent = 0

            def acknowledged(n: int) -> None:
                nonlocal sent
                self.progress.advance(max(0, n - sent))
                sent = max(sent, n)

            await resumable_upload(self._t, rid, version, spool, length, acknowledged)
            return

        async def send() -> httpx.Response:
            self.progress.begin("Uploading", length)
            return await self._t.request(
                "PUT", f"/v1/records/{rid}/versions/{version}/content", ok=(200, 204),
                content=body, headers={"content-type": "application/octet-stream",
                                       "content-length": str(length)})

        await self.client._retrying(send)


#: A write refused for its key is encrypted again under the current key at most this often.
WRITE_ATTEMPTS = 3
#: The records API's problems for a write under a key that must not be used any more.
STALE_KEY_PROBLEMS = frozenset({"rotation-pending", "key-version-not-current"})

#: Content ciphertext up to this size is sent inside the create (or new version) request,
#: which commits it at once; larger content is uploaded with a streamed PUT afterwards.
#: The records API accepts up to this size inline (``docs/records.md``).
INLINE_CONTENT_MAX = 256 << 10


@dataclass(frozen=True)
class Sealed:
    """An encrypted version ready to send."""

    header: RecordHeader
    metadata_ciphertext: bytes
    length: int
    body: Callable[[], AsyncIterable[bytes]]
    #: The whole content ciphertext when small enough to travel inline, else None.
    inline: bytes | None
    #: The spool file holding the ciphertext (content from a path), for resumable uploads.
    spool: Path | None = None

    def version_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"header": b64e(self.header.to_bytes()),
                                "metadata_ciphertext": b64e(self.metadata_ciphertext),
                                "content_length": self.length}
        if self.inline is not None:
            body["content"] = b64e(self.inline)
        return body


def _spool(encryptor: RecordEncryptor, path: Path, out: BinaryIO,
           advance: Callable[[int], None]) -> None:
    """Worker thread: encrypt ``path`` chunk by chunk into ``out``."""
    with open(path, "rb") as source:
        for chunk in encryptor.encrypt(_counted(source, advance)):
            out.write(chunk)
        out.flush()


def _counted(source: BinaryIO, advance: Callable[[int], None]) -> Iterator[bytes]:
    while block := source.read(CHUNK_SIZE):
        advance(len(block))
        yield block


async def _file_blocks(path: Path, progress: TransferProgress) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:  # noqa: ASYNC230 (each read is handed to a thread)
        while block := await asyncio.to_thread(f.read, UPLOAD_BLOCK):
            progress.advance(len(block))
            yield block


async def _ciphertext_chunks(body: AsyncIterator[bytes], padded_length: int,
                             advance: Callable[[int], None] | None = None
                             ) -> AsyncGenerator[bytes, None]:
    """Cut a content download into the stream's chunks (the last one shorter).

    Extra bytes come out as one more chunk and a short body as a short chunk: the decryptor
    refuses both. A body the server cut short is an integrity failure too.
    """
    sizes = [min(CHUNK_SIZE, padded_length - i * CHUNK_SIZE) + CHUNK_OVERHEAD
             for i in range(-(-padded_length // CHUNK_SIZE))]
    # Progress counts stream plaintext, padding included (the bar's total is padded_length).
    # Each chunk is copied once out of ``buffer`` (through a view); what is left of a
    # piece moves to the front once per piece, not once per chunk.
    buffer = bytearray()
    index = 0
    try:
        async for piece in body:
            buffer += piece
            start = 0
            while index < len(sizes) and len(buffer) - start >= sizes[index]:
                end = start + sizes[index]
                with memoryview(buffer) as view:
                    chunk = view[start:end].tobytes()
                start = end
                index += 1
                if advance is not None:
                    advance(sizes[index - 1] - CHUNK_OVERHEAD)
                yield chunk
            del buffer[:start]
            if index == len(sizes) and buffer:
                break  # more than announced
    except httpx.RemoteProtocolError:
        raise integrity_failure("the content (the server cut it short)") from None
    except httpx.TransportError:
        raise Unavailable("the download was interrupted; nothing was written") from None
    if buffer or index < len(sizes):
        yield bytes(buffer)


def _split_chunks(ciphertext: bytes, padded_length: int) -> Iterator[bytes]:
    """Content that came inline, cut into the stream's chunks as a download would be:
    missing or extra bytes make a short or an extra chunk, which the decryptor refuses."""
    offset = 0
    for i in range(-(-padded_length // CHUNK_SIZE)):
        size = min(CHUNK_SIZE, padded_length - i * CHUNK_SIZE) + CHUNK_OVERHEAD
        yield ciphertext[offset:offset + size]
        offset += size
    if offset < len(ciphertext):
        yield ciphertext[offset:]


#: Ciphertext handed to the decrypting thread at a time (16 stream chunks).
DOWNLOAD_BATCH = 1 << 20


class _Prefetched:
    """The async download as a plain iterator, for the decrypting worker thread.

    Chunks cross from the event loop to the thread in batches of about ``DOWNLOAD_BATCH``
    bytes, and the next batch is asked for before the thread decrypts the current one:
    one thread hand-off per MiB rather than per 64 KiB chunk, and the network read
    overlaps decryption and the file write. At most two batches are held (bounded
    memory). ``settle`` (on the loop, before the source is closed) waits for a batch
    still being read when the thread stopped early.
    """

    def __init__(self, chunks: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self._chunks = chunks
        self._loop = loop
        self._pending: concurrent.futures.Future[list[bytes]] | None = None

    async def _batch(self) -> list[bytes]:
        batch: list[bytes] = []
        size = 0
        async for chunk in self._chunks:
            batch.append(chunk)
            size += len(chunk)
            if size >= DOWNLOAD_BATCH:
                break
        return batch

    def _ask(self) -> concurrent.futures.Future[list[bytes]]:
        self._pending = asyncio.run_coroutine_threadsafe(self._batch(), self._loop)
        return self._pending

    def __iter__(self) -> Iterator[bytes]:
        future = self._ask()
        while batch := future.result():
            future = self._ask()
            yield from batch

    async def settle(self) -> None:
        if self._pending is not None:
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(self._pending)
