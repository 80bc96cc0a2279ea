"""Patients: a patient file, its keyring, and its encrypted identity record.

The servers learn no name, birth date or INS. The identity is a record of kind
``patient-identity`` in the ``administrative`` scope; the file carries only blind-index
tokens made with the owner's search key (``SearchKey.for_owner``): one per name word, one
for the full name, one for the INS and one for the birth date. A search sends the token
of what was typed; the server answers the files carrying it, and the client decrypts
their identities and keeps those that really match (tokens are 96-bit, so collisions are
possible by design).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from ecrin_client import ids
from ecrin_client.errors import IntegrityError, InvalidInput, NotFound, PermissionDenied
from ecrin_client.identity_pages import read_identities
from ecrin_client.kine import PatientIdentity, RecordMetadata, parse_day
from ecrin_client.records import Records, Unreadable, integrity_failure
from ecrin_e2ee import (
    FormatError,
    Permission,
    Relationship,
    Scope,
    ScopeKey,
    SearchKey,
    normalise_ins,
    normalise_name,
    seal_entry,
)

__all__ = ["Patient", "Patients", "search_tokens"]

IDENTITY_KIND = "patient-identity"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")
PAGE = 200
PARALLEL = 8  # files whose identity is fetched at once: bounded, for the gateway's sake


class Patient(BaseModel):
    """A patient file as this device sees it: the server's facts and the decrypted identity."""

    model_config = ConfigDict(frozen=True, defer_build=True)  # start-up time

    file_id: str
    relationship: str
    created_at: datetime | None = None
    #: None when the identity cannot be read (no access to the administrative scope).
    identity: PatientIdentity | None = None
    identity_record_id: str | None = None

    @property
    def name(self) -> str:
        return self.identity.name if self.identity else "(identity not readable)"

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def search_tokens(key: SearchKey, identity: PatientIdentity) -> list[str]:
    words = normalise_name(identity.name).split()
    tokens = [key.name_token(word) for word in words]
    tokens.append(key.name_token(identity.name))
    if identity.ins:
        tokens.append(key.ins_token(identity.ins))
    tokens.append(key.birth_date_token(identity.birth_date.isoformat()))
    return list(dict.fromkeys(tokens))


def _query(key: SearchKey, text: str) -> tuple[str, Any]:
    """(what was typed, the token) for a search: an INS, a birth date, or a name."""
    try:
        return "ins", (normalise_ins(text), key.ins_token(text))
    except FormatError:
        pass
    try:
        day = parse_day(text)
        return "birth_date", (day, key.birth_date_token(day.isoformat()))
    except InvalidInput:
        pass
    if not normalise_name(text):
        raise InvalidInput("nothing to search for")
    return "name", (normalise_name(text), key.name_token(text))


def _matches(kind: str, value: Any, identity: PatientIdentity | None) -> bool:
    if identity is None:
        return False
    if kind == "ins":
        return identity.ins is not None and normalise_ins(identity.ins) == value
    if kind == "birth_date":
        return bool(identity.birth_date == value)
    words = normalise_name(identity.name).split()
    wanted = str(value).split()
    return any(words[i:i + len(wanted)] == wanted for i in range(len(words)))


