"""The sharing service's time source: grants expire by it, so tests move it, never sleep.

``ECRIN_SHARING_CLOCK_OFFSET_FILE`` (tests and demos only) names a file holding a number of
seconds added to the real time; it is re-read at most once a second.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path


class Clock:
    def __init__(self, offset_file: Path | None = None) -> None:
        self.offset_file = offset_file
        self._offset = 0.0
        self._read_at = 0.0

    def _current_offset(self) -> float:
        if self.offset_file is None:
            return 0.0
        if time.monotonic() - self._read_at > 1.0:
            try:
                self._offset = float(self.offset_file.read_text().strip() or 0)
            except (OSError, ValueError):
                self._offset = 0.0
            self._read_at = time.monotonic()
        return self._offset

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self._current_offset())
