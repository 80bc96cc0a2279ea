"""Renders every overlay once per session; the checkers run from deploy/tools/.venv."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
TOOLS = ROOT / "deploy" / "tools" / ".venv" / "bin"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())


def tool(name: str) -> Path:
    """A checker from its own environment. Missing is a failure, never a skip: `make test`
    installs them (`make deploy-tools`)."""
    path = TOOLS / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make deploy-tools` "
                    "(uv sync --project deploy/tools --frozen)")
    return path


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl is not installed; `kubectl kustomize` renders the overlays")
    return path


def render(overlay: str) -> str:
    return subprocess.run([kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
                          check=True, capture_output=True, text=True, timeout=60).stdout


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """overlay -> the file holding its rendered YAML."""
    out = tmp_path_factory.mktemp("rendered")
    files = {}
    for overlay in OVERLAYS:
        files[overlay] = out / f"{overlay}.yaml"
        files[overlay].write_text(render(overlay))
    return files


@pytest.fixture(scope="session")
def documents(rendered: dict[str, Path]) -> dict[str, list[dict]]:
    """overlay -> its rendered objects."""
    return {o: [d for d in yaml.safe_load_all(p.read_text()) if d] for o, p in rendered.items()}


def release_module():
    """deploy/release_manifests.py (a script, not a package), loaded for the tests."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("release_manifests",
                                                  ROOT / "deploy" / "release_manifests.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_digest(name: str) -> str:
    """A well-formed digest per image name, standing for what the registry reports."""
    import hashlib

    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


@pytest.fixture(scope="session")
def released(documents: dict[str, list[dict]],
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """overlay -> its rendering as `make release-manifests` writes it (every image pinned
    by digest), for the overlays that are released (not kind)."""
    import copy

    release = release_module()
    out = tmp_path_factory.mktemp("released")
    files = {}
    for overlay in release.OVERLAYS:
        docs = copy.deepcopy(documents[overlay])
        names = {release.split_reference(holder[key])[0]
                 for d in docs for holder, key in release._image_slots(d)}
        release.pin(docs, {name: fake_digest(name) for name in names})
        files[overlay] = out / f"{overlay}.yaml"
        files[overlay].write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return files
