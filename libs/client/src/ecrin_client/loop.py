"""The event loop SDK flows run on: uvloop where it is installed, else asyncio's own.

    from ecrin_client.loop import run
    run(flow())

The SDK works on any asyncio loop; this is the one the ``ecrin`` command runs on, and the
one an application that owns no loop of its own should use. A large download or upload goes
through httpx, httpcore and anyio once per socket read, and on the standard library's
selector loop each read also registers and unregisters the socket with the selector (anyio
pauses the transport between reads): about a fifth of the SDK's CPU per downloaded MiB.
uvloop does the same in C (docs/performance.md, round 15). uvloop is not built for Windows,
where the standard loop is used; ``ECRIN_CLIENT_LOOP=asyncio`` asks for it anywhere.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: Set to ``asyncio`` to run on the standard library's loop even where uvloop is installed.
LOOP_SETTING = "ECRIN_CLIENT_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """``uvloop.new_event_loop`` when uvloop can be imported and not declined, else None
    (asyncio's default)."""
    if os.environ.get(LOOP_SETTING, "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new loop (as ``asyncio.run``), closed afterwards."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
