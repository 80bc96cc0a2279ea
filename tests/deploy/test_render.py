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

#: Checks skipped for a whole overlay, each with its reason. Resource-level skips are
#: checkov.io/skipN annotations next to the resource, with their reason in a comment.
SKIPPED_CHECKS: dict[str, dict[str, str]] = {
    "kind": {
        # Image digests: kind runs images built on the laptop and loaded with `kind load`,
        # which have no registry digest to pin.
        "CKV_K8S_43": "locally built images",
        # imagePullPolicy Always would make kind pull ecrin/*:dev from a registry where it
        # does not exist; IfNotPresent uses the images `make kind-load` put on the node.
        "CKV_K8S_15": "images are loaded into kind, never pulled",
    },
    "production": {
        # Image digests: the release pipeline pins them with `kustomize edit set image
        # name@sha256:...`; the committed overlay names a tag, which is reviewed by humans.
        "CKV_K8S_43": "digests are set at release time",
    },
}


class TestRender:
    def test_every_overlay_renders(self, documents):
        assert set(OVERLAYS) == {"kind", "production"}
        for overlay, docs in documents.items():
            kinds = {d["kind"] for d in docs}
            assert {"Deployment", "Service", "NetworkPolicy", "ConfigMap", "ServiceAccount",
                    "PodDisruptionBudget", "Namespace"} <= kinds, overlay

    def test_everything_lives_in_the_ecrin_namespace(self, documents):
        for overlay, docs in documents.items():
            for d in docs:
                if d["kind"] != "Namespace":
                    assert d["metadata"].get("namespace") == "ecrin", (overlay, d["metadata"])


class TestKubernetesValidate:
    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_strict_schema(self, rendered, overlay):
        result = subprocess.run(
            [tool("kubernetes-validate"), "--strict", "--quiet", "-k", KUBERNETES_VERSION,
             str(rendered[overlay])], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        # Only the CloudNativePG resources may go without a schema (CRDs are not bundled);
        # tests/deploy/test_production.py checks them.
        for line in (result.stdout + result.stderr).splitlines():
            if "Couldn't find schema" in line:
                assert "postgresql.cnpg.io/v1" in line, line
            else:
                assert not line.strip(), line


@pytest.fixture(scope="session")
def checkov_reports(rendered: dict[str, Path]) -> dict[str, dict]:
    """One checkov scan per overlay, offline (--skip-download; no platform API call)."""
    reports = {}
    for overlay, path in rendered.items():
        skips = ",".join(SKIPPED_CHECKS[overlay])
        result = subprocess.run(
            [tool("checkov"), "--file", str(path), "--framework", "kubernetes", "--output",
             "json", "--skip-download", "--skip-check", skips],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2":
                 "false"})
        report = json.loads(result.stdout)
        reports[overlay] = report[0] if isinstance(report, list) else report
    return reports


class TestCheckov:
    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_no_failed_check(self, checkov_reports, overlay):
        report = checkov_reports[overlay]
        failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
        assert failed == []
        assert report["summary"]["passed"] > 100

    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_every_resource_level_skip_says_why(self, checkov_reports, overlay):
        for check in checkov_reports[overlay]["results"]["skipped_checks"]:
            comment = (check.get("check_result") or {}).get("suppress_comment", "")
            assert comment and len(comment) > 10, check["check_id"]
