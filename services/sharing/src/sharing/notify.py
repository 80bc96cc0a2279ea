"""Telling the records API and the kms at once when a file's access changes.

They cache the answers of ``/internal/access`` for ``authz_cache_s`` (0.5 s by default).
When a grant ends (revocation, expiry, a lost invitation) or a rotation moves on (a key
version stored, a rotation done), the sharing service posts the file ids to their
``/internal/access-changed`` route *after* its transaction committed, forwarding the
internal token it was called with (they accept it on that route only), and they drop
what they cached about those files: a revoked member is refused on its next request,
and a writer that just rotated is not refused on a stale answer.

A service that runs as several replicas behind one address (a Kubernetes Service) keeps
one cache per replica: telling the address tells one of them. A target can therefore name
the DNS names whose every address is one of its replicas (a headless Service): each
change is posted to every address they resolve to at that moment, under the target URL's
scheme and port, with its host name as the TLS server name and the ``Host`` header (the
replicas' certificates name the Service, not the pod). When they resolve to nothing, the
target URL is told instead.

Best effort: a notification that fails is logged (identifiers only) and dropped; the
cache's lifetime still bounds how long a stale answer lives.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ecrin_platform.tokens import HEADER

log = logging.getLogger("ecrin.sharing.notify")

PATH = "/internal/access-changed"
TIMEOUT = httpx.Timeout(2.0, connect=1.0)
#: How long the replicas' names may take to resolve, all together.
LOOKUP_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Target:
    """One service that caches access answers."""

    name: str
    url: httpx.URL
    #: DNS names whose every address is one replica of it (none: ``url`` is told).
    replicas: tuple[str, ...] = ()

    @classmethod
    def of(cls, name: str, url: str, replicas: str | Sequence[str] | None = None) -> Target:
        """``replicas``: names, or one comma-separated string of them."""
        if isinstance(replicas, str):
            replicas = replicas.split(",")
        return cls(name, httpx.URL(url.rstrip("/")),
                   tuple(r.strip() for r in replicas or () if r.strip()))


class AccessNotifier:
    """Posts changed file ids to each service that caches access answers."""

    def __init__(self, http: httpx.AsyncClient, targets: Iterable[Target]) -> None:
        self._http = http
        self._targets = list(targets)

    async def files_changed(self, file_ids: Iterable[uuid.UUID], *, token: str,
                            request_id: str | None = None, only: frozenset[str] | None = None
                            ) -> None:
        """Tell every target (or those named in ``only``) about ``file_ids``; never raises."""
        ids = sorted({str(f) for f in file_ids})
        targets = [t for t in self._targets if only is None or t.name in only]
        if not ids or not targets or not token:
            return
        headers = {HEADER: token, "x-ecrin-caller": "sharing"}
        if request_id:
            headers["x-request-id"] = request_id
        await asyncio.gather(*(self._tell(target, ids, headers) for target in targets))

    async def _tell(self, target: Target, ids: list[str], headers: dict[str, str]) -> None:
        addresses = await self._addresses(target)
        if not addresses:
            await self._post(target, target.url, ids, headers, {})
            return
        # The replicas are reached by address, but checked and addressed as the Service.
        named = {**headers, "host": target.url.netloc.decode("ascii")}
        extensions = {"sni_hostname": target.url.host}
        await asyncio.gather(*(self._post(target, target.url.copy_with(host=address), ids,
                                          named, extensions) for address in addresses))

    @staticmethod
    async def _addresses(target: Target) -> list[str]:
        """Every address of the target's replicas now (empty: none named, or none found),
        looked up within ``LOOKUP_TIMEOUT_S``: the revocation that waits for it has
        committed already, and its answer should not wait on a silent resolver."""
        if not target.replicas:
            return []
        loop = asyncio.get_running_loop()
        port = target.url.port or (443 if target.url.scheme == "https" else 80)

        async def lookup(name: str) -> list[Any]:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                return await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)

        found = await asyncio.gather(*(lookup(name) for name in target.replicas),
                                     return_exceptions=True)
        addresses: set[str] = set()
        for name, result in zip(target.replicas, found, strict=True):
            if isinstance(result, Exception):
                log.warning("access change: replica name not resolved",
                            extra={"target": target.name, "replicas": name,
                                   "error": type(result).__name__})
            elif isinstance(result, list):
                addresses.update(str(info[4][0]) for info in result)
        if not addresses:
            log.warning("access change: no replica address found, the service address is told",
                        extra={"target": target.name})
        return sorted(addresses)

    async def _post(self, target: Target, url: httpx.URL, ids: list[str],
                    headers: dict[str, str], extensions: dict[str, str]) -> None:
        try:
            response = await self._http.post(
                url.copy_with(path=url.path.rstrip("/") + PATH), json={"file_ids": ids},
                headers=headers, timeout=TIMEOUT, extensions=extensions)
        except httpx.HTTPError as exc:
            log.warning("access change not delivered",
                        extra={"target": target.name, "address": url.host,
                               "error": type(exc).__name__})
            return
        if response.status_code != 204:
            log.warning("access change refused",
                        extra={"target": target.name, "address": url.host,
                               "status": response.status_code})
