"""The loop SDK flows run on (``ecrin_client.loop``): uvloop where installed, else asyncio."""

from __future__ import annotations

import asyncio
import sys

import pytest
from ecrin_client import loop


async def _running_loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_flows_run_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(loop.LOOP_SETTING, raising=False)
    assert loop.run(_running_loop_module()) == "uvloop"


def test_the_standard_loop_can_be_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(loop.LOOP_SETTING, "asyncio")
    assert loop.loop_factory() is None
    assert loop.run(_running_loop_module()) == "asyncio"


def test_without_uvloop_the_standard_loop_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(loop.LOOP_SETTING, raising=False)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as on Windows: the import fails
    assert loop.loop_factory() is None
    assert loop.run(_running_loop_module()) == "asyncio"


def test_a_flow_s_error_comes_out_and_the_loop_is_closed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(loop.LOOP_SETTING, raising=False)
    seen: list[asyncio.AbstractEventLoop] = []

    async def fails() -> None:
        seen.append(asyncio.get_running_loop())
        raise LookupError("the flow's own error")

    with pytest.raises(LookupError, match="the flow's own error"):
        loop.run(fails())
    assert seen[0].is_closed()
