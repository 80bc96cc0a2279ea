from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Access = Literal["read", "append"]


class FileCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: uuid.UUID
    #: blind-index tokens (keyed hashes made on the device); never a name
    search_tokens: list[str] = Field(default_factory=list, max_length=64)
    #: the id the owner's device gives the patient's identity record (made next): served
    #: with the file so that a page of identities is read in one request
    identity_record_id: uuid.UUID | None = None


class SearchTokensIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    search_tokens: list[str] = Field(max_length=64)


class AccessOut(BaseModel):
    file_id: uuid.UUID
    account_id: uuid.UUID
    relationship: str
    scopes: dict[str, Access]
    state: str
    valid_until: datetime | None = None
    #: Seconds from this answer until ``valid_until``, or until another of the account's
    #: grants on the file starts if sooner (the answer may change then), by this service's
    #: clock (None: neither): how long the records API and the kms may keep the answer at
    #: most, whatever their own clocks say.
    valid_for_s: float | None = None
    #: scope -> current scope-key version (absent: 1); the records API re-keys only to it
    key_versions: dict[str, int] = {}
    #: scopes a member left whose new key version is not stored yet; only for members who
    #: rotate (owner, care team): the records API refuses their new content until it is
    pending_rotations: list[str] = []


class FileOut(BaseModel):
    id: uuid.UUID
    owner_id: uuid.UUID
    state: str
    created_at: datetime
    updated_at: datetime
    relationship: str
    scopes: dict[str, Access]
    #: the patient's identity record, when the owner's device named it (files made before
    #: 2026-12 have none); the client still checks the record it reads
    identity_record_id: uuid.UUID | None = None


class FilePage(BaseModel):
    items: list[FileOut]
    next_cursor: str | None
