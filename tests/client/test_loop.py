"""The loop SDK flows run on (``ecrin_client.loop``): uvloop where installed, else asyncio."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

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


def test_ctrl_c_stops_a_flow_and_its_clean_up_runs(tmp_path: Path) -> None:
    """As under ``asyncio.run``: SIGINT cancels the flow, its ``finally`` runs (a spool
    file is deleted there), and the process ends by KeyboardInterrupt. (The child takes
    Ctrl-C as a terminal's program does: a test worker may have started it with SIGINT
    ignored, which a child inherits.)"""
    marker = tmp_path / "cleaned"
    script = (
        "import asyncio, signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from pathlib import Path\n"
        "from ecrin_client.loop import run\n"
        "async def flow():\n"
        "    try:\n"
        "        print('ready', flush=True)\n"
        "        await asyncio.sleep(30)\n"
        "    finally:\n"
        "        Path(sys.argv[1]).write_text('cleaned up')\n"
        "run(flow())\n")
    child = subprocess.Popen([sys.executable, "-c", script, str(marker)],  # noqa: S603 (our interpreter)
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=20)
    assert child.returncode != 0
    assert "KeyboardInterrupt" in err
    assert marker.read_text() == "cleaned up"
