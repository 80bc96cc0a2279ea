"""Who may write what: the one place the records API decides it (docs/records.md, *Who may
write what*; DESIGN.md, threat 6).

Every write needs ``append`` on the record's scope (the grant); within it, the relationship
decides whose records the caller may touch. A grantee adds records and versions of its own;
it never destroys, hides, freezes or re-keys what others wrote. A care-team colleague also
curates colleagues' records (new versions) and re-keys after a rotation; only the owner
deletes others' records and puts back a wrap that a re-key replaced. A relationship this
table does not know gets the least: its own records only.

Pure: no I/O. ``permit`` turns a sharing answer into the problem to raise, if any.
"""

from __future__ import annotations

from enum import StrEnum

from ecrin_platform.access import FileAccess
from records_api.records.errors import (
    KeyVersionNotCurrent,
    ReadOnlyScope,
    RecordNotFound,
    RotationPending,
    WriteNotPermitted,
)


class Write(StrEnum):
    CREATE = "create"
    #: Uploading the content of a pending version.
    UPLOAD = "upload"
    VERSION = "version"
    DELETE = "delete"
    REKEY = "rekey"
    RESTORE_WRAP = "restore wrap"


OWNER = "owner"
#: Who may do each write to a record someone else wrote (their own: everyone with append,
#: except for the two writes that are never about one's own record).
ON_OTHERS: dict[Write, frozenset[str]] = {
    Write.VERSION: frozenset({OWNER, "care_team"}),
    Write.DELETE: frozenset({OWNER}),
    Write.UPLOAD: frozenset(),  # only the version's author uploads its content
}
#: Writes that do not depend on who wrote the record.
ANY_RECORD: dict[Write, frozenset[str]] = {
    Write.REKEY: frozenset({OWNER, "care_team"}),
    Write.RESTORE_WRAP: frozenset({OWNER}),
}

_ACTS = {Write.CREATE: "create records",
         Write.UPLOAD: "upload the content of a version someone else created",
         Write.VERSION: "add versions to records others wrote",
         Write.DELETE: "delete records others wrote", Write.REKEY: "re-key records",
         Write.RESTORE_WRAP: "restore a record's earlier wrap"}


def allows(relationship: str, write: Write, *, own: bool) -> bool:
    """Whether a member with ``append`` on the scope may do ``write``; ``own``: the record
    (for an upload: the version) was written by the caller."""
    if write in ANY_RECORD:
        return relationship in ANY_RECORD[write]
    if write is Write.CREATE or own:
        return True
    return relationship in ON_OTHERS[write]


def permit(access: FileAccess | None, scope: str, write: Write, *,
           own: bool = True) -> FileAccess:
    """The caller's access if it may do ``write`` on a record of ``scope``; otherwise the
    problem: ``404`` without read access to the scope (existence is not revealed), ``403
    read-only-scope`` without append, ``403 write-not-permitted`` when the relationship
    does not allow it."""
    if access is None or not access.can_read(scope):
        raise RecordNotFound()
    if not access.can_append(scope):
        raise ReadOnlyScope(f"Your access to the {scope} scope is read-only.")
    if not allows(access.relationship, write, own=own):
        raise WriteNotPermitted(
            f"Your relationship to this file ({access.relationship}) does not let you "
            f"{_ACTS[write]}.", relationship=access.relationship, action=write.value)
    return access


#: Who rotates a scope's key when a member leaves, hence must do it before writing.
ROTATES = frozenset({OWNER, "care_team"})


def key_problem(access: FileAccess, scope: str, key_version: int
                ) -> KeyVersionNotCurrent | RotationPending | None:
    """Why new content under ``key_version`` must not be stored, if it must not: a key
    version other than the scope's current one (a leaver may hold an older one; a newer
    one the kms does not hold), or a rotation still pending for a member who rotates.
    A member who cannot rotate (a patient, a parent) still writes under the current
    version, as it did when the SDK checked the queue itself: only the owner's or a
    colleague's device can finish the rotation."""
    current = access.key_version(scope)
    if key_version != current:
        return KeyVersionNotCurrent(
            f"The {scope} scope's current key version is {current}; this header uses "
            f"{key_version}. Fetch the current key and encrypt again.", key_version=current,
            scope=scope)
    if scope in access.pending_rotations and access.relationship in ROTATES:
        return RotationPending(
            f"A member left the {scope} scope: rotate its key (GET /v1/rotations) before "
            "writing new content.", scope=scope, key_version=current)
    return None


#: Every problem ``permit`` raises: what a refused write is.
REFUSALS = (RecordNotFound, ReadOnlyScope, WriteNotPermitted)
