"""Telling the records API and the kms at once when a file's access changes.

They cache the answers of ``/internal/access`` for ``authz_cache_s`` (0.5 s by default).
When a grant ends (revocation, expiry, a lost invitation) or a rotation moves on (a key
version stored, a rotation done), the sharing service posts the file ids to their
``/internal/access-changed`` route *after* its transaction committed, forwarding the
internal token it was called with (they accept it on that route only), and they drop
what they cached about those files: a revoked member is refused on its next request,
and a writer that just rotated is not refused on a stale answer.

Best effort: a notification that fails is logged (identifiers only) and dropped; the
cache's lifetime still bounds how long a stale answer lives.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable

import httpx

from ecrin_platform.tokens import HEADER

log = logging.getLogger("ecrin.sharing.notify")

PATH = "/internal/access-changed"
TIMEOUT = httpx.Timeout(2.0, connect=1.0)


class AccessNotifier:
    """Posts changed file ids to each service that caches access answers."""

    def __init__(self, http: httpx.AsyncClient, targets: Iterable[tuple[str, str]]) -> None:
        #: (service name, base URL) of each cache to tell
        self._http = http
        self._targets = [(name, url.rstrip("/")) for name, url in targets]

    async def files_changed(self, file_ids: Iterable[uuid.UUID], *, token: str,
                            request_id: str | None = None, only: frozenset[str] | None = None
                            ) -> None:
        """Tell every target (or those named in ``only``) about ``file_ids``; never raises."""
        ids = sorted({str(f) for f in file_ids})
        targets = [t for t in self._targets if only is None or t[0] in only]
        if not ids or not targets or not token:
            return
        headers = {HEADER: token, "x-ecrin-caller": "sharing"}
        if request_id:
            headers["x-request-id"] = request_id
        await asyncio.gather(*(self._post(name, url, ids, headers) for name, url in targets))

    async def _post(self, name: str, url: str, ids: list[str], headers: dict[str, str]) -> None:
        try:
            response = await self._http.post(url + PATH, json={"file_ids": ids},
                                             headers=headers, timeout=TIMEOUT)
        except httpx.HTTPError as exc:
            log.warning("access change not delivered",
                        extra={"target": name, "error": type(exc).__name__})
            return
        if response.status_code != 204:
            log.warning("access change refused",
                        extra={"target": name, "status": response.status_code})
