"""Every route of the product, from the sources of truth: the gateway's merged OpenAPI
document and each service's own app object (which also lists the routes that never reach
the public document: ``/internal/...``, health, docs).

``route_keys`` normalises both to ``(METHOD, /path/{param})`` so that the sweep can demand an
entry in its coverage table for each, and fail on a route nobody thought about.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from ecrin_platform.tokens import generate_keypair_pem

SERVICE_APPS = ("gateway", "records-api", "kms", "sharing")
_CONVERTER = re.compile(r"\{([^}:]+):[^}]+\}")
#: Methods Starlette adds by itself next to GET.
_IMPLICIT = {"HEAD", "OPTIONS"}


def normalise(path: str) -> str:
    """``/v1/records/{record_id:uuid}`` -> ``/v1/records/{record_id}``."""
    return _CONVERTER.sub(r"{\1}", path)


def openapi_keys(document: dict[str, Any]) -> set[tuple[str, str]]:
    keys = set()
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if isinstance(operation, dict):
                keys.add((method.upper(), normalise(path)))
    return keys


def build_service_app(service: str) -> FastAPI:
    """The service's app object, built as the process builds it (nothing is started)."""
    from tests.support.apps import build_app

    return build_app(service, "sqlite+aiosqlite:///:memory:", generate_keypair_pem())


def app_keys(app: FastAPI) -> set[tuple[str, str]]:
    keys = set()
    for route in iter_route_contexts(app.router.routes):
        methods = getattr(route, "methods", None) or set()
        path = getattr(route, "path", None)
        if path is None:
            continue
        for method in set(methods) - _IMPLICIT:
            keys.add((method, normalise(path)))
    return keys


def every_route(merged: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """(method, path) -> where it was seen: "openapi" and/or service names."""
    seen: dict[tuple[str, str], set[str]] = {}
    for key in openapi_keys(merged):
        seen.setdefault(key, set()).add("openapi")
    for service in SERVICE_APPS:
        for key in app_keys(build_service_app(service)):
            seen.setdefault(key, set()).add(service)
    return seen