class Patients:
    """``Patients(records)``: create, list, search and resolve patient files."""

    def __init__(self, records: Records) -> None:
        self.records = records
        self._t = records.client.transport
        self.search_key = SearchKey.for_owner(records.identity)
        #: files read the old way at once, for every page in flight together
        self._gate = asyncio.Semaphore(PARALLEL)

    async def create(self, identity: PatientIdentity) -> Patient:
        """File (pending), keyring v1 of the three scopes (activates it), identity record.

        Every step is retry-safe: the file id is chosen here, the kms answers a repeated
        initial keyring with 200, and the record create carries an idempotency key.
        """
        me = self.records.identity
        file_id = uuid.uuid4()
        # Named in the file (not secret: the record's kind is encrypted), so that a page of
        # patients is listed with one bulk read (``identity_pages``).
        identity_record_id = uuid.uuid4()

        async def create_file() -> Any:
            return await self._t.request(
                "POST", "/v1/files", ok=(200, 201),
                json={"file_id": str(file_id), "identity_record_id": str(identity_record_id),
                      "search_tokens": search_tokens(self.search_key, identity)})

        await self.records.client._retrying(create_file)
        keys = {scope: ScopeKey.generate(file_id, scope) for scope in Scope}
        # Owned here: only accounts this device grants a rotating role may hand it new keys.
        self.records.trust.store.own_file(str(file_id))
        entries = [seal_entry(key, me.public_identity(), relationship=Relationship.OWNER,
                              permissions={Permission.READ, Permission.APPEND},
                              granter=me).to_json() for key in keys.values()]

        async def store_keyring() -> Any:
            return await self._t.request("PUT", f"/v1/keyrings/{file_id}/initial",
                                         json={"entries": entries}, ok=(200, 201))

        await self.records.client._retrying(store_keyring)
        self.records.adopt_keys(keys)
        content = identity.to_bytes()
        record = await self.records.create(file_id, "administrative", RecordMetadata(
            title="Identité du patient", kind=IDENTITY_KIND, content_type="application/json",
            size=len(content), created_at=datetime.now(UTC)), content,
            record_id=identity_record_id)
        return Patient(file_id=str(file_id), relationship="owner",
                       created_at=record.created_at, identity=identity,
                       identity_record_id=record.record_id)

    async def _pages(self, token: str | None = None
                     ) -> AsyncIterator[list[dict[str, Any]]]:
        params: dict[str, Any] = {"limit": PAGE}
        if token is not None:
            params["token"] = token
        while True:
            page = (await self._t.request("GET", "/v1/files", params=params)).json()
            yield list(page.get("items") or [])
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    async def _files(self, token: str | None = None) -> list[dict[str, Any]]:
        return [file async for page in self._pages(token) for file in page]

    async def _one(self, file: dict[str, Any]) -> Patient:
        """One file's patient: through its named identity record when it has one."""
        return (await self._patients([file]))[0]

    async def _patient(self, file: dict[str, Any]) -> Patient:
        """One file's patient, the old way: list its administrative records, read the
        latest identity (files whose identity record is not named in the file)."""
        file_id = str(file.get("id"))
        identity: PatientIdentity | None = None
        record_id: str | None = None
        scopes = file.get("scopes") or {}
        if "administrative" in scopes:
            records = await self.records.list(file_id, "administrative")
            mine = [r for r in records if r.metadata.kind == IDENTITY_KIND]
            if mine:
                latest = max(mine, key=lambda r: (r.created_at or datetime.min.replace(
                    tzinfo=UTC), r.record_id))
                try:
                    _, content = await self.records.read(latest.record_id)
                    identity = PatientIdentity.model_validate_json(content)
                except (IntegrityError, ValueError) as error:
                    # Reported and skipped: one bad record never hides every patient.
                    reason = error if isinstance(error, IntegrityError) else \
                        integrity_failure("the patient's identity record")
                    self.records.unreadable.append(Unreadable(
                        record_id=latest.record_id, version=latest.version,
                        author_id=latest.author_id, reason=reason.message))
                else:
                    record_id = latest.record_id
        return Patient(file_id=file_id, relationship=str(file.get("relationship", "")),
                       created_at=file.get("created_at"), identity=identity,
                       identity_record_id=record_id)

    async def _patients(self, files: list[dict[str, Any]]) -> list[Patient]:
        """Each file's identity, in the files' order: those whose file names its identity
        record in two requests per page (``identity_pages``); the others (files made before
        that, or left out of the bulk answers) ``PARALLEL`` at a time, a few requests each."""
        named = {str(f.get("id")): str(f["identity_record_id"]) for f in files
                 if f.get("identity_record_id") and "administrative" in (f.get("scopes") or {})}
        read = await read_identities(self.records, named) if named else {}
        gate = self._gate

        async def one(file: dict[str, Any]) -> Patient:
            file_id = str(file.get("id"))
            if file_id in read:
                found = read[file_id]
                return Patient(file_id=file_id, relationship=str(file.get("relationship", "")),
                               created_at=file.get("created_at"),
                               identity=found[0] if found else None,
                               identity_record_id=found[1] if found else None)
            async with gate:
                return await self._patient(file)

        return list(await asyncio.gather(*(one(f) for f in files)))

    async def list(self, search: str | None = None) -> list[Patient]:
        """Every patient file I can open; with ``search``, those whose identity matches."""
        if search is None:
            # Each page's identities are read while the next page of files is fetched.
            reading: list[asyncio.Task[list[Patient]]] = []
            try:
                async for page in self._pages():
                    reading.append(asyncio.create_task(self._patients(page)))
                return [p for page in await asyncio.gather(*reading) for p in page]
            finally:
                for task in reading:
                    task.cancel()  # a failure of one: the others stop too (done: no-op)
        kind, (value, token) = _query(self.search_key, search)
        indexed = await self._files(token)
        # Files shared with me (a parent's, a colleague's) carry their owner's search
        # tokens, not mine: those are searched here, after decryption.
        seen = {str(f.get("id")) for f in indexed}
        shared = [f for f in await self._files() if f.get("relationship") != "owner"
                  and str(f.get("id")) not in seen]
        found = await self._patients(indexed + shared)
        return [p for p in found if _matches(kind, value, p.identity)]

    async def _by_prefix(self, ref: str) -> dict[str, Any] | None:
        """The file whose id starts with ``ref`` (a short id copied from a table), or None
        if ``ref`` cannot be one or no id starts with it (it is then searched as a name);
        several: :class:`InvalidInput`, give more characters."""
        if not ids.is_prefix(ref):
            return None
        files = await self._files()
        try:
            wanted = ids.resolve(ref, (str(f.get("id")) for f in files), "patient file")
        except NotFound:
            return None
        return next(f for f in files if str(f.get("id")) == wanted)

    async def check_scope(self, file_id: str, scope: str, *, write: bool) -> None:
        """Refuse, naming what the grant holds, a scope it does not hold (or holds read
        only, for a write): the server would answer "no such keyring", which says nothing
        of the reason. The server still decides; this only words the refusal."""
        file = (await self._t.request("GET", f"/v1/files/{file_id}")).json()
        scopes = file.get("scopes") or {}
        relationship = str(file.get("relationship") or "member")
        held = ", ".join(f"{s} ({a})" for s, a in scopes.items()) or "no scope"
        if scope not in scopes:
            raise PermissionDenied(f"as {relationship} of this file you hold {held}, not "
                                   f"the {scope} scope; choose one with --scope")
        if write and scopes[scope] != "append":
            raise PermissionDenied(f"as {relationship} of this file you may read the {scope} "
                                   "scope, not write to it")

    async def file_id(self, ref: str) -> str:
        """The file id a PATIENT argument names (no decryption when it is an id or the
        start of one)."""
        ref = ref.strip()
        if _UUID.match(ref):
            file = (await self._t.request("GET", f"/v1/files/{uuid.UUID(ref)}")).json()
            if str(file.get("id")) != str(uuid.UUID(ref)):
                raise integrity_failure("the patient file")
            return str(file["id"])
        found = await self._by_prefix(ref)
        if found is not None:
            return str(found["id"])
        return (await self.get(ref)).file_id

    async def get(self, ref: str) -> Patient:
        """A patient by file id, or by a search that matches exactly one patient."""
        ref = ref.strip()
        if _UUID.match(ref):
            file = (await self._t.request("GET", f"/v1/files/{uuid.UUID(ref)}")).json()
            if str(file.get("id")) != str(uuid.UUID(ref)):
                raise integrity_failure("the patient file")
            return await self._one(file)
        by_prefix = await self._by_prefix(ref)
        if by_prefix is not None:
            return await self._one(by_prefix)
        found = await self.list(ref)
        if not found:
            raise NotFound(f"no patient matches {ref!r}")
        if len(found) > 1:
            names = ", ".join(f"{p.name} ({p.file_id})" for p in found[:5])
            raise InvalidInput(f"{len(found)} patients match {ref!r}: {names}; give a file id "
                               "(its first characters are enough)")
        return found[0]

