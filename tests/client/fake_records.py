"""The fake gateway + kms, plus patient files, keyrings and records (sharing, kms,
records-api), in memory. It stores what the real services store (opaque headers and
ciphertexts, keyring entries as JSON) and tests tamper with it directly."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.client.fake_server import FakeEcrin, b64d, b64e, problem

SCOPES = ("clinical", "shared", "administrative")


@dataclass
class FakeVersion:
    header: str
    metadata_ciphertext: str
    content_length: int
    author: str
    created_at: str
    content: bytes | None = None


@dataclass
class FakeRecord:
    id: str
    file_id: str
    scope: str
    created_by: str
    created_at: str
    current_version: int = 0
    deleted: bool = False
    versions: dict[int, FakeVersion] = field(default_factory=dict)


class FakeRecords(FakeEcrin):
    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, dict[str, Any]] = {}
        self.keyrings: dict[str, list[dict[str, Any]]] = {}
        self.records: dict[str, FakeRecord] = {}
        self.idempotency: dict[str, str] = {}
        self.tick = 0
        self.expire_before_upload = False  # knob: tokens expire just before a content PUT
        self.refuse_rekey_batch: int | None = None  # knob: that POST /rekey (0-based) is 409
        self.rekey_batches: list[int] = []  # items per POST /v1/records/rekey
        self.pending_rotation_checks = 0
        self.inline_reads = 0
        #: knob: content downloads arrive in pieces of this size, one per loop turn (as
        #: from a network) rather than in one piece
        self.content_piece: int | None = None
        #: resumable upload sessions: id -> (record id, version, bytes stored)
        self.uploads: dict[str, tuple[str, int, bytearray]] = {}

    def now(self) -> str:
        self.tick += 1
        return (datetime(2026, 3, 1, tzinfo=UTC) + timedelta(seconds=self.tick)).isoformat()

    def handle(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")
        if len(parts) < 2 or parts[1] not in ("files", "keyrings", "records", "rotations"):
            return super().handle(request)
        self.calls.append((request.method, request.url.path))
        if (self.expire_before_upload and request.method == "PUT"
                and parts[-1] == "content"):
            self.expire_before_upload = False
            self.expire_access_tokens()
        session = self.session_of(request)
        if session is None:
            return problem(401, "invalid-token")
        handler = getattr(self, f"{parts[1]}_{request.method.lower()}")
        return handler(request, session.account_id, parts[2:])

    @staticmethod
    def body(request: httpx.Request) -> Any:
        return json.loads(request.content)

    def file_json(self, file_id: str) -> dict[str, Any]:
        f = self.files[file_id]
        return {"id": file_id, "owner_id": f["owner"], "state": f["state"],
                "created_at": f["created_at"], "updated_at": f["created_at"],
                "relationship": "owner", "scopes": {s: "append" for s in SCOPES}}

    def owned(self, file_id: str, account: str, *, active: bool = True) -> bool:
        f = self.files.get(file_id)
        return f is not None and f["owner"] == account and (not active or f["state"] == "active")

    # -- sharing ---------------------------------------------------------------------------

    def rotations_get(self, request, account, rest):
        self.pending_rotation_checks += 1
        return httpx.Response(200, json=[])

    def files_post(self, request, account, rest):
        body = self.body(request)
        file_id = body["file_id"]
        if file_id in self.files:
            if self.files[file_id]["owner"] != account:
                return problem(409, "conflict")
            return httpx.Response(200, json=self.file_json(file_id))
        self.files[file_id] = {"owner": account, "tokens": set(body["search_tokens"]),
                               "state": "pending", "created_at": self.now()}
        return httpx.Response(201, json=self.file_json(file_id))

    def files_get(self, request, account, rest):
        if rest:
            if not self.owned(rest[0], account):
                return problem(404, "not-found")
            return httpx.Response(200, json=self.file_json(rest[0]))
        tokens = set(request.url.params.get_list("token"))
        items = [self.file_json(fid) for fid, f in self.files.items()
                 if self.owned(fid, account) and (not tokens or tokens & f["tokens"])]
        return httpx.Response(200, json={"items": items, "next_cursor": None})

    # -- kms -------------------------------------------------------------------------------

    def keyrings_put(self, request, account, rest):
        file_id = rest[0]
        if not self.owned(file_id, account, active=False):
            return problem(404, "not-found")
        self.keyrings[file_id] = self.body(request)["entries"]
        self.files[file_id]["state"] = "active"
        return httpx.Response(201, json={"file_id": file_id, "versions": {}, "entries": []})

    def keyrings_get(self, request, account, rest):
        file_id = rest[0]
        if not self.owned(file_id, account):
            return problem(404, "not-found")
        scope = request.url.params.get("scope")
        version = request.url.params.get("version")
        entries = [e for e in self.keyrings.get(file_id, [])
                   if e["member_id"] == account and (scope is None or e["scope"] == scope)
                   and (version is None or e["version"] == int(version))]
        versions = {s: max([e["version"] for e in self.keyrings[file_id] if e["scope"] == s],
                           default=0) for s in SCOPES}
        return httpx.Response(200, json={"file_id": file_id, "versions": versions,
                                         "entries": entries})

    # -- records-api -----------------------------------------------------------------------

    def record_json(self, record: FakeRecord, version: int) -> dict[str, Any]:
        return {"record_id": record.id, "file_id": record.file_id, "scope": record.scope,
                "state": "committed" if record.current_version else "pending",
                "created_at": record.created_at, "updated_at": record.created_at,
                "created_by": record.created_by, "current_version": record.current_version,
                "version": self.version_json(record, version)}

    @staticmethod
    def version_json(record: FakeRecord, version: int) -> dict[str, Any]:
        v = record.versions[version]
        return {"record_id": record.id, "version": version, "key_version": key_version(v.header),
                "content_length": v.content_length, "author_id": v.author,
                "created_at": v.created_at, "committed": v.content is not None,
                "header": v.header, "metadata_ciphertext": v.metadata_ciphertext}

    def readable(self, record_id: str, account: str) -> FakeRecord | None:
        record = self.records.get(record_id)
        if (record is None or record.deleted or not record.current_version
                or not self.owned(record.file_id, account)):
            return None
        return record

    def records_post(self, request, account, rest):
        if rest[-1:] == ["uploads"]:
            return self.open_upload(account, rest)
        body = self.body(request)
        if rest == ["rekey"]:
            return self.rekey(body, account)
        if not rest:
            key = request.headers.get("idempotency-key")
            if not key:
                return problem(400, "idempotency-key-required")
            if key in self.idempotency:
                record = self.records[self.idempotency[key]]
                return httpx.Response(201, json=self.record_json(record, 1))
            if not self.owned(body["file_id"], account):
                return problem(404, "not-found")
            record = FakeRecord(body["record_id"], body["file_id"], body["scope"], account,
                                self.now())
            record.versions[1] = FakeVersion(body["header"], body["metadata_ciphertext"],
                                             body["content_length"], account, self.now())
            if not self.commit_inline(record, 1, body):
                return problem(422, "content-length-mismatch")
            self.records[record.id] = record
            self.idempotency[key] = record.id
            return httpx.Response(201, json=self.record_json(record, 1))
        record = self.readable(rest[0], account)
        if record is None:
            return problem(404, "not-found")
        if request.headers.get("if-match") != f'"v{record.current_version}"':
            return problem(412, "stale-version")
        version = record.current_version + 1
        record.versions[version] = FakeVersion(body["header"], body["metadata_ciphertext"],
                                               body["content_length"], account, self.now())
        if not self.commit_inline(record, version, body):
            del record.versions[version]
            return problem(422, "content-length-mismatch")
        return httpx.Response(201, json=self.record_json(record, version))

    @staticmethod
    def commit_inline(record: FakeRecord, version: int, body: dict[str, Any]) -> bool:
        """Content sent inline commits the version at once (the real API also checks the
        digest; this fake checks the length, as its upload route does)."""
        if "content" not in body:
            return True
        content = b64d(body["content"])
        if len(content) != body["content_length"]:
            return False
        record.versions[version].content = content
        record.current_version = version
        return True

    # -- resumable uploads (records.resumable): whole pieces, offsets checked -------------

    def _uncommitted(self, account, rest) -> tuple[FakeRecord, FakeVersion] | httpx.Response:
        """The record and version a content route names, or the problem it answers."""
        record = self.records.get(rest[0])
        if record is None or not self.owned(record.file_id, account):
            return problem(404, "not-found")
        version = record.versions.get(int(rest[2]))
        if version is None or version.content is not None:
            return problem(409, "version-committed")
        return record, version

    def open_upload(self, account, rest):
        found = self._uncommitted(account, rest)
        if isinstance(found, httpx.Response):
            return found
        record, version = found
        upload_id = str(uuid.uuid4())
        self.uploads[upload_id] = (record.id, int(rest[2]), bytearray())
        return httpx.Response(201, json={"upload_id": upload_id, "offset": 0,
                                         "length": version.content_length})

    def _upload_state(self, rest) -> tuple[FakeRecord, FakeVersion, bytearray] | None:
        found = self.uploads.get(rest[-1])
        if found is None or found[:2] != (rest[0], int(rest[2])):
            return None
        record = self.records[found[0]]
        return record, record.versions[found[1]], found[2]

    def records_head(self, request, account, rest):
        state = self._upload_state(rest)
        if state is None:
            return problem(404, "not-found")
        _, version, stored = state
        done = version.content is not None
        return httpx.Response(204, headers={"upload-offset": str(len(stored)),
                                            "upload-complete": "?1" if done else "?0"})

    def records_patch(self, request, account, rest):
        state = self._upload_state(rest)
        if state is None:
            return problem(404, "not-found")
        record, version, stored = state
        if version.content is not None:
            return problem(409, "version-committed")
        if int(request.headers["upload-offset"]) != len(stored):
            return httpx.Response(409, headers={"upload-offset": str(len(stored))}, json={
                "type": "https://ecrin.health/problems/mismatching-upload-offset",
                "status": 409, "expected-offset": len(stored)})
        stored += request.content
        complete = request.headers["upload-complete"] == "?1"
        if complete:
            if len(stored) != version.content_length:
                return problem(422, "content-length-mismatch")
            version.content = bytes(stored)
            record.current_version = int(rest[2])
        return httpx.Response(204, headers={"upload-offset": str(len(stored)),
                                            "upload-complete": "?1" if complete else "?0"})

    def records_put(self, request, account, rest):
        found = self._uncommitted(account, rest)
        if isinstance(found, httpx.Response):
            return found
        record, version = found
        if len(request.content) != version.content_length:
            return problem(422, "content-length-mismatch")
        version.content = request.content
        record.current_version = int(rest[2])
        return httpx.Response(204)

    def records_get(self, request, account, rest):
        if rest == ["headers"]:
            return self.headers(request, account)
        if not rest:
            file_id = request.url.params["file_id"]
            if not self.owned(file_id, account):
                return problem(404, "not-found")
            scope = request.url.params.get("scope")
            items = [self.record_json(r, r.current_version) for r in reversed(
                self.records.values()) if r.file_id == file_id and not r.deleted
                and r.current_version and (scope is None or r.scope == scope)]
            return httpx.Response(200, json={"items": items, "next_cursor": None})
        record = self.readable(rest[0], account)
        if record is None:
            return problem(404, "not-found")
        if len(rest) == 1:
            body = self.record_json(record, record.current_version)
            content = record.versions[record.current_version].content
            if (request.url.params.get("include") == "content" and content is not None
                    and len(content) <= 256 << 10):
                self.inline_reads += 1
                body["content"] = b64e(content)  # as the records API: small content inline
            return httpx.Response(200, json=body)
        if len(rest) == 2:
            items = [self.version_json(record, v) for v in sorted(record.versions, reverse=True)
                     if record.versions[v].content is not None]
            return httpx.Response(200, json={"items": items, "next_before": None})
        version = record.versions.get(int(rest[2]))
        if version is None or version.content is None:
            return problem(404, "not-found")
        if len(rest) == 3:
            return httpx.Response(200, json=self.version_json(record, int(rest[2])))
        if self.content_piece:
            return httpx.Response(200, content=_pieces(version.content, self.content_piece),
                                  headers={"content-type": "application/octet-stream"})
        return httpx.Response(200, content=version.content,
                              headers={"content-type": "application/octet-stream"})

    def records_delete(self, request, account, rest):
        record = self.readable(rest[0], account)
        if record is None:
            return problem(404, "not-found")
        if request.headers.get("if-match") != f'"v{record.current_version}"':
            return problem(412, "stale-version")
        record.deleted = True
        return httpx.Response(204)

    def headers(self, request, account):
        """``GET /v1/records/headers``: committed versions below a key version, in pages.
        The cursor is the position of the last version served in the file's order, which
        re-keying (leaving the filter) does not move."""
        params = request.url.params
        if not self.owned(params["file_id"], account):
            return problem(404, "not-found")
        below = int(params.get("below_key_version", 1 << 32))
        after, limit = int(params.get("cursor", -1)), int(params.get("limit", 500))
        every = [(r, n, v) for r in self.records.values() if r.file_id == params["file_id"]
                 and r.scope == params["scope"] and not r.deleted
                 for n, v in sorted(r.versions.items()) if v.content is not None]
        chosen = [(i, r, n, v) for i, (r, n, v) in enumerate(every)
                  if i > after and key_version(v.header) < below][:limit + 1]
        page = chosen[:limit]
        cursor = str(page[-1][0]) if len(chosen) > limit else None
        return httpx.Response(200, json={"items": [
            {"record_id": r.id, "version": n, "key_version": key_version(v.header),
             "header": v.header} for _, r, n, v in page], "next_cursor": cursor})

    def rekey(self, body, account):
        """``POST /v1/records/rekey``: all or nothing, only the wrap may change."""
        self.rekey_batches.append(len(body["items"]))
        if self.refuse_rekey_batch == len(self.rekey_batches) - 1:
            return problem(409, "stale-key-version")
        for item in body["items"]:
            record = self.records.get(item["record_id"])
            if record is None or not self.owned(record.file_id, account):
                return problem(404, "not-found")
            stored = b64d(record.versions[item["version"]].header)
            if b64d(item["header"])[:254] != stored[:254]:
                return problem(422, "invalid-header")
        for item in body["items"]:
            self.records[item["record_id"]].versions[item["version"]].header = item["header"]
        return httpx.Response(200, json={"items": [
            {"record_id": i["record_id"], "version": i["version"],
             "key_version": key_version(i["header"]), "changed": True}
            for i in body["items"]]})

    # -- tampering helpers -----------------------------------------------------------------

    def header_bytes(self, record_id: str, version: int = 1) -> bytes:
        return b64d(self.records[record_id].versions[version].header)

    def account_ids(self) -> list[str]:
        return [a.id for a in self.accounts.values()]


def key_version(header: str) -> int:
    return int.from_bytes(b64d(header)[254:258], "big")


def new_id() -> str:
    return str(uuid.uuid4())


async def _pieces(body: bytes, size: int) -> AsyncIterator[bytes]:
    for offset in range(0, len(body), size):
        await asyncio.sleep(0.001)
        yield body[offset:offset + size]
