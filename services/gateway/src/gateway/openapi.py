"""One OpenAPI document for the whole product, built from the services' own documents.

The gateway fetches each service's ``/openapi.json`` (with an internal token), keeps the
paths the gateway routes to that service, tags them with the service's name, prefixes
their component names so that two services' ``Problem`` never collide, and adds its own
routes. A service that is down leaves its tag empty until it answers again.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any

import httpx

from ecrin_platform.tokens import HEADER, InternalTokenIssuer
from gateway.routing import UPSTREAMS, owner_of

log = logging.getLogger("ecrin.gateway.openapi")

TAG_DESCRIPTIONS = {
    "gateway": "Accounts, sessions and second factors; the only public entry point.",
    "records-api": "Encrypted records: headers, metadata, content chunks, versions.",
    "kms": "Public-key directory, wrapped identity keys and patient keyrings.",
    "sharing": "Patient files, grants, invitations, rotations and the access audit.",
}


def _component_prefix(service: str) -> str:
    return "".join(part.capitalize() for part in service.split("-")) + "_"


def _rewrite_refs(node: Any, prefix: str) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/components/"):
                _, _, kind, name = value.split("/", 3)
                out[key] = f"#/components/{kind}/{prefix}{name}"
            else:
                out[key] = _rewrite_refs(value, prefix)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, prefix) for item in node]
    return node


def merge(gateway_doc: dict[str, Any], service_docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged = copy.deepcopy(gateway_doc)
    merged.setdefault("paths", {})
    components = merged.setdefault("components", {})
    for operations in merged["paths"].values():
        for op in operations.values():
            if isinstance(op, dict):
                op["tags"] = ["gateway"]
    for service, doc in service_docs.items():
        prefix = _component_prefix(service)
        doc = _rewrite_refs(doc, prefix)
        for path, operations in doc.get("paths", {}).items():
            if owner_of(path) != service:
                continue  # internal routes of a service never reach the public document
            for op in operations.values():
                if isinstance(op, dict):
                    op["tags"] = [service]
                    if "operationId" in op:
                        op["operationId"] = f"{prefix}{op['operationId']}"
            merged["paths"][path] = operations
        for kind, entries in doc.get("components", {}).items():
            bucket = components.setdefault(kind, {})
            for name, value in entries.items():
                bucket[f"{prefix}{name}"] = value
    merged["tags"] = [{"name": name, "description": TAG_DESCRIPTIONS[name]}
                      for name in ("gateway", *UPSTREAMS)]
    return merged


class MergedOpenAPI:
    def __init__(self, *, issuer: InternalTokenIssuer, upstream_url: Any, cache_s: float) -> None:
        self.issuer = issuer
        self.upstream_url = upstream_url
        self.cache_s = cache_s
        self._cached: dict[str, Any] | None = None
        self._cached_at = 0.0
        self._lock = asyncio.Lock()

    async def _fetch(self, client: httpx.AsyncClient, service: str) -> dict[str, Any] | None:
        try:
            response = await client.get(f"{self.upstream_url(service)}/openapi.json",
                                        headers={HEADER: self.issuer.issue(service)}, timeout=5.0)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("openapi unavailable", extra={"upstream": service,
                                                      "error": type(exc).__name__})
            return None

    async def document(self, client: httpx.AsyncClient, gateway_doc: dict[str, Any]
                       ) -> dict[str, Any]:
        async with self._lock:
            if self._cached is not None and time.monotonic() - self._cached_at < self.cache_s:
                return self._cached
            fetched = await asyncio.gather(*(self._fetch(client, s) for s in UPSTREAMS))
            docs = {s: d for s, d in zip(UPSTREAMS, fetched, strict=True) if d is not None}
            merged = merge(gateway_doc, docs)
            missing = [s for s in UPSTREAMS if s not in docs]
            if missing:
                merged.setdefault("info", {})["x-ecrin-unavailable"] = missing
            else:
                self._cached, self._cached_at = merged, time.monotonic()
            return merged
