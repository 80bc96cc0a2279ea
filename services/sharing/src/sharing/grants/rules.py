"""What each relationship may hold. Clients apply the defaults; the server enforces the
bounds (a secretary never touches clinical content, whatever a client sends)."""

from __future__ import annotations

from datetime import datetime

from ecrin_platform.problems import ServiceError

#: Largest scopes per relationship: scope -> the most it may do there.
BOUNDS: dict[str, dict[str, str]] = {
    "patient": {"shared": "append", "administrative": "read"},
    "parent": {"shared": "append", "administrative": "read"},
    "guardian": {"shared": "append", "administrative": "read"},
    "care_team": {"clinical": "append", "shared": "append", "administrative": "append"},
    "replacement": {"clinical": "append", "shared": "append", "administrative": "append"},
    "secretary": {"administrative": "append"},
}

#: The documented defaults a client proposes for each relationship.
DEFAULTS: dict[str, dict[str, str]] = {
    "patient": {"shared": "append", "administrative": "read"},
    "parent": {"shared": "append", "administrative": "read"},
    "guardian": {"shared": "append", "administrative": "read"},
    "care_team": {"clinical": "append", "shared": "append", "administrative": "append"},
    "replacement": {"clinical": "append", "shared": "append", "administrative": "read"},
    "secretary": {"administrative": "append"},
}

#: Relationships whose grant must end (a replacement's end date, a parent's 18th birthday).
MUST_END = frozenset({"replacement", "parent"})


class GrantOutOfBounds(ServiceError):
    status, slug, title = 422, "grant-out-of-bounds", "Grant outside what the relationship allows"


def check_terms(relationship: str, scopes: dict[str, str], valid_from: datetime | None,
                valid_until: datetime | None, now: datetime) -> None:
    bounds = BOUNDS[relationship]
    for scope, access in scopes.items():
        allowed = bounds.get(scope)
        if allowed is None or (access == "append" and allowed == "read"):
            raise GrantOutOfBounds(f"A {relationship} grant cannot hold {access} on {scope}.")
    if relationship in MUST_END and valid_until is None:
        raise GrantOutOfBounds(f"A {relationship} grant needs an end date (valid_until).")
    if valid_until is not None and valid_until <= now:
        raise GrantOutOfBounds("valid_until is in the past.")
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise GrantOutOfBounds("valid_until must come after valid_from.")
