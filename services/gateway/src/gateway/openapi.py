"""One OpenAPI document for the whole product, built from the services' own documents.

The gateway fetches each service's ``/openapi.json`` (with an internal token), keeps the
paths the gateway routes to that service, tags them with the service's name, keeps one
copy of the components the services share and prefixes those that differ (so that no two
generated classes share a name), and adds its own routes. A service that is down leaves
its tag empty until it answers again.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from typing import Any

import httpx

from ecrin_platform.openapi import (
    CONTACT,
    add_shared_components,
    declare_problems,
    describe_operations,
    header_refs,
    problem_codes,
    prune_components,
)
from ecrin_platform.tokens import HEADER, InternalTokenIssuer
from gateway.auth.principal import RECOVERY_PREFIXES
from gateway.routing import UPSTREAMS, owner_of

log = logging.getLogger("ecrin.gateway.openapi")

TAG_DESCRIPTIONS = {
    "gateway": "Accounts, sessions and second factors; the only public entry point.",
    "records-api": "Encrypted records: headers, metadata, content chunks, versions.",
    "kms": "Public-key directory, wrapped identity keys and patient keyrings.",
    "sharing": "Patient files, grants, invitations, rotations and the access audit.",
}


def _component_prefix(service: str) -> str:
    return "".join(part.capitalize() for part in service.split("-"))


def _rewrite_refs(node: Any, names: dict[tuple[str, str], str]) -> Any:
    """Points every ``$ref`` at the component's name in the merged document."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/components/"):
                _, _, kind, name = value.split("/", 3)
                out[key] = f"#/components/{kind}/{names.get((kind, name), name)}"
            else:
                out[key] = _rewrite_refs(value, names)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, names) for item in node]
    return node


def _refs_in(node: Any) -> set[tuple[str, str]]:
    if isinstance(node, dict):
        found = set()
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/components/"):
                _, _, kind, name = value.split("/", 3)
                found.add((kind, name))
            else:
                found |= _refs_in(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs_in(item) for item in node)) if node else set()
    return set()


def component_names(docs: dict[str, dict[str, Any]]) -> dict[str, dict[tuple[str, str], str]]:
    """For each document, ``(kind, name) -> name in the merged document``.

    A component defined the same way by several services (the platform's ``Problem``,
    ``ServiceInfo``, a shared enum) is kept once under its own name; one that differs is
    prefixed with its service's name (``KmsDirectoryEntryOut``), title included, so that no
    two generated classes share a name. Identical definitions are merged only if everything
    they reference is merged too.
    """
    defined: dict[tuple[str, str], dict[str, Any]] = {}
    for source, doc in docs.items():
        for kind, entries in doc.get("components", {}).items():
            for name, value in entries.items():
                defined.setdefault((kind, name), {})[source] = value
    shared = {key for key, by in defined.items() if len(by) > 1 and all(
        json.dumps(v, sort_keys=True) == json.dumps(next(iter(by.values())), sort_keys=True)
        for v in by.values())}
    while True:
        broken = {key for key in shared
                  for value in defined[key].values()
                  for ref in _refs_in(value)
                  if len(defined.get(ref, {})) > 1 and ref not in shared}
        if not broken:
            break
        shared -= broken
    names: dict[str, dict[tuple[str, str], str]] = {source: {} for source in docs}
    for key, by in defined.items():
        for source in by:
            renamed = len(by) > 1 and key not in shared
            names[source][key] = (_component_prefix(source) + key[1]) if renamed else key[1]
    return names


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


#: Routes the gateway's rate limiter counts: its own (gateway/auth/endpoints.py) and, of
#: the forwarded ones, the invitation look-up and redemption (gateway/auth/principal.py:
#: a code is 120 bits, but a flood of guesses stops early). They answer 429. Other
#: forwarded routes are not limited by the gateway: they need a valid access token, which
#: only the limited login routes give.
RATE_LIMITED = frozenset({
    ("post", "/v1/auth/signup"), ("post", "/v1/auth/challenge"), ("post", "/v1/auth/login"),
    ("post", "/v1/auth/recover"), ("post", "/v1/auth/sessions/{session_id}/revoke"),
    ("post", "/v1/auth/2fa/totp"), ("post", "/v1/auth/2fa/totp/confirm"),
    ("post", "/v1/auth/passphrase"), ("post", "/v1/auth/identity"),
    ("get", "/v1/invitations/lookup/{lookup_id}"),
    ("post", "/v1/invitations/{invitation_id}/redeem"),
})
#: Of those, the ones whose successful answer carries the ``RateLimit*`` headers too.
RATE_LIMIT_HEADERS_ON_SUCCESS = RATE_LIMITED - {
    ("post", "/v1/auth/sessions/{session_id}/revoke"), ("post", "/v1/auth/passphrase")}
