"""Every overlay renders, validates against Kubernetes 1.30 (strict) and passes checkov."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import OVERLAYS, tool

pytestmark = pytest.mark.xdist_group("deploy")

#: The oldest Kubernetes the manifests must work on.
KUBERNETES_VERSION = "1.30.0"

#: Checks skipped for a whole overlay, each with its reason: kind only. The released
#: overlays are scanned as `make release-manifests` writes them (images by digest) with no
#: skip at all. Resource-level skips are checkov.io/skipN annotations next to the resource,
#: with their reason in a comment.
SKIPPED_CHECKS: dict[str, dict[str, str]] = {
    "kind": {
        # Image digests: kind runs images built on the laptop and loaded with `kind load`,
        # which have no registry digest to pin.
        "CKV_K8S_43": "locally built images",
        # imagePullPolicy Always would make kind pull ecrin/*:dev from a registry where it
        # does not exist; IfNotPresent uses the images `make kind-load` put on the node.
        "CKV_K8S_15": "images are loaded into kind, never pulled",
    },
}
#: Kinds of the operators the production overlays rely on: no schema is bundled with
#: kubernetes-validate; test_operator_schemas.py checks them against their CRDs.
OPERATOR_GROUPS = ("postgresql.cnpg.io/v1", "cert-manager.io/v1")
NAMESPACES = {"kind": {"ecrin"}, "production": {"ecrin", "ecrin-keys"},
              "site-data": {"ecrin"}, "site-keys": {"ecrin-keys"}}


class TestRender:
    def test_every_overlay_renders(self, documents):
        assert set(OVERLAYS) == {"kind", "production", "site-data", "site-keys"}
        for overlay, docs in documents.items():
            kinds = {d["kind"] for d in docs}
            assert {"Deployment", "Service", "NetworkPolicy", "ConfigMap", "ServiceAccount",
                    "PodDisruptionBudget", "Namespace"} <= kinds, overlay

    def test_everything_lives_in_the_overlays_namespaces(self, documents):
        for overlay, docs in documents.items():
            made = {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}
            assert made == NAMESPACES[overlay]
            for d in docs:
                if d["kind"] != "Namespace":
                    assert d["metadata"].get("namespace") in made, (overlay, d["metadata"])

    @pytest.mark.parametrize("overlay", ["production", "site-keys"])
    def test_the_kms_and_its_database_and_nothing_else_in_the_keys_namespace(self, documents,
                                                                             overlay):
        keys = {(d["kind"], d["metadata"]["name"]) for d in documents[overlay]
                if d["metadata"].get("namespace") == "ecrin-keys"}
        workloads = {n for k, n in keys if k in ("Deployment", "Cluster", "StatefulSet")}
        assert workloads == {"kms", "kms-db"}
        elsewhere = {d["metadata"]["name"] for d in documents[overlay]
                     if d["kind"] in ("Deployment", "Cluster")
                     and d["metadata"].get("namespace") != "ecrin-keys"}
        assert not elsewhere & {"kms", "kms-db"}


class TestKubernetesValidate:
    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_strict_schema(self, rendered, overlay):
        result = subprocess.run(
            [tool("kubernetes-validate"), "--strict", "--quiet", "-k", KUBERNETES_VERSION,
             str(rendered[overlay])], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        # Only the operators' resources may go without a schema (CRDs are not bundled);
        # tests/deploy/test_operator_schemas.py checks them against their CRDs.
        for line in (result.stdout + result.stderr).splitlines():
            if "Couldn't find schema" in line:
                assert any(group in line for group in OPERATOR_GROUPS), line
            else:
                assert not line.strip(), line


@pytest.fixture(scope="session")
def checkov_reports(rendered: dict[str, Path], released: dict[str, Path]) -> dict[str, dict]:
    """One checkov scan of every overlay at once, offline (--skip-download; no platform
    API call): kind as rendered, the others as released (images by digest). Checkov's
    start-up is most of its time (18.5 s for one file, 20.4 s for two), so the four are
    scanned together and the report split per overlay by file; an overlay's own skips
    (SKIPPED_CHECKS) are left out of its results.
    -> overlay -> {"failed": [...], "skipped": [...], "passed": n}"""
    files = {overlay: released.get(overlay, path).resolve() for overlay, path in rendered.items()}
    result = subprocess.run(
        [tool("checkov"), "--file", *map(str, files.values()), "--framework", "kubernetes",
         "--output", "json", "--skip-download"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2":
             "false"})
    report = json.loads(result.stdout)
    results = (report[0] if isinstance(report, list) else report)["results"]
    outcomes = ("passed_checks", "failed_checks", "skipped_checks")
    scanned = {Path(c["file_abs_path"]) for outcome in outcomes for c in results[outcome]}
    assert scanned == set(files.values()), "a result for no overlay, or an overlay unscanned"
    def of(outcome: str, overlay: str) -> list[dict]:
        return [c for c in results[outcome] if Path(c["file_abs_path"]) == files[overlay]
                and c["check_id"] not in SKIPPED_CHECKS.get(overlay, {})]

    return {overlay: {"failed": of("failed_checks", overlay),
                      "skipped": of("skipped_checks", overlay),
                      "passed": len(of("passed_checks", overlay))} for overlay in files}


class TestCheckov:
    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_no_failed_check(self, checkov_reports, overlay):
        report = checkov_reports[overlay]
        failed = [(c["check_id"], c["resource"]) for c in report["failed"]]
        assert failed == []
        assert report["passed"] > 80

    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_every_resource_level_skip_says_why(self, checkov_reports, overlay):
        for check in checkov_reports[overlay]["skipped"]:
            comment = (check.get("check_result") or {}).get("suppress_comment", "")
            assert comment and len(comment) > 10, check["check_id"]


class TestReferences:
    def test_every_script_a_comment_or_the_guide_names_exists(self):
        """A comment that names a script which does not exist sends an operator nowhere."""
        import re

        from tests.deploy.conftest import ROOT

        named = re.compile(r"(?<![\w/])(deploy/[\w./-]+\.(?:sh|py))\b")
        texts = [p for p in (ROOT / "deploy").rglob("*")
                 if p.is_file() and p.suffix in (".yaml", ".sh", ".py", ".toml")
                 and ".venv" not in p.parts]
        texts.append(ROOT / "docs" / "deploy.md")
        texts.append(ROOT / "Makefile")
        missing = {(str(p.relative_to(ROOT)), m) for p in texts
                   for m in named.findall(p.read_text()) if not (ROOT / m).exists()}
        assert missing == set()
