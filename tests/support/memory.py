"""Peak resident memory of a process, sampled in a thread while a block runs."""

from __future__ import annotations

import os
import threading
import time

import psutil


class PeakRss:
    """``with PeakRss(pid) as rss: ...`` then ``rss.rise``: the peak RSS over the RSS at
    entry, sampled every ``interval`` seconds (the current process by default)."""

    def __init__(self, pid: int | None = None, interval: float = 0.005) -> None:
        self.process = psutil.Process(pid or os.getpid())
        self.interval = interval
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def rise(self) -> int:
        return self.peak - self.baseline