#: Public routes that answer 401 all the same (a bad signature or refresh token).
CREDENTIAL_CHECKS = frozenset({("post", "/v1/auth/login"), ("post", "/v1/auth/recover"),
                               ("post", "/v1/auth/refresh")})


def _codes(path: str, method: str, op: dict[str, Any], fields: set[str]) -> set[str]:
    """What an operation of the merged document can answer: the service's own codes, and
    the gateway's (a malformed path, a bearer token, a second factor, a rate limit)."""
    secured = "security" in op
    codes = problem_codes(path, method, op, fields=fields, authenticated=secured)
    if (method, path) in CREDENTIAL_CHECKS:
        codes.add("401")  # a bad signature, second factor or refresh token
    codes.add("400")  # the gateway refuses encoded dot segments and backslashes in any path
    if secured and not path.startswith(RECOVERY_PREFIXES):
        # The gateway refuses a recovery session everywhere else (and a practitioner
        # without a second factor on patient data); a service's own 403s are in its
        # document already.
        codes.add("403")
    if (method, path) in RATE_LIMITED:
        codes.add("429")
    return codes


_FILE = "0b6f4a52-6c1e-4a7e-9d0c-5b1e2f3a4c5d"
#: Request-body examples of the main operations (the values are shapes, not working
#: ciphertexts: the bytes come from libs/e2ee, see docs/protocol.md).
EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/v1/auth/challenge"): {"email": "kine@cabinet-exemple.fr", "action": "login"},
    ("post", "/v1/auth/login"): {"challenge_id": "6a1f0e2b-8c3d-4e5f-9a0b-1c2d3e4f5a6b",
                                 "signature": "q5Z2vX0a" * 10 + "Qw",  # an Ed25519 signature
                                 "totp_code": "492039", "unlock": True},
    ("post", "/v1/files"): {"file_id": _FILE,
                            "search_tokens": ["hS3kQ9v0cXbW4t1Yz8aB2g", "Jd81nP0qLk2sWz5xVb7cRm"]},
    ("post", "/v1/records"): {
        "record_id": "7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "file_id": _FILE,
        "scope": "clinical", "header": "RUNSSU4BAQ-signed-record-header-base64url",
        "metadata_ciphertext": "dGhlLW1ldGFkYXRhLWNpcGhlcnRleHQ", "content_length": 4096,
        "content": "c2VjcmV0c3RyZWFtLWNodW5rcw"},
    ("post", "/v1/grants"): {
        "grant_id": "2e3f4a5b-6c7d-4e8f-9a0b-1c2d3e4f5a6b", "file_id": _FILE,
        "grantee_id": "5d6e7f8a-9b0c-4d1e-8f2a-3b4c5d6e7f8a", "relationship": "patient",
        "scopes": {"shared": "read"}, "valid_until": "2027-06-30T00:00:00Z"},
}


_PRACTITIONER = "3b4c5d6e-7f8a-4b9c-8d0e-1f2a3b4c5d6e"
_RECORD = EXAMPLES[("post", "/v1/records")]
_VERSION = {"record_id": _RECORD["record_id"], "version": 1, "key_version": 1,
            "content_length": 4096, "author_id": _PRACTITIONER,
            "created_at": "2026-11-30T09:15:02Z", "committed": True,
            "header": _RECORD["header"], "metadata_ciphertext": _RECORD["metadata_ciphertext"]}
_RECORD_OUT = {"record_id": _RECORD["record_id"], "file_id": _FILE, "scope": "clinical",
               "state": "committed", "created_at": "2026-11-30T09:15:02Z",
               "updated_at": "2026-11-30T09:15:02Z", "created_by": _PRACTITIONER,
               "current_version": 1, "version": _VERSION}
_FILE_OUT = {"id": _FILE, "owner_id": _PRACTITIONER, "state": "active",
             "created_at": "2026-11-30T09:10:00Z", "updated_at": "2026-11-30T09:10:01Z",
             "relationship": "owner",
             "scopes": {"clinical": "append", "shared": "append", "administrative": "append"},
             "identity_record_id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"}
_GRANT = EXAMPLES[("post", "/v1/grants")]
_GRANT_OUT = {"id": _GRANT["grant_id"], "file_id": _FILE, "grantee_id": _GRANT["grantee_id"],
              "granter_id": _PRACTITIONER, "relationship": "patient",
              "scopes": {"shared": "read"}, "kind": "grant", "status": "active",
              "valid_from": None, "valid_until": "2027-06-30T00:00:00Z",
              "created_at": "2026-11-30T09:20:00Z", "revoked_at": None}
