"""How every service describes itself in OpenAPI, so that generators and linters accept it.

FastAPI's document is a good start but not a contract an integrator can build on: its
operation ids are long generated names, its 422 is ``application/json`` with a schema the
services never send, headers the server requires are declared optional, and no operation
lists the errors the platform answers. :func:`finish_document` fixes all of that in one
place, by rules that follow what the platform's middleware and handlers really do; the
routes only add what is theirs (an ``ETag``, a ``Location``, a 403 they can answer).
``tests/gateway/test_openapi_contract.py`` sends real requests and fails when the document
and the server disagree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fastapi.routing import APIRoute

from ecrin_platform.deps import get_gateway_system, get_user

CONTACT = {"name": "Écrin maintainers", "url": "https://ecrin.health/contact",
           "email": "api@ecrin.health"}
PROBLEM_JSON = "application/problem+json"

VALIDATION_ISSUE_SCHEMA: dict[str, Any] = {
    "type": "object", "title": "ValidationIssue",
    "description": "One reason a request was refused with 422; the input is never echoed.",
    "required": ["loc", "msg", "type"],
    "properties": {
        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "description": "Where: `body`, `query`, `path` or `header`, then the field."},
        "msg": {"type": "string"}, "type": {"type": "string"}},
}
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object", "title": "Problem",
    "description": "RFC 9457 problem details; `type` ends with a slug naming the error. A 422 "
                   "carries `errors`, the fields that failed validation.",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "format": "uri"}, "title": {"type": "string"},
        "status": {"type": "integer"}, "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"anyOf": [{"type": "string"}, {"type": "null"}],
                       "description": "The X-Request-Id of the request, for support."},
        "errors": {"type": "array", "items": {"$ref": "#/components/schemas/ValidationIssue"}}},
    "additionalProperties": True,
    "example": {"type": "https://ecrin.health/problems/validation-error",
                "title": "Request validation failed", "status": 422,
                "detail": "The request does not match the schema.",
                "request_id": "3f2b9c0e6a0d4e1b9a7f5c2d8e4b1a6c",
                "errors": [{"loc": ["body", "scope"], "msg": "Input should be 'clinical', "
                            "'shared' or 'administrative'", "type": "enum"}]},
}


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    # Each is referenced only from answers that always carry it: required, and the contract
    # test (tests/gateway/test_openapi_contract.py) checks that it is there.
    return {"description": description, "required": True,
            "schema": schema or {"type": "string"}}


#: Response headers, declared once in ``components.headers`` and referenced.
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-Id": _header("The request id (the client's own when it sent a valid one); it "
                            "is in every log line and audit event about the request."),
    "ETag": _header('The version read, as a strong entity tag: `"v<version>"`, or '
                    '`"v<version>.k<key version>"` where the answer holds a header (a re-key '
                    "replaces its wrap under the same version number). Send it back "
                    "in If-Match to write on top of exactly that version, or in "
                    "If-None-Match to read again only if it changed."),
    "DigestETag": _header('A digest of the body, as a strong entity tag: `"d-<base64url>"`. '
                          "Send it in If-None-Match to read again only if it changed."),
    "Location": _header("Where what was created can be read (or its content uploaded)."),
    "Retry-After": _header("Seconds to wait before retrying.", {"type": "integer"}),
    "WWW-Authenticate": _header("The authentication scheme expected: `Bearer` (RFC 6750)."),
    "RateLimit-Policy": _header("The limits that apply (IETF draft-ietf-httpapi-ratelimit-"
                                "headers, structured-field list)."),
    "RateLimit": _header("What is left of each limit and when it resets (same draft)."),
}


def header_refs(*names: str) -> dict[str, Any]:
    """``responses={200: {"headers": header_refs("ETag")}}`` in a route decorator."""
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


#: What a route adds to its decorator: ``responses={200: ETAG}`` or ``{201: LOCATION}``.
ETAG: dict[str, Any] = {"headers": header_refs("ETag")}
LOCATION: dict[str, Any] = {"headers": header_refs("Location")}
#: ``responses={200: DIGEST_ETAG}``: an ETag that is a digest of the body
#: (conventions.json_with_etag), for reads that have no version.
DIGEST_ETAG: dict[str, Any] = {"headers": {"ETag": {"$ref": "#/components/headers/DigestETag"}}}
NOT_MODIFIED: dict[str, Any] = {"description": "Not modified: If-None-Match names the "
                                               "current version", "headers": header_refs("ETag")}

#: Request headers whose spelling and requiredness the document states exactly: the
#: server refuses a request without them (400 idempotency-key-required, 428).
REQUIRED_HEADERS = {"idempotency-key": "Idempotency-Key", "if-match": "If-Match"}
HEADER_SPELLING = {**REQUIRED_HEADERS, "if-none-match": "If-None-Match"}

_PROBLEM_TEXT = {
    "400": "Malformed request (cursor, idempotency key, path)",
    "401": "Missing, invalid or expired credentials",
    "403": "Not allowed (role, second factor, read-only scope)",
    "404": "No such object, or none the caller may see (never distinguished)",
    "409": "Conflicts with the current state (a taken id, a reused idempotency key)",
    "412": "If-Match names a version that is no longer current",
    "413": "Request body too large",
    "415": "Unsupported content type",
    "422": "The request does not match the schema or fails a check (see `errors`)",
    "428": "If-Match is required",
    "429": "Rate limited; see Retry-After",
    "431": "Request headers too large",
    "503": "Unavailable for now (a database or another service); see Retry-After",
}
_PROBLEM_HEADERS = {"401": ("WWW-Authenticate",), "429": ("Retry-After", "RateLimit-Policy",
                                                          "RateLimit"),
                    "503": ("Retry-After",)}
_WRITES = frozenset({"post", "put", "patch", "delete"})
_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})

#: Words that only repeat the resource in a route function's name (``create_record``).
_ACTION_WORDS = re.compile(r"[^a-z0-9]+")


def operation_id(route: APIRoute) -> str:
    """``records.create``, ``grants.revoke``: the resource (the path's first segment after
    ``/v1``) and the route function's name less the resource's own name. Short, and stable
    as long as a route keeps its path and its function name (generated clients name their
    functions after it)."""
    segments = [s for s in route.path_format.split("/") if s and not s.startswith("{")]
    resource = segments[1] if len(segments) > 1 and segments[0] == "v1" else segments[0]
    resource = resource.replace("-", "_")
    singular = resource[:-1] if resource.endswith("s") else resource
    words = [w for w in _ACTION_WORDS.split(route.name.lower()) if w]
    action = [w for w in words if w not in (resource, singular)] or words
    return f"{resource}.{'_'.join(action)}"


def _operations(doc: dict[str, Any]) -> Iterable[tuple[str, str, dict[str, Any]]]:
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if method in _METHODS and isinstance(op, dict):
                yield path, method, op


def _problem(code: str, content: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = {"description": _PROBLEM_TEXT[code], "content": content}
    if code in _PROBLEM_HEADERS:
        response["headers"] = header_refs(*_PROBLEM_HEADERS[code])
    return response


def body_fields(doc: dict[str, Any], op: dict[str, Any]) -> set[str]:
    """The top-level property names of an operation's JSON body."""
    schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get(
        "schema", {})
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        schema = doc.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[1], {})
    return set(schema.get("properties", {}))


