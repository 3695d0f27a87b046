"""Simulated time that can run faster than real time.

The simulated cell and the engine share one clock, so a protocol that asks for a 2 h charge takes
2 h / ``time_scale`` of wall time while every timestamp recorded is in simulated seconds.
"""

from __future__ import annotations

import threading
import time


class ScaledClock:
    """Monotonic simulated seconds = ``time_scale`` x wall seconds since creation (+ ``start``)."""

    def __init__(self, time_scale: float = 1.0, *, start_second: float = 0.0):
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale!r}")
        self.time_scale = float(time_scale)
        self._wall0 = time.monotonic()
        self._sim0 = float(start_second)
        self._lock = threading.Lock()

    def now(self) -> float:
        """Simulated seconds."""
        return self._sim0 + (time.monotonic() - self._wall0) * self.time_scale

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of simulated time."""
        if seconds > 0:
            time.sleep(seconds / self.time_scale)

    def wall_seconds(self, seconds: float) -> float:
        """Wall time that ``seconds`` of simulated time take."""
        return seconds / self.time_scale


class WallClock(ScaledClock):
    """Real time (time_scale 1): what real instruments run on."""

    def __init__(self) -> None:
        super().__init__(1.0)