_ENTRY = {"format": 1, "file_id": _FILE, "scope": "shared", "version": 1,
          "member_id": _GRANT["grantee_id"], "member_fingerprint": "mT3qV9x0cXbW4t1Yz8aB2gJd81nP0q",
          "relationship": "patient", "permissions": ["read"], "valid_from": None,
          "valid_until": 1814313600, "granter_id": _PRACTITIONER,
          "sealed_key": "c2VhbGVkLXRvLXRoZS1tZW1iZXJzLVgyNTUxOS1rZXk",
          "signature": "Z3JhbnRlcnMtRWQyNTUxOS1zaWduYXR1cmU"}
#: Response-body examples of the main operations: (method, path, status) -> body. Shapes,
#: as above; Spectral checks each against its schema.
RESPONSE_EXAMPLES: dict[tuple[str, str, str], Any] = {
    ("post", "/v1/records", "201"): _RECORD_OUT,
    ("get", "/v1/records/{record_id}", "200"): {**_RECORD_OUT, "content": _RECORD["content"]},
    ("get", "/v1/records/{record_id}/versions/{version}", "200"): _VERSION,
    ("post", "/v1/files", "201"): {**_FILE_OUT, "state": "pending"},
    ("get", "/v1/files/{file_id}", "200"): _FILE_OUT,
    ("post", "/v1/grants", "201"): {**_GRANT_OUT, "status": "pending"},
    ("get", "/v1/grants/{grant_id}", "200"): _GRANT_OUT,
    ("get", "/v1/grants", "200"): [_GRANT_OUT],
    ("get", "/v1/keyrings/{file_id}/entries", "200"): {
        "file_id": _FILE, "versions": {"shared": 1}, "entries": [_ENTRY]},
}


def _examples(merged: dict[str, Any]) -> None:
    for (method, path), example in EXAMPLES.items():
        body = merged["paths"].get(path, {}).get(method, {}).get("requestBody", {})
        media = body.get("content", {}).get("application/json")
        if media is not None:
            media["example"] = example
    for (method, path, status), example in RESPONSE_EXAMPLES.items():
        response = merged["paths"].get(path, {}).get(method, {}).get("responses", {}).get(
            status, {})
        media = response.get("content", {}).get("application/json")
        if media is not None:
            media["example"] = example


def _rate_limit_headers(merged: dict[str, Any]) -> None:
    for method, path in RATE_LIMIT_HEADERS_ON_SUCCESS:
        responses = merged["paths"].get(path, {}).get(method, {}).get("responses", {})
        for code, response in responses.items():
            if code.startswith("2"):
                response.setdefault("headers", {}).update(header_refs("RateLimit-Policy",
                                                                      "RateLimit"))


def _unique_titles(merged: dict[str, Any]) -> None:
    """Generators name classes after titles: two schemas never share one."""
    schemas = merged.get("components", {}).get("schemas", {})
    seen: dict[str, int] = {}
    for schema in schemas.values():
        if isinstance(schema, dict) and "title" in schema:
            seen[schema["title"]] = seen.get(schema["title"], 0) + 1
    for name, schema in schemas.items():
        if isinstance(schema, dict) and seen.get(schema.get("title", ""), 0) > 1:
            schema["title"] = name


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
    """The public document: the gateway's own routes and each service's public ones, with
    one set of components (see :func:`component_names`), the gateway's security, links and
    problems, ready for generators and linters."""
    docs = {"gateway": gateway_doc, **service_docs}
    names = component_names(docs)
    merged = copy.deepcopy(gateway_doc)
    merged["paths"] = {}
    merged["components"] = {}
    for service, doc in docs.items():
        doc = _rewrite_refs(doc, names[service])
        for path, operations in doc.get("paths", {}).items():
            if service != "gateway" and owner_of(path) != service:
                continue  # internal routes of a service never reach the public document
            for op in operations.values():
                if isinstance(op, dict):
                    op["tags"] = [service]
            merged["paths"][path] = operations
        for kind, entries in doc.get("components", {}).items():
            bucket = merged["components"].setdefault(kind, {})
            for name, value in entries.items():
                final = names[service][(kind, name)]
                if final != name and isinstance(value, dict) and "title" in value:
                    value = {**value, "title": final}
                bucket[final] = value
    info = merged.setdefault("info", {})
    info.setdefault("contact", CONTACT)
    merged["servers"] = [{"url": "/", "description": "The gateway (the web app's origin)"}]
    merged["tags"] = [{"name": name, "description": TAG_DESCRIPTIONS[name]}
                      for name in ("gateway", *UPSTREAMS)]
    _secure_and_link(merged)
    add_shared_components(merged)
    declare_problems(merged, _codes)
    _rate_limit_headers(merged)
    _examples(merged)
    describe_operations(merged)
    prune_components(merged)
    _unique_titles(merged)
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
