"""Screenshots of the web app's main pages for the docs (docs/screenshots/*.png).

Not a test: it starts the same real stack as tests/web (a fresh build served by the
gateway), runs the browser story of flow.mts with ``ECRIN_SCREENSHOTS`` set, and writes
each page at 1280×800 and 390×844. Run: ``.venv/bin/python -m tests.web.screenshots``.

``--measure MIB`` (no screenshots) adds a MIB upload and download at the end of the story
and prints the page's memory during each (JS heap by CDP, renderer RSS from /proc).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from tests.support.stack import start_stack
from tests.web.browser import require_browser, run_driver
from tests.web.build import ROOT, build_web

OUT = ROOT / "docs" / "screenshots"


def main() -> int:
    require_browser()
    measure = sys.argv[1:2] == ["--measure"]
    if measure:
        os.environ["ECRIN_MEASURE_MIB"] = sys.argv[2]
    else:
        OUT.mkdir(parents=True, exist_ok=True)
        os.environ["ECRIN_SCREENSHOTS"] = str(OUT)
    with tempfile.TemporaryDirectory(prefix="ecrin-shots-") as tmp:
        dist = Path(tmp) / "dist"
        build_web(dist)
        state = Path(tmp) / "stack"
        state.mkdir()
        stack = start_stack("sqlite", state, "shots", ECRIN_GATEWAY_WEB_DIST=str(dist))
        try:
            report = run_driver("flow.mts", stack, timeout=1800)
        finally:
            stack.stop_all()
    if measure:
        print(json.dumps(report["large"], indent=2))
        return 0
    for path in sorted(OUT.glob("*.png")):
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
