"""The web app and Swagger UI, served by the gateway on the API's own origin.

Same origin means no CORS to configure and a single Content-Security-Policy to reason
about. The gateway serves only the files the build listed in ``build.json`` (each with its
sha384, whose digest is the published build hash, docs/web.md), ``index.html`` for the
app's own paths, and nothing at all when no build is configured: those paths then fall
through to the ordinary 404 problem.

``SecurityHeaders`` puts the browser-facing headers on every response: the strict CSP on
pages and their files, a deny-everything CSP on API answers. (``Clear-Site-Data`` on a
successful logout is the logout route's own answer, gateway.auth.endpoints.)
"""

from __future__ import annotations

import json
import logging
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import Headers
from starlette.responses import FileResponse, HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("ecrin.gateway.webapp")

#: Paths the app's router owns (besides ``/``): the gateway answers them with index.html.
APP_PREFIXES = ("/pro", "/portail")

#: The app's one Trusted Types policy (web/src/trusted-types.ts): it makes script URLs for
#: the crypto worker and the service worker and nothing else, so no string reaches an HTML,
#: script or script-URL sink; no other policy may be created, not even a second of this name.
TRUSTED_TYPES_POLICY = "ecrin-worker"
#: Swagger UI (/docs) and its files: a third-party UI that writes markup itself, so no
#: Trusted Types there; it holds no keys and talks to /openapi.json only.
DOCS_CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'wasm-unsafe-eval'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "font-src 'self'",
    "connect-src 'self'",
    "worker-src 'self'",
    "manifest-src 'self'",
    "media-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-src 'none'",
    "frame-ancestors 'none'",
])
#: Pages and their files. 'wasm-unsafe-eval' lets libsodium compile its WebAssembly and
#: nothing else; no inline script or style, no other origin, no framing; Trusted Types.
APP_CSP = "; ".join([
    DOCS_CSP,
    "require-trusted-types-for 'script'",
    f"trusted-types {TRUSTED_TYPES_POLICY}",
])
DOCS_PATHS = ("/docs/",)
#: API answers are data, never a document: nothing may load from or frame them.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    # The portal scans invitation QR codes with the camera; nothing else is needed.
    (b"permissions-policy",
     b"camera=(self), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"),
]
API_PATHS = ("/v1/", "/openapi.json", "/healthz", "/readyz")

MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".html": "text/html; charset=utf-8", ".json": "application/json",
               ".svg": "image/svg+xml", ".webmanifest": "application/manifest+json",
               ".txt": "text/plain; charset=utf-8", ".png": "image/png"}


@dataclass(frozen=True)
class Build:
    """One build of web/dist: URL path -> file, as listed in its build.json."""

    root: Path
    files: dict[str, Path]
    build_hash: str
    mtime_ns: int

    @classmethod
    def load(cls, root: Path) -> Build | None:
        manifest = root / "build.json"
        try:
            stat = manifest.stat()
            data = json.loads(manifest.read_text())
            listed = data["files"]
            build_hash = str(data["build_hash"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        base = root.resolve()
        files: dict[str, Path] = {"/build.json": manifest.resolve()}
        for url in listed:
            path = (base / str(url).lstrip("/")).resolve()
            # A listed name that escapes the build folder is ignored, never served.
            if str(url).startswith("/") and path.is_relative_to(base) and path.is_file():
                files[str(url)] = path
        return cls(root=root, files=files, build_hash=build_hash, mtime_ns=stat.st_mtime_ns)


class WebAppFiles:
    """The current build, reloaded when ``make web`` replaces it while the gateway runs."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._build: Build | None = None
        if root is not None:
            self._build = Build.load(root)
            if self._build is None:
                log.warning("web app not built: no valid build.json",
                            extra={"web_dist": str(root)})

    def current(self) -> Build | None:
        if self.root is None:
            return None
        try:
            mtime = (self.root / "build.json").stat().st_mtime_ns
        except OSError:
            return None
        if self._build is None or self._build.mtime_ns != mtime:
            self._build = Build.load(self.root)
        return self._build

    def lookup(self, path: str) -> Path | None:
        build = self.current()
        if build is None:
            return None
        if path in build.files:
            return build.files[path]
        if path == "/" or any(path == p or path.startswith(p + "/") for p in APP_PREFIXES):
            return build.files.get("/index.html")
        return None


class WebApp:
    """Pure ASGI: answers GET and HEAD for the build's files and app paths, else passes on."""

    def __init__(self, app: ASGIApp, files: WebAppFiles) -> None:
        self.app = app
        self.files = files

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        file = None if path.startswith("/v1/") else self.files.lookup(path)
        if file is None:
            await self.app(scope, receive, send)
            return
        media_type = MEDIA_TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0]
        response = FileResponse(file, media_type=media_type or "application/octet-stream")
        await response(scope, receive, send)


def docs_page(files: WebAppFiles) -> HTMLResponse:
    """Swagger UI from the web build (self-hosted assets, SRI), or a plain page saying how
    to get it: never a CDN, which the CSP would block anyway."""
    build = files.current()
    page = build.files.get("/docs/index.html") if build is not None else None
    if page is not None:
        return HTMLResponse(page.read_text())
    return HTMLResponse(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Écrin API</title>"
        "</head><body><h1>Écrin API</h1><p>The interactive documentation is part of the web "
        "build (<code>make web</code>). The OpenAPI document is at "
        "<a href=\"/openapi.json\">/openapi.json</a>.</p></body></html>")


class SecurityHeaders:
    """Pure ASGI, outermost: browser security headers on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        api = path.startswith(API_PATHS)
        csp = API_CSP if api else DOCS_CSP if path == "/docs" or path.startswith(DOCS_PATHS) \
            else APP_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = Headers(raw=message.get("headers", []))
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"content-security-policy"]
                headers += [(k, v) for k, v in COMMON_HEADERS if k.decode() not in present]
                headers.append((b"content-security-policy", csp.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
