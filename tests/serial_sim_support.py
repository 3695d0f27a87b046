"""Helpers for the serial driver tests: a fresh simulated cell and a bounded-time assertion."""

from __future__ import annotations

import time
from contextlib import contextmanager

import pytest

from cellbench.core.clock import ScaledClock
from cellbench.drivers.sim.cell import CellParams, SimCell

#: Small reply timeout used by every fault test, s.
TIMEOUT_S = 0.3
#: What a bounded failure may take beyond its timeout (thread scheduling, pty latency), s.
SLACK_S = 0.7


def make_cell(time_scale: float = 1000.0, **params) -> SimCell:
    """A cell at rest at 25 degC with a fixed noise seed."""
    return SimCell(CellParams(**params), clock=ScaledClock(time_scale), seed=7)


@contextmanager
def raises_within(exception: type[BaseException], seconds: float, match: str | None = None):
    """``pytest.raises`` that also fails if the error took longer than ``seconds`` to come."""
    started = time.monotonic()
    with pytest.raises(exception, match=match) as info:
        yield info
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"{exception.__name__} after {elapsed:.2f} s (bound {seconds} s)"
