"""Debian's Chromium for the web app's tests, and the drivers (tests/web/*.mts) run in it.

Chromium is ``/usr/bin/chromium`` (``ECRIN_TEST_CHROMIUM`` overrides), driven by
playwright-core from the npm workspace: no browser is downloaded. Without it the browser
tests are skipped, except with ``ECRIN_TEST_REQUIRE_BROWSER=1`` (CI, ``.ci/run``), where
they fail, as a missing PostgreSQL does.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ecrin_platform.devstack import Stack
from tests.web.build import ROOT, node

REQUIRE_BROWSER = os.environ.get("ECRIN_TEST_REQUIRE_BROWSER") == "1"
CHROMIUM = Path(os.environ.get("ECRIN_TEST_CHROMIUM", "/usr/bin/chromium"))
PLAYWRIGHT = ROOT / "node_modules" / "playwright-core"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"


def require_browser(needs: tuple[str, bool] | None = None) -> None:
    """Chromium and ``needs`` (what else the test runs: by default the web drivers' npm
    packages) are there; else the test is skipped, or fails where CI requires a browser."""
    if needs is None:
        needs = ("the npm workspace (playwright-core, axe-core): run `make js`",
                 PLAYWRIGHT.exists() and AXE.exists())
    missing = [what for what, present in ((f"Chromium at {CHROMIUM}", CHROMIUM.exists()), needs)
               if not present]
    if not missing:
        return
    message = "browser tests need " + " and ".join(missing)
    if REQUIRE_BROWSER:
        pytest.fail(f"ECRIN_TEST_REQUIRE_BROWSER=1 but {message}")
    pytest.skip(message)


def run_driver(script: str, stack: Stack, timeout: float = 300) -> dict[str, Any]:
    """Runs a tests/web/*.mts driver against the stack; returns the JSON it printed."""
    result = subprocess.run(  # noqa: S603 (our own program, argv list, no shell)
        [node(), str(ROOT / "tests" / "web" / script), stack.url("gateway"), str(CHROMIUM)],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report
