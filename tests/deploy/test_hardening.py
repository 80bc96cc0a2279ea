"""Every pod is hardened and every object is labelled; no secret value is committed."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.deploy.conftest import OVERLAYS, ROOT

pytestmark = pytest.mark.xdist_group("deploy")

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
#: Type annotations that look like an assignment to the password pattern.
TYPE_NAMES = frozenset({"Uint8Array", "ArrayBuffer", "SecretStr"})
SERVICES = {"gateway": 8000, "records-api": 8001, "kms": 8002, "sharing": 8003}
#: The Deployments each overlay runs (the keys site: the kms alone).
DEPLOYMENTS = {"kind": [*SERVICES, "redis"], "production": [*SERVICES, "redis"],
               "site-data": ["gateway", "records-api", "sharing", "redis"],
               "site-keys": ["kms"]}


def probe_path(probe: dict, port: int) -> str:
    """The path a probe checks: an httpGet (a plain-HTTP pod, such as the base without a TLS
    component) or, behind mutual TLS, the exec probe that presents the pod's certificate
    (ecrin_platform.probe)."""
    assert len({"httpGet", "exec", "tcpSocket", "grpc"} & set(probe)) == 1, probe
    if "httpGet" in probe:
        assert probe["httpGet"]["port"] == port
        return str(probe["httpGet"]["path"])
    command = probe["exec"]["command"]
    assert command[:3] == ["python", "-m", "ecrin_platform.probe"], command
    prefix = f"https://localhost:{port}"
    assert command[3].startswith(prefix), command
    assert {"--ca", "--cert", "--key"} <= set(command), command
    return str(command[3][len(prefix):])


def pod_specs(docs: list[dict]):
    for d in docs:
        if d["kind"] in WORKLOADS:
            spec = d["spec"]["template"]["spec"]
            if d["kind"] == "CronJob":
                spec = d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            yield f"{d['kind']}/{d['metadata']['name']}", spec


class TestPodHardening:
    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_pods(self, documents, overlay):
        specs = dict(pod_specs(documents[overlay]))
        assert {f"Deployment/{d}" for d in DEPLOYMENTS[overlay]} <= set(specs)
        for name, spec in specs.items():
            assert spec.get("automountServiceAccountToken") is False, name
            pod = spec.get("securityContext") or {}
            assert pod.get("runAsNonRoot") is True, name
            assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
            assert spec.get("serviceAccountName") not in (None, "default"), name

    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_containers(self, documents, overlay):
        for name, spec in pod_specs(documents[overlay]):
            containers = spec["containers"] + spec.get("initContainers", [])
            for c in containers:
                where = f"{name}:{c['name']}"
                sc = c.get("securityContext") or {}
                assert sc.get("readOnlyRootFilesystem") is True, where
                assert sc.get("allowPrivilegeEscalation") is False, where
                assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
                assert not sc.get("capabilities", {}).get("add"), where
                assert sc.get("privileged") in (None, False), where
                for kind in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(c.get("resources", {}).get(kind, {})), where
                assert ":" in c["image"] and not c["image"].endswith(":latest"), where
            for c in spec["containers"]:
                assert c.get("livenessProbe") and c.get("readinessProbe"), f"{name}:{c['name']}"

    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_services_probe_healthz_and_readyz_and_migrate_first(self, documents, overlay):
        specs = dict(pod_specs(documents[overlay]))
        for svc in set(SERVICES) & set(DEPLOYMENTS[overlay]):
            spec = specs[f"Deployment/{svc}"]
            main = spec["containers"][0]
            assert probe_path(main["livenessProbe"], SERVICES[svc]) == "/healthz"
            assert probe_path(main["readinessProbe"], SERVICES[svc]) == "/readyz"
            assert probe_path(main["startupProbe"], SERVICES[svc]) == "/healthz"
            assert [c["args"] for c in spec["initContainers"]] == [["migrate"]]
            assert spec["initContainers"][0]["image"] == main["image"]


class TestLabels:
    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_every_object_and_pod_has_the_recommended_labels(self, documents, overlay):
        for d in documents[overlay]:
            labels = d["metadata"].get("labels") or {}
            where = f"{d['kind']}/{d['metadata']['name']}"
            assert labels.get("app.kubernetes.io/part-of") == "ecrin", where
            assert labels.get("app.kubernetes.io/name"), where
            if d["kind"] in WORKLOADS:
                pod = d["spec"]["template"]["metadata"]["labels"]
                assert pod.get("app.kubernetes.io/part-of") == "ecrin", where
                assert pod.get("app.kubernetes.io/name") == labels["app.kubernetes.io/name"]
                assert pod.get("app.kubernetes.io/component"), where


class TestNoSecretCommitted:
    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_no_secret_object_in_any_overlay(self, documents, overlay):
        """Secrets are made at deploy time (deploy/create-secrets.sh, CloudNativePG)."""
        assert [d["metadata"]["name"] for d in documents[overlay] if d["kind"] == "Secret"] == []

    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_no_inline_secret_in_env_or_config(self, documents, overlay):
        suspicious = re.compile(r"(password|passwd|secret|private|token|credential)", re.I)
        for d in documents[overlay]:
            if d["kind"] == "ConfigMap":
                for key, value in (d.get("data") or {}).items():
                    assert "BEGIN" not in value, key
                    if suspicious.search(key):
                        assert key.endswith("_FILE"), f"{d['metadata']['name']}: {key}"
            for _, spec in pod_specs([d]) if d["kind"] in WORKLOADS else []:
                for c in spec["containers"] + spec.get("initContainers", []):
                    for env in c.get("env", []):
                        if suspicious.search(env["name"]):
                            assert "valueFrom" in env or env["value"].startswith("/"), env

    def test_kustomizations_generate_no_secret(self):
        for path in (ROOT / "deploy").rglob("kustomization.yaml"):
            assert "secretGenerator" not in path.read_text(), path

    def test_repository_holds_no_private_key_or_password(self):
        files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                                "--exclude-standard"], cwd=ROOT, check=True,
                               capture_output=True).stdout.decode().split("\0")
        pem = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----\s*\n[A-Za-z0-9+/=]{20,}")
        assignment = re.compile(
            r"""(?i)\b(password|passwd|pgpassword|postgres_password|secret_key|"""
            r"""access_secret_key)\b["']?\s*[:=]\s*["']?([A-Za-z0-9+/=_-]{8,})""")
        found = []
        for name in filter(None, files):
            path = ROOT / name
            if not path.is_file() or path.stat().st_size > 2_000_000:
                continue
            try:
                text = path.read_text()
            except UnicodeDecodeError:
                continue
            if pem.search(text):
                found.append(f"{name}: PEM private key")
            for m in assignment.finditer(text):
                if m.group(2) in TYPE_NAMES:  # `password: Uint8Array`, a parameter's type
                    continue
                found.append(f"{name}: {m.group(1)}={m.group(2)[:3]}...")
        assert found == []
