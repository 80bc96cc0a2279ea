"""The gateway serves the web app and Swagger UI on its own origin: strict CSP, SRI that
matches the bytes served, local assets only, 404 when no build, no Clear-Site-Data on a refused
logout."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest

from gateway.webapp import API_CSP, APP_CSP, DOCS_CSP
from tests.web.build import build_web

TAG = re.compile(r"<(script|link)\b[^>]*>")


@pytest.fixture(scope="module")
def web_dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("web") / "dist"
    build_web(dest)
    return dest


def sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def loaded_resources(html: str) -> list[tuple[str, str | None]]:
    """(url, integrity) of every script and stylesheet a page loads."""
    out = []
    for match in TAG.finditer(html):
        tag = match.group(0)
        if match.group(1) == "link" and 'rel="stylesheet"' not in tag:
            continue
        url = re.search(r'(?:src|href)="([^"]+)"', tag)
        integrity = re.search(r'integrity="([^"]+)"', tag)
        out.append((url.group(1) if url else "", integrity.group(1) if integrity else None))
    return out


def csp_directives(header: str) -> dict[str, list[str]]:
    return {parts[0]: parts[1:] for parts in
            (d.strip().split() for d in header.split(";") if d.strip())}


class TestStrictHeaders:
    @pytest.mark.parametrize("path", ["/", "/pro/patients", "/portail/dossiers/abc", "/docs"])
    async def test_pages_carry_the_strict_policy(self, service_app, web_dist, path):
        async with service_app("gateway", web_dist=web_dist) as client:
            response = await client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        csp = csp_directives(response.headers["content-security-policy"])
        assert csp["default-src"] == ["'self'"]
        assert csp["script-src"] == ["'self'", "'wasm-unsafe-eval'"]
        assert csp["style-src"] == ["'self'"]
        assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]
        every_source = [s for sources in csp.values() for s in sources]
        assert not [s for s in every_source if "unsafe-inline" in s or s.startswith("http")
                    or s == "*" or "unsafe-eval" == s.strip("'")]
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cross-origin-opener-policy"] == "same-origin"
        if path != "/docs":  # Swagger UI writes its own markup: no Trusted Types there
            assert csp["require-trusted-types-for"] == ["'script'"]
            assert csp["trusted-types"] == ["ecrin-worker"]

    @pytest.mark.parametrize("path", ["/sw.js", "/build.json"])
    async def test_the_app_files_carry_trusted_types_too(self, service_app, web_dist, path):
        async with service_app("gateway", web_dist=web_dist) as client:
            response = await client.get(path)
        assert response.status_code == 200
        assert response.headers["content-security-policy"] == APP_CSP

    async def test_api_answers_forbid_everything(self, service_app, web_dist):
        async with service_app("gateway", web_dist=web_dist) as client:
            response = await client.get("/healthz")
            problem = await client.get("/v1/nothing-here")
        for answer in (response, problem):
            assert answer.headers["content-security-policy"] == API_CSP
            assert answer.headers["referrer-policy"] == "no-referrer"


class TestSubresourceIntegrity:
    @pytest.mark.parametrize("page", ["/", "/docs"])
    async def test_every_script_and_style_is_local_with_a_matching_hash(
            self, service_app, web_dist, page):
        async with service_app("gateway", web_dist=web_dist) as client:
            html = (await client.get(page)).text
            resources = loaded_resources(html)
            assert len(resources) >= 2
            for url, integrity in resources:
                assert url.startswith("/") and not url.startswith("//"), url
                assert integrity is not None, url
                served = await client.get(url)
                assert served.status_code == 200, url
                assert integrity == sri(served.content), url
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script"
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html), "inline style or handler"

    async def test_docs_assets_are_served_with_their_types(self, service_app, web_dist):
        async with service_app("gateway", web_dist=web_dist) as client:
            html = (await client.get("/docs")).text
            urls = [url for url, _ in loaded_resources(html)]
            assert any(u.startswith("/docs/assets/swagger-ui-bundle-") for u in urls)
            assert 'data-openapi-url="/openapi.json"' in html
            for url in urls:
                served = await client.get(url)
                expected = "text/css" if url.endswith(".css") else "text/javascript"
                assert served.headers["content-type"].startswith(expected), url

    async def test_build_json_lists_what_is_served(self, service_app, web_dist):
        async with service_app("gateway", web_dist=web_dist) as client:
            manifest = (await client.get("/build.json")).json()
            assert re.fullmatch(r"[0-9a-f]{64}", manifest["build_hash"])
            for path, integrity in manifest["files"].items():
                assert integrity == sri((await client.get(path)).content), path


class TestOnlyTheBuild:
    async def test_a_file_not_listed_in_build_json_is_not_served(self, service_app, web_dist):
        stray = web_dist / "assets" / "stray.js"
        stray.write_text("alert(1)")
        try:
            async with service_app("gateway", web_dist=web_dist) as client:
                response = await client.get("/assets/stray.js")
        finally:
            stray.unlink()
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"

    @pytest.mark.parametrize("path", ["/nope", "/assets/", "/pros", "/v1/pro"])
    async def test_other_paths_are_problems(self, service_app, web_dist, path):
        async with service_app("gateway", web_dist=web_dist) as client:
            response = await client.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"

    async def test_only_get_and_head(self, service_app, web_dist):
        async with service_app("gateway", web_dist=web_dist) as client:
            head = await client.head("/pro")
            post = await client.post("/pro", content=b"x")
        assert head.status_code == 200 and head.content == b""
        assert post.status_code in (404, 405)
        assert post.headers["content-type"] == "application/problem+json"


class TestWithoutBuild:
    @pytest.mark.parametrize("path", ["/", "/pro/patients", "/portail", "/assets/x.js"])
    async def test_app_paths_are_404_problems(self, service_app, tmp_path, path):
        async with service_app("gateway", web_dist=tmp_path) as client:
            response = await client.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"

    async def test_docs_says_how_to_build_without_any_script(self, service_app):
        async with service_app("gateway") as client:
            response = await client.get("/docs")
        assert response.status_code == 200
        assert "/openapi.json" in response.text and "<script" not in response.text
        assert response.headers["content-security-policy"] == DOCS_CSP


class TestClearSiteData:
    """The logout route's own header (tests/e2e/test_auth_api.py::TestLogout checks the
    successful answers through the real stack): never on a refused logout."""

    async def test_the_gateway_logout_route_is_wrapped(self, service_app):
        async with service_app("gateway") as client:
            response = await client.post("/v1/auth/logout")
        assert response.status_code == 401
        assert "clear-site-data" not in response.headers
        assert response.headers["content-security-policy"] == API_CSP

    async def test_nor_on_a_refused_forget(self, service_app):
        async with service_app("gateway") as client:
            response = await client.post("/v1/auth/logout", params={"forget_device": "true"},
                                         headers={"authorization": "Bearer forged"})
        assert response.status_code == 401
        assert "clear-site-data" not in response.headers
