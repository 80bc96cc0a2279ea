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


#: Routes a client calls before it has an access token (or to get one); the service-info
#: routes describe limits only. Every other operation needs ``Authorization: Bearer``.
PUBLIC_OPERATIONS = frozenset({
    ("post", "/v1/auth/signup"), ("post", "/v1/auth/challenge"), ("post", "/v1/auth/login"),
    ("post", "/v1/auth/recover"), ("post", "/v1/auth/refresh"),
    ("get", "/v1/records/service-info"), ("get", "/v1/keys/service-info"),
    ("get", "/v1/files/service-info"),
})

#: OpenAPI links from a create to the reads of what it made, so that a stateful client
#: (and a fuzzer) can chain them: (method, path, status) -> [(name, method, path, params)].
LINKS: dict[tuple[str, str, str], list[tuple[str, str, str, dict[str, str]]]] = {
    # A new file stays pending (invisible, 404) until its first keyring is stored.
    ("post", "/v1/files", "201"): [
        ("StoreInitialKeyring", "put", "/v1/keyrings/{file_id}/initial",
         {"file_id": "$response.body#/id"}),
    ],
    ("post", "/v1/records", "201"): [
        ("GetRecord", "get", "/v1/records/{record_id}",
         {"record_id": "$response.body#/record_id"}),
        ("RecordVersions", "get", "/v1/records/{record_id}/versions",
         {"record_id": "$response.body#/record_id"}),
    ],
    ("post", "/v1/grants", "201"): [
        ("GetGrant", "get", "/v1/grants/{grant_id}", {"grant_id": "$response.body#/id"}),
        ("RevokeGrant", "delete", "/v1/grants/{grant_id}", {"grant_id": "$response.body#/id"}),
    ],
    ("post", "/v1/invitations", "201"): [
        ("CancelInvitation", "delete", "/v1/invitations/{invitation_id}",
         {"invitation_id": "$response.body#/id"}),
    ],
}


PROBLEM_SCHEMA = {
    "type": "object", "title": "Problem",
    "description": "RFC 9457 problem details; `type` ends with a slug naming the error.",
    "required": ["type", "title", "status"],
    "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                   "status": {"type": "integer"}, "detail": {"type": "string"},
                   "instance": {"type": "string"}, "request_id": {"type": ["string", "null"]}},
    "additionalProperties": True,
}
#: What the platform can answer on any route (guards, routing, rate limits, a service
#: down): declared once here rather than on each endpoint.
COMMON_PROBLEMS = {
    "400": "Malformed request (path, JSON, cursor, idempotency key)",
    "403": "Not allowed (role, second factor, read-only scope)",
    "404": "No such object, or none the caller may see",
    "409": "Conflicts with the current state (taken id, reused key)",
    "413": "Request body too large", "415": "Unsupported content type",
    "422": "The request does not match the schema or fails a check",
    "429": "Rate limited; see Retry-After", "431": "Request headers too large",
    "503": "A service is unavailable; see Retry-After",
}
CONDITIONAL_PROBLEMS = {"412": "If-Match names a version that is no longer current",
                        "428": "If-Match is required"}


def _declare_problems(merged: dict[str, Any]) -> None:
    """Every operation answers RFC 9457 problems: declare them, with the media type they
    really use (FastAPI's own 422 says application/json and another schema)."""
    merged["components"].setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    content = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in merged["paths"].values():
        for op in operations.values():
            if not isinstance(op, dict):
                continue
            responses = op.setdefault("responses", {})
            codes = {**COMMON_PROBLEMS,
                     "401": "Missing, invalid or expired token, or invalid credentials"}
            if any(p.get("name", "").lower() == "if-match" for p in op.get("parameters", [])):
                codes.update(CONDITIONAL_PROBLEMS)
            for code, description in codes.items():
                if code == "422" or code not in responses:
                    responses[code] = {"description": description, "content": content}


def _secure_and_link(merged: dict[str, Any]) -> None:
    components = merged.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "The access token from POST /v1/auth/login (EdDSA JWT, 15 minutes)."}
    paths = merged["paths"]
    for path, operations in paths.items():
        for method, op in operations.items():
            if isinstance(op, dict) and (method, path) not in PUBLIC_OPERATIONS:
                op["security"] = [{"bearer": []}]
    for (method, path, status), links in LINKS.items():
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None:
            continue
        for name, target_method, target_path, parameters in links:
            target = paths.get(target_path, {}).get(target_method, {})
            if "operationId" in target:
                response.setdefault("links", {})[name] = {
                    "operationId": target["operationId"], "parameters": parameters}


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
    _secure_and_link(merged)
    _declare_problems(merged)
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