def problem_codes(path: str, method: str, op: dict[str, Any], *,
                  authenticated: bool, fields: Iterable[str] = (),
                  forbids: bool = False) -> set[str]:
    """The problems any operation can answer, from what it takes: the platform's guards
    (headers, body size, internal token), its handlers (validation, conflicts, a database
    down) and its parameters. ``forbids``: a dependency of the route refuses with 403
    (:func:`forbidding_operations`); a route that refuses by itself declares its 403."""
    params = op.get("parameters", [])
    names = {p.get("name", "").lower() for p in params}
    codes = {"431", "503"}
    if authenticated:
        codes.add("401")
    if forbids:
        codes.add("403")
    if params or "requestBody" in op or "{" in path:
        codes.add("422")
    if "requestBody" in op:
        codes.add("413")
    if method in _WRITES:
        codes.add("409")  # a unique constraint hit by a concurrent write
    # An object named in the path, or a file named by a query or a body (except in the
    # body that creates the file) that does not exist, or that the caller may not see.
    names_a_file = "file_id" in names or ("file_id" in set(fields)
                                          and not path.endswith("/files"))
    if "{" in path or names_a_file:
        codes.add("404")
    if "if-match" in names:
        codes |= {"412", "428"}
    if "idempotency-key" in names:
        codes.add("400")
    return codes


def declare_problems(doc: dict[str, Any], codes_of: Any) -> None:
    """Replaces FastAPI's 422 by the problem it really is and adds ``codes_of(path, method,
    op, fields)`` (``fields``: the JSON body's property names); a route's own description
    of a code is kept."""
    content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, method, op in _operations(doc):
        responses = op.setdefault("responses", {})
        fields = body_fields(doc, op)
        for code in sorted(codes_of(path, method, op, fields) | {c for c in responses
                                                          if c[:1] in "45"}):
            own = responses.get(code, {})
            problem = _problem(code, content) if code in _PROBLEM_TEXT else {
                "description": own.get("description", "Error"), "content": content}
            if own.get("description") not in (None, "", "Validation Error"):
                problem["description"] = own["description"]
            responses[code] = problem


