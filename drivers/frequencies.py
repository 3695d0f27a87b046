"""Log-spaced sweep frequencies, shared by every impedance driver (E4990A, IM3590, EmStat).

One definition of "``points_per_decade`` from start to stop, both ends included", so the same
protocol step asks every analyzer for the same frequencies.
"""

from __future__ import annotations

import math

import numpy as np


def log_points(start_hertz: float, stop_hertz: float, points_per_decade: float) -> int:
    """Points of a log sweep with ``points_per_decade`` between the ends, both included (>= 2)."""
    if not (start_hertz > 0 and stop_hertz > 0):
        raise ValueError(f"frequencies must be > 0 Hz, got {start_hertz!r} and {stop_hertz!r}")
    decades = abs(math.log10(stop_hertz / start_hertz))
    return max(2, round(points_per_decade * decades) + 1)


def log_frequencies(start_hertz: float, stop_hertz: float, points_per_decade: float) -> np.ndarray:
    """Log-spaced frequencies from start to stop (either direction), both ends included, Hz."""
    count = log_points(start_hertz, stop_hertz, points_per_decade)
    return np.logspace(math.log10(start_hertz), math.log10(stop_hertz), count)
