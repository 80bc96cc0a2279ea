"""Which service owns which public path. The README documents this table."""

from __future__ import annotations

#: ``/v1/<area>/...`` -> owning service. Areas missing here are the gateway's own or 404.
ROUTES: dict[str, str] = {
    "records": "records-api",
    "keys": "kms",
    "directory": "kms",
    "keyrings": "kms",
    "files": "sharing",
    "grants": "sharing",
    "invitations": "sharing",
    "rotations": "sharing",
}

#: Areas the gateway serves itself.
GATEWAY_AREAS = frozenset({"auth", "accounts"})

UPSTREAMS = ("records-api", "kms", "sharing")


def owner_of(path: str) -> str | None:
    """The service owning a public path, or None. ``path`` is the raw, undecoded path."""
    parts = path.split("/", 3)
    if len(parts) < 3 or parts[0] != "" or parts[1] != "v1":
        return None
    return ROUTES.get(parts[2])
