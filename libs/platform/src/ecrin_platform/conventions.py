"""HTTP conventions every answer follows, applied in one place rather than in each route.

- A 401 names the scheme to use (``WWW-Authenticate: Bearer``, RFC 9110 §11.6.1).
- A 503 says when to retry (``Retry-After``), whatever raised it.
- A ``GET`` whose answer carries an ``ETag`` matching the request's ``If-None-Match``
  becomes a ``304 Not Modified`` without a body (RFC 9110 §13.1.2): a client polling a
  record downloads it again only when it changed. The routes that can tell before doing
  the work answer the 304 themselves (:func:`not_modified`): a record read checks the
  version the access check already loaded, and answers before reading the version, its
  content or writing an audit event (a 304 releases nothing: no ciphertext, no key, and
  is not audited as a read). Reads whose validator is a digest of the body
  (:func:`json_with_etag`: files, grants) still build the body, and only save sending it.
  This middleware is the backstop for any other route that sets an ``ETag``: the route
  runs, its body is discarded.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Annotated

from fastapi import Header
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

WWW_AUTHENTICATE = b'Bearer realm="ecrin"'
DEFAULT_RETRY_AFTER = b"1"
#: Headers a 304 keeps (RFC 9110 §15.4.5); the body's own headers are dropped.
_KEPT_ON_304 = frozenset({b"etag", b"cache-control", b"vary", b"date", b"expires",
                          b"x-request-id", b"content-location"})


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Weak comparison (RFC 9110 §13.1.2): ``W/"v3"`` matches ``"v3"``; ``*`` matches."""
    def opaque(tag: str) -> str:
        tag = tag.strip()
        return tag[2:] if tag.startswith("W/") else tag

    wanted = [opaque(tag) for tag in if_none_match.split(",")]
    return "*" in wanted or opaque(etag) in wanted


#: The request's ``If-None-Match`` for a route that answers 304 itself; the document
#: declares the header once, from the route's ``ETag`` (openapi.conditional_reads).
IfNoneMatch = Annotated[str | None, Header(alias="If-None-Match", max_length=200,
                                           include_in_schema=False)]


def not_modified(if_none_match: str | None, etag: str) -> Response | None:
    """A ``304`` carrying ``etag`` when the client already holds that representation."""
    if if_none_match is None or not etag_matches(if_none_match, etag):
        return None
    return Response(status_code=304, headers={"ETag": etag})


def digest_etag(body: bytes) -> str:
    """A strong validator for a body that has no version of its own: 128 bits of its
    SHA-256, base64url (``"d-…"``)."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()[:16]).rstrip(b"=")
    return f'"d-{digest.decode()}"'


def json_with_etag(body: bytes, if_none_match: str | None,
                   headers: dict[str, str] | None = None) -> Response:
    """A JSON answer with a digest ``ETag``, or the ``304`` when the client holds it."""
    etag = digest_etag(body)
    extra = dict(headers or {})
    unchanged = not_modified(if_none_match, etag)
    if unchanged is not None:
        unchanged.headers.update(extra)
        return unchanged
    return Response(body, media_type="application/json", headers={**extra, "ETag": etag})


class HttpConventionsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if_none_match = None
        if scope["method"] in ("GET", "HEAD"):
            for name, value in scope.get("headers") or []:
                if name == b"if-none-match":
                    if_none_match = value.decode("latin-1")
                    break
        not_modified = False

        async def send_wrapper(message: Message) -> None:
            nonlocal not_modified
            if not_modified:
                return  # the body of the 200 the 304 replaced
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                if status == 401 and b"www-authenticate" not in names:
                    headers.append((b"www-authenticate", WWW_AUTHENTICATE))
                if status == 503 and b"retry-after" not in names:
                    headers.append((b"retry-after", DEFAULT_RETRY_AFTER))
                etag = next((v for n, v in headers if n.lower() == b"etag"), None)
                if (status == 200 and if_none_match is not None and etag is not None
                        and etag_matches(if_none_match, etag.decode("latin-1"))):
                    not_modified = True
                    await send({"type": "http.response.start", "status": 304,
                                "headers": [(n, v) for n, v in headers
                                            if n.lower() in _KEPT_ON_304]})
                    await send({"type": "http.response.body", "body": b""})
                    return
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_wrapper)