def _tidy_parameters(op: dict[str, Any]) -> None:
    for param in op.get("parameters", []):
        if param.get("in") != "header":
            continue
        name = param["name"].lower()
        param["name"] = HEADER_SPELLING.get(name, param["name"])
        if name in REQUIRED_HEADERS:
            param["required"] = True
            schema = param.get("schema", {})
            # FastAPI writes an optional header as anyOf [string, null]: required is not null.
            if "anyOf" in schema:
                kept = [s for s in schema["anyOf"] if s.get("type") != "null"]
                if len(kept) == 1:
                    param["schema"] = {**{k: v for k, v in schema.items() if k != "anyOf"},
                                       **kept[0]}


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def prune_components(doc: dict[str, Any]) -> None:
    """Drops every component nothing reaches from the paths (Spectral's
    oas3-unused-component; generators would emit dead classes)."""
    components = doc.get("components", {})
    reached: set[str] = set()
    todo = list(_refs(doc.get("paths", {})))
    while todo:
        ref = todo.pop()
        if ref in reached or not ref.startswith("#/components/"):
            continue
        reached.add(ref)
        _, _, kind, name = ref.split("/", 3)
        todo.extend(_refs(components.get(kind, {}).get(name, {})))
    for kind in list(components):
        if kind == "securitySchemes":
            continue
        for name in list(components[kind]):
            if f"#/components/{kind}/{name}" not in reached:
                del components[kind][name]
        if not components[kind]:
            del components[kind]


def add_shared_components(doc: dict[str, Any]) -> None:
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["ValidationIssue"] = VALIDATION_ISSUE_SCHEMA
    components.setdefault("headers", {}).update(HEADERS)
    # FastAPI's own 422 body, which the services never send (they answer a Problem).
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)


def describe_operations(doc: dict[str, Any]) -> None:
    """Every operation gets a description (its docstring when it has one, else its summary)
    and the request id header on each of its answers."""
    for _, _, op in _operations(doc):
        if not op.get("description"):
            op["description"] = op.get("summary") or op.get("operationId", "")
        _tidy_parameters(op)
        op["responses"] = dict(sorted(op.get("responses", {}).items()))
        for response in op.get("responses", {}).values():
            response.setdefault("headers", {}).setdefault(
                "X-Request-Id", {"$ref": "#/components/headers/X-Request-Id"})


def conditional_reads(doc: dict[str, Any]) -> None:
    """A read whose answer carries an ETag takes If-None-Match and may answer 304
    (conventions.HttpConventionsMiddleware)."""
    for _, method, op in _operations(doc):
        ok = op.get("responses", {}).get("200", {})
        if method != "get" or "ETag" not in ok.get("headers", {}):
            continue
        params = op.setdefault("parameters", [])
        if not any(p.get("name", "").lower() == "if-none-match" for p in params):
            params.append({"name": "If-None-Match", "in": "header", "required": False,
                           "description": "The ETag of the version one holds: 304 while it "
                                          "is still the current one.",
                           "schema": {"type": "string", "maxLength": 200}})
        # The 304 carries the same validator as the 200 (a version, or a digest).
        op["responses"].setdefault("304", {**NOT_MODIFIED,
                                           "headers": {"ETag": ok["headers"]["ETag"]}})


def _calls(dependant: Any) -> Iterable[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def forbidding_operations(routes: Iterable[Any]) -> set[tuple[str, str]]:
    """``(method, path)`` of the routes whose dependencies can refuse with 403: a recovery
    session where a normal one is needed (``deps.get_user``), a forwarded request on a
    gateway-only route (``deps.get_gateway_system``). Read from the dependency tree, so a
    route declares 403 exactly when it can answer it this way."""
    refusing = {get_user, get_gateway_system}
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, APIRoute) and refusing & set(_calls(route.dependant)):
            found |= {(m.lower(), route.path_format) for m in route.methods or ()}
    return found


def finish_document(doc: dict[str, Any], *, service: str, description: str,
                    authenticated: bool,
                    forbidding: set[tuple[str, str]] | None = None) -> dict[str, Any]:
    """A service's own document, ready for generators and linters (see the module doc)."""
    forbids = forbidding or set()
    info = doc.setdefault("info", {})
    info.setdefault("contact", CONTACT)
    doc["servers"] = [{"url": "/", "description": "This service, on its internal address"}]
    doc["tags"] = [{"name": service, "description": description or service}]
    for _, _, op in _operations(doc):
        op["tags"] = [service]  # one tag per service, as in the merged document
    add_shared_components(doc)
    conditional_reads(doc)
    declare_problems(doc, lambda path, method, op, fields: problem_codes(
        path, method, op, authenticated=authenticated, fields=fields,
        forbids=(method, path) in forbids))
    describe_operations(doc)
    prune_components(doc)
    return doc


def install_openapi(app: Any, *, service: str, description: str, authenticated: bool,
                    routers: Iterable[Any] = ()) -> None:
    """Makes ``app.openapi()`` (and ``/openapi.json``) return the finished document.
    ``routers``: the service's routers, whose routes' dependencies say where a 403 is
    possible (:func:`forbidding_operations`)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            routes = [route for router in routers for route in router.routes]
            finish_document(generate(), service=service, description=description,
                            authenticated=authenticated,  # in place; FastAPI caches it
                            forbidding=forbidding_operations(routes))
        schema: dict[str, Any] = app.openapi_schema
        return schema

    app.openapi = openapi
