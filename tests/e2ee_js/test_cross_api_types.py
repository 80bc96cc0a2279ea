"""The TypeScript SDK's API types are generated from the services' OpenAPI document: the
committed ``libs/e2ee-js/src/client/api.d.ts`` must be exactly what the services give now
(regenerate with ``python libs/e2ee-js/scripts/gen_api.py``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_committed_api_types_are_current() -> None:
    script = ROOT / "libs" / "e2ee-js" / "scripts" / "gen_api.py"
    done = subprocess.run([sys.executable, str(script), "--check"],  # noqa: S603 (our own program, argv list, no shell)
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
