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
