"""Ids as people copy them: the first characters of a UUID, resolved as git resolves a
commit's (any unique prefix), and shown short in tables (``--json`` keeps them whole)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from ecrin_client.errors import InvalidInput, NotFound

SHORT = 8  # what tables show: enough to be unique among thousands, and copyable
MIN_PREFIX = 4
_PREFIX = re.compile(r"^[0-9a-fA-F-]+$")
_WHOLE = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


def short(value: str | None) -> str:
    return (value or "")[:SHORT]


def is_prefix(text: str) -> bool:
    """Whether ``text`` may be the start of an id (hex and dashes, at least 4 digits)."""
    text = text.strip()
    return bool(_PREFIX.match(text)) and len(text.replace("-", "")) >= MIN_PREFIX


def is_whole(text: str) -> bool:
    """Whether ``text`` is a whole UUID (with or without dashes)."""
    return bool(_WHOLE.match(text.strip()))


def needs_lookup(text: str) -> bool:
    """Whether ``text`` is a short id to look up among candidates: a possible prefix, not
    a whole id (a whole id, or anything else, goes to the server as typed)."""
    return is_prefix(text) and not is_whole(text)


def expand(text: str, candidates: Callable[[], Iterable[str]], what: str) -> str:
    """``text`` as typed, unless it is a short id: then the one of ``candidates()`` it
    starts (:func:`resolve`). ``candidates`` is called only for a short id."""
    return resolve(text, candidates(), what) if needs_lookup(text) else text.strip()


def resolve(prefix: str, ids: Iterable[str], what: str) -> str:
    """The one id of ``ids`` that starts with ``prefix`` (case and dashes ignored).

    Raises :class:`NotFound` if none does, :class:`InvalidInput` naming the candidates if
    several do: give more characters."""
    wanted = prefix.strip().lower().replace("-", "")
    matches = sorted({i for i in ids if i.lower().replace("-", "").startswith(wanted)})
    if not matches:
        raise NotFound(f"no {what} id starts with {prefix!r}")
    if len(matches) > 1:
        shown = ", ".join(m[:SHORT + 4] for m in matches[:5])
        more = f" and {len(matches) - 5} more" if len(matches) > 5 else ""
        raise InvalidInput(f"{prefix!r} is ambiguous: {len(matches)} {what} ids start with "
                           f"it ({shown}{more}); give more characters")
    return matches[0]
