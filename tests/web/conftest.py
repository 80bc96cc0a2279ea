"""One real stack for the web app's browser tests, its gateway serving a fresh build."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ecrin_platform.devstack import Stack
from tests.support.stack import start_stack
from tests.web.browser import require_browser
from tests.web.build import build_web


@pytest.fixture(scope="session")
def web_stack(tmp_path_factory: pytest.TempPathFactory, worker_id_safe: str) -> Iterator[Stack]:
    require_browser()
    dist = tmp_path_factory.mktemp("web") / "dist"
    build_web(dist)
    state = tmp_path_factory.mktemp("web-stack")
    stack = start_stack("sqlite", state, f"web{worker_id_safe}", ECRIN_GATEWAY_WEB_DIST=str(dist))
    yield stack
    stack.stop_all()
