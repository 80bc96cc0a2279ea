"""The merged OpenAPI and each service's own, as generators and linters see them: no
warning from openapi-python-client, none from Spectral's ``spectral:oas`` rules, short
stable operation ids, a description on every operation, one Problem with ``errors``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.openapi_documents import documents

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
OPERATION_ID = re.compile(r"^[a-z_]+\.[a-z_]+$")
METHODS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return documents()


def _operations(doc: dict[str, Any]):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


@pytest.mark.parametrize("name", ["merged", "gateway", "records-api", "kms", "sharing"])
class TestEachDocument:
    def test_openapi_python_client_generates_it_without_a_warning(self, docs, name, tmp_path):
        source = tmp_path / f"{name}.json"
        source.write_text(json.dumps(docs[name]))
        done = subprocess.run(  # noqa: S603 (our own tool, from the environment)
            [str(BIN / "openapi-python-client"), "generate", "--path", str(source),
             "--output-path", str(tmp_path / "client"), "--meta", "none"],
            capture_output=True, text=True, env=ENV, timeout=300, check=False)
        output = done.stdout + done.stderr
        assert done.returncode == 0 and "Warning" not in output, output

    def test_spectral_finds_nothing(self, docs, name, tmp_path):
        source = tmp_path / f"{name}.json"
        source.write_text(json.dumps(docs[name]))
        done = subprocess.run(  # noqa: S603 (the pinned Spectral of package-lock.json)
            [str(BIN / "npx"), "--no-install", "spectral", "lint", "--fail-severity=hint",
             "-r", str(ROOT / ".spectral.yaml"), "-f", "json", str(source)],
            capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300, check=False)
        # (the JSON is followed by a summary line on stdout)
        findings, _ = json.JSONDecoder().raw_decode(done.stdout[done.stdout.index("["):])
        assert findings == [], [(f["code"], f["path"]) for f in findings]

    def test_operation_ids_are_short_unique_and_every_operation_is_described(self, docs, name):
        operations = list(_operations(docs[name]))
        ids = [op["operationId"] for _, _, op in operations]
        assert len(ids) == len(set(ids))
        assert all(OPERATION_ID.match(i) for i in ids), ids
        assert all(op.get("description") for _, _, op in operations)

    def test_errors_are_problems_and_validation_problems_list_their_errors(self, docs, name):
        schemas = docs[name]["components"]["schemas"]
        assert "HTTPValidationError" not in schemas
        assert schemas["Problem"]["properties"]["errors"]["items"] == {
            "$ref": "#/components/schemas/ValidationIssue"}
        for _, _, op in _operations(docs[name]):
            for code, response in op["responses"].items():
                if code[0] in "45":
                    assert list(response["content"]) == ["application/problem+json"], code


class TestMergedDocument:
    def test_operation_ids_name_the_resource_and_the_action(self, docs):
        paths = docs["merged"]["paths"]
        assert paths["/v1/records"]["post"]["operationId"] == "records.create"
        assert paths["/v1/grants/{grant_id}"]["delete"]["operationId"] == "grants.revoke"
        assert paths["/v1/auth/login"]["post"]["operationId"] == "auth.login"

    def test_required_headers_are_spelled_once_and_required(self, docs):
        headers = [(path, p) for path, _, op in _operations(docs["merged"])
                   for p in op.get("parameters", []) if p["in"] == "header"]
        by_name = {p["name"].lower(): p["name"] for _, p in headers}
        assert by_name["idempotency-key"] == "Idempotency-Key"
        assert all(p["required"] for _, p in headers
                   if p["name"] in ("Idempotency-Key", "If-Match"))
        # The resumable upload's headers (IETF draft-ietf-httpbis-resumable-upload), where
        # a piece must say where it starts and whether it completes the content.
        upload = ("Upload-Offset", "Upload-Complete", "Upload-Length")
        assert all(p["name"] in ("Idempotency-Key", "If-Match", "If-None-Match", *upload)
                   for _, p in headers)
        assert all(p["required"] for _, p in headers
                   if p["name"] in ("Upload-Offset", "Upload-Complete"))

    def test_main_bodies_have_examples(self, docs):
        paths = docs["merged"]["paths"]
        for path in ("/v1/records", "/v1/files", "/v1/grants", "/v1/auth/login"):
            media = paths[path]["post"]["requestBody"]["content"]["application/json"]
            assert "example" in media, path

    def test_servers_and_contact(self, docs):
        assert docs["merged"]["servers"] and docs["merged"]["info"]["contact"]["email"]
