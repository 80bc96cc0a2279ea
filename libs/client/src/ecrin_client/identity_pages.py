"""A page of patients' identities in two requests, whatever the number of files.

Listing patients one file at a time costs a record listing, a keyring fetch and a read per
file: 1,000 patients took 48 s. The owner's device names each file's identity record when
it creates the file (``identity_record_id``, served with the file: the servers cannot
tell which record it is, its kind being encrypted). For a page of such files the device
then asks the kms for its ``administrative`` keyring entries of every file at once
(``POST /v1/keyrings/batch``) and the records API for the identity records with their
content inline (``POST /v1/records/batch``).

Nothing a server says is trusted more for it: each keyring entry goes through
:meth:`Records.key_from_entries` (trusted and entitled granter, key rollback), each
record through the same checks as a single read (its header names this file, the
``administrative`` scope and this record; both signatures by trusted accounts; no older
version than one this device saw; the content decrypts and verifies), and the decrypted
metadata must say it is a patient identity. A file the answers leave out, or whose record
is too large to come inline, is read the old way by the caller; a file whose record does
not verify is reported in :attr:`Records.unreadable` and listed without identity.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from ecrin_client.encoding import b64d
from ecrin_client.errors import EcrinError, IntegrityError
from ecrin_client.kine import PatientIdentity
from ecrin_client.records import (
    Records,
    Unreadable,
    _field,
    _split_chunks,
    integrity_failure,
)
from ecrin_e2ee import DecryptionError, Scope

__all__ = ["IdentityRead", "read_identities"]

IDENTITY_KIND = "patient-identity"
ADMINISTRATIVE = Scope.ADMINISTRATIVE
#: Files per batch request (the routes take up to 200).
BATCH = 200
#: Pages in flight at once: the servers work on one while this device opens another.
PAGES_AT_ONCE = 3

#: file id -> (identity, its record id), or None when unreadable (reported).
IdentityRead = dict[str, tuple[PatientIdentity, str] | None]


def _unreadable(records: Records, record_id: str, error: EcrinError) -> None:
    records.unreadable.append(Unreadable(record_id=record_id, reason=error.message))


async def _keys(records: Records, file_ids: Sequence[str], marks: dict[str, int]
                ) -> tuple[set[str], dict[str, IntegrityError]]:
    """The files whose administrative key this device now holds (checked entries), and
    those whose entries it refuses (an untrusted granter, a key rollback): reported."""
    body = (await records.client.transport.request(
        "POST", "/v1/keyrings/batch",
        json={"file_ids": list(file_ids), "scope": ADMINISTRATIVE.value})).json()
    asked, held = set(file_ids), set()
    refused: dict[str, IntegrityError] = {}
    for item in _field(body, "items"):
        file_id = str(_field(item, "file_id"))
        if file_id not in asked or file_id in held or file_id in refused:
            raise integrity_failure("the keyring answer")
        try:
            await records.key_from_entries(uuid.UUID(file_id), ADMINISTRATIVE, None, item,
                                           marks=marks)
        except IntegrityError as error:
            refused[file_id] = error  # never used, never skipped quietly
            continue
        except EcrinError:
            continue  # no key for me in this file: the caller reads it the old way
        held.add(file_id)
    return held, refused


async def _identity(records: Records, item: dict[str, Any], file_id: str,
                    record_id: str) -> tuple[PatientIdentity, str] | None:
    """One identity record of the batch answer, opened as :meth:`Records.read` opens one;
    None when it came without its content (too large to come inline: read it alone)."""
    if str(_field(item, "file_id")) != file_id or _field(item, "scope") != ADMINISTRATIVE.value:
        raise integrity_failure("the patient's identity record")
    rid = uuid.UUID(record_id)
    current = int(_field(item, "current_version"))
    records._check_not_older(record_id, current)
    opened = await records._open(_field(item, "version"), record=item, expect_record=rid,
                                 expect_version=current)
    if opened.info.metadata.kind != IDENTITY_KIND:
        raise integrity_failure("the patient's identity record")
    if item.get("content") is None:
        return None
    inline = b64d(str(item["content"]), what="content")
    try:
        plaintext = b"".join(opened.decryptor.decrypt(
            list(_split_chunks(inline, opened.header.padded_length))))
    except DecryptionError:
        raise integrity_failure("the patient's identity record") from None
    try:
        return PatientIdentity.model_validate_json(plaintext), record_id
    except ValueError:
        raise integrity_failure("the patient's identity record") from None


async def _page(records: Records, wanted: dict[str, str]) -> IdentityRead:
    """One page: the keyring and the record requests go out together (the records do not
    depend on the keys until they are opened, here, once both answers are in)."""
    out: IdentityRead = {}
    marks: dict[str, int] = {}
    by_record = {record_id: file_id for file_id, record_id in wanted.items()}
    (held, refused), answer = await asyncio.gather(
        _keys(records, list(wanted), marks),
        records.client.transport.request("POST", "/v1/records/batch",
                                         json={"record_ids": list(by_record)}))
    for file_id, error in refused.items():
        _unreadable(records, wanted[file_id], error)
        out[file_id] = None
    for item in _field(answer.json(), "items"):
        record_id = str(_field(item, "record_id"))
        file_id = by_record.pop(record_id, "")
        if not file_id:
            raise integrity_failure("the record answer")
        if file_id not in held:
            continue  # no key here (refused: reported above; or none: read the old way)
        try:
            found = await _identity(records, item, file_id, record_id)
        except (IntegrityError, ValueError) as error:
            # Reported and skipped: one bad record never hides every patient.
            failure = error if isinstance(error, IntegrityError) else integrity_failure(
                "the patient's identity record")
            _unreadable(records, record_id, failure)
            out[file_id] = None
            continue
        if found is not None:
            out[file_id] = found
            marks[record_id] = int(_field(item, "current_version"))
    records.client.profile.remember_versions(marks)
    return out


async def read_identities(records: Records, wanted: dict[str, str]) -> IdentityRead:
    """``wanted``: file id -> the identity record id its file names. Answers for the files
    read here (pages of up to ``BATCH``, ``PAGES_AT_ONCE`` at a time, two requests each);
    those missing from the answer are for the caller to read one by one."""
    files = list(wanted)
    gate = asyncio.Semaphore(PAGES_AT_ONCE)

    async def one(page: list[str]) -> IdentityRead:
        async with gate:
            return await _page(records, {f: wanted[f] for f in page})

    out: IdentityRead = {}
    for read in await asyncio.gather(*(one(files[i:i + BATCH])
                                       for i in range(0, len(files), BATCH))):
        out.update(read)
    return out
