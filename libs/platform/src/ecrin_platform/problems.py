"""RFC 9457 problem details: one error base and one renderer for every service."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://ecrin.health/problems/"


class ServiceError(Exception):
    """Base of every domain error; subclasses set ``status`` and ``slug``."""

    status: int = 400
    slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = headers or {}
        self.extra = extra


class NotFound(ServiceError):
    status, slug, title = 404, "not-found", "Not found"


class Unauthorized(ServiceError):
    status, slug, title = 401, "unauthorized", "Authentication required"


class Forbidden(ServiceError):
    status, slug, title = 403, "forbidden", "Forbidden"


class Conflict(ServiceError):
    status, slug, title = 409, "conflict", "Conflict"


class PreconditionFailed(ServiceError):
    status, slug, title = 412, "precondition-failed", "Precondition failed"


class PayloadTooLarge(ServiceError):
    status, slug, title = 413, "payload-too-large", "Request body too large"


class ServiceUnavailable(ServiceError):
    status, slug, title = 503, "service-unavailable", "Service unavailable"


_TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "Request validation failed"),
    429: ("rate-limited", "Too many requests"),
    500: ("internal-error", "Internal server error"),
    503: ("service-unavailable", "Service unavailable"),
}


def problem_body(status: int, detail: str | None = None, *, slug: str | None = None,
                 title: str | None = None, instance: str | None = None,
                 **extra: Any) -> dict[str, Any]:
    default_slug, default_title = _TITLES.get(status, ("error", "Error"))
    body: dict[str, Any] = {
        "type": TYPE_BASE + (slug or default_slug),
        "title": title or default_title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra)
    return body


def problem_response(status: int, detail: str | None = None, *,
                     headers: dict[str, str] | None = None, **kwargs: Any) -> JSONResponse:
    return JSONResponse(problem_body(status, detail, **kwargs), status_code=status,
                        media_type=PROBLEM_JSON, headers=headers)


def _request_id(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return problem_response(exc.status, exc.detail, slug=exc.slug, title=exc.title,
                            headers=exc.headers, request_id=_request_id(request), **exc.extra)


def allowed_methods(request: Request) -> str:
    """Every method the document gives the path. Starlette's 405 names only the methods of
    the first route that matches (GET of a path that also has DELETE). Built from the
    OpenAPI paths, so the answer and the document cannot disagree."""
    patterns = getattr(request.app.state, "allow_patterns", None)
    if patterns is None:
        patterns = []
        for template, item in request.app.openapi().get("paths", {}).items():
            regex = "^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$"
            patterns.append((template.count("{"), re.compile(regex),
                             {m.upper() for m in item if m in _METHODS}))
        request.app.state.allow_patterns = patterns
    path = request.url.path
    matches = [(params, methods) for params, regex, methods in patterns if regex.match(path)]
    if not matches:
        return ""
    # /v1/records/headers is its own path, not /v1/records/{record_id}: the most literal
    # templates that match win.
    fewest = min(params for params, _ in matches)
    return ", ".join(sorted({m for params, methods in matches if params == fewest
                             for m in methods}))


_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request) or headers.get("Allow", "")
    return problem_response(exc.status_code, detail, headers=headers or None,
                            request_id=_request_id(request))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Never echo the offending input back: it may be health data.
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
              for e in exc.errors()]
    return problem_response(422, "The request does not match the schema.", errors=errors,
                            request_id=_request_id(request))


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(503, "The database is unavailable; retry shortly.",
                            headers={"Retry-After": "1"}, request_id=_request_id(request))


#: Driver errors (asyncpg's class names) that mean the server went away or is restarting.
_DISCONNECTS = frozenset({"PostgresConnectionError", "OperatorInterventionError",
                          "ConnectionDoesNotExistError", "ConnectionRejectionError",
                          # the server is out of connection slots (53300) or starting up:
                          # unavailable for now, not an internal error
                          "TooManyConnectionsError", "CannotConnectNowError"})


def is_disconnect(exc: BaseException) -> bool:
    """A connection killed under a query (PostgreSQL restarted, the backend terminated) or
    refused while the server starts: SQLAlchemy reports these as InternalError or plain
    DBAPIError, not OperationalError, so the 503 handler above did not see them (a 500
    under `make faults`)."""
    if getattr(exc, "connection_invalidated", False):
        return True
    seen = [getattr(exc, "orig", None)]
    seen.append(getattr(seen[0], "__cause__", None))
    return any(cls.__name__ in _DISCONNECTS for err in seen if err is not None
               for cls in type(err).__mro__)


async def _dbapi_error(request: Request, exc: Exception) -> JSONResponse:
    if is_disconnect(exc):
        return await _database_unavailable(request, exc)
    return await _unhandled(request, exc)


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(409, "The request conflicts with existing state.",
                            request_id=_request_id(request))


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(500, "An unexpected error occurred.", request_id=_request_id(request))


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(sa_exc.IntegrityError, _integrity_error)
    app.add_exception_handler(sa_exc.OperationalError, _database_unavailable)
    app.add_exception_handler(sa_exc.InterfaceError, _database_unavailable)
    app.add_exception_handler(sa_exc.TimeoutError, _database_unavailable)
    app.add_exception_handler(sa_exc.DBAPIError, _dbapi_error)
    app.add_exception_handler(ConnectionError, _database_unavailable)
    app.add_exception_handler(Exception, _unhandled)
