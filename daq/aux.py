"""Auxiliary readings (temperature, pressure, AC resistance) sampled by their own threads and put
on the sample timeline.

A chamber or a pressure gauge is read every ``interval_s`` (simulated seconds on a scaled clock)
by one thread per instrument. Each channel's samples carry the latest reading of the instruments
that serve it; a reading older than ``stale_after_s`` (and, so that a stall of a loaded PC running
a fast simulation is not taken for a dead sensor, older than ``stale_wall_s`` wall seconds) is
reported as missing (NaN) rather than repeated as if it were fresh. Run-wide temperature and
pressure limits are checked on every reading here too, so a hot chamber aborts the run even while
a channel sits in a long EIS sweep; a NaN reading of a limited quantity is a breach, and so is a
stale one (:meth:`AuxSampler.stale_breach`, polled by the engine's supervisor, because this
thread is itself stuck in the call to a silent instrument).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cellbench.core.clock import ScaledClock
from cellbench.daq.link import Cancelled, InstrumentLink, InstrumentLost
from cellbench.daq.lockstep import register_actor
from cellbench.daq.protocol import Limits
from cellbench.daq.safety import Breach, check

log = logging.getLogger(__name__)

TEMPERATURE = "temperature"
PRESSURE = "pressure"
RESISTANCE = "resistance"  # AC internal resistance (a battery tester such as the Hioki BT3562)
STALE_WALL_S = 2.0  # wall s a reading must also be old for before it counts as stale


@dataclass
class Latest:
    value: float = math.nan
    time_s: float = -math.inf  # clock seconds of the reading
    wall_s: float = -math.inf  # time.monotonic() of the reading


class AuxSampler:
    """One thread reading one auxiliary quantity from one instrument."""

    def __init__(
        self,
        link: InstrumentLink,
        quantity: str,
        *,
        clock: ScaledClock,
        interval_s: float,
        limits: Limits,
        on_breach: Callable[[Breach, str], None],
        on_lost: Callable[[BaseException, str], None],
        stop: threading.Event,
        stale_after_s: float | None = None,
        on_gap: Callable[[str, str, float, float], None] | None = None,
        gap_threshold_s: float = 1.0,
    ):
        if quantity not in _READ:
            raise ValueError(f"unknown auxiliary quantity {quantity!r}")
        self.link = link
        self.quantity = quantity
        self.clock = clock
        self.interval_s = float(interval_s)
        self.limits = limits
        self.on_breach = on_breach
        self.on_lost = on_lost
        self.stop = stop
        self.stale_after_s = stale_after_s if stale_after_s is not None else 5 * self.interval_s
        self.stale_wall_s = STALE_WALL_S
        self.latest = Latest()
        self.on_gap = on_gap  # (instrument, quantity, clock s without readings, wall s of the call)
        self.gap_threshold_s = gap_threshold_s
        self.thread = threading.Thread(
            target=self._loop, name=f"cellbench-aux-{link.name}-{quantity}", daemon=True
        )
        # on a lockstep clock (repeatable simulations) time waits for this thread's readings
        self._actor = register_actor(clock)

    def read_now(self) -> float:
        """One reading, stored as the latest; raises the link's errors."""
        fn = getattr(self.link.driver, _READ[self.quantity])
        value = float(self.link.call(fn))
        self.latest = Latest(value, self.clock.now(), time.monotonic())
        return value

    def stale(self) -> bool:
        """For safety: the latest reading is older than ``stale_after_s`` (clock) and
        ``stale_wall_s`` (wall), so it cannot vouch for the limit any more."""
        latest = self.latest
        return (
            self.clock.now() - latest.time_s > self.stale_after_s
            and time.monotonic() - latest.wall_s > self.stale_wall_s
        )

    def value(self) -> float:
        """Latest reading for the record: NaN if none, or older than ``stale_after_s`` (clock
        seconds), rather than repeated as if it were fresh."""
        latest = self.latest
        if self.clock.now() - latest.time_s > self.stale_after_s:
            return math.nan
        return latest.value

    def checked_value(self) -> float:
        """Latest reading for the safety check: NaN (a breach of a limit) once :meth:`stale`."""
        return math.nan if self.stale() else self.latest.value

    def age_second(self) -> float:
        """Clock seconds since the latest reading (inf before the first)."""
        return self.clock.now() - self.latest.time_s

    def stale_breach(self) -> Breach | None:
        """A breach if this quantity is limited and its reading is stale (or NaN)."""
        kw = _LIMITED.get(self.quantity)
        if kw is None or not self.stale():
            return None
        return check(self.limits, **{kw: math.nan})

    def start(self) -> None:
        self.thread.start()

    def _loop(self) -> None:
        if self._actor is None:
            self._poll()
            return
        self._actor.bind(self.stop)  # stopped meanwhile: the loop below ends at once
        try:
            self._poll()
        finally:
            self._actor.finish()

    def _poll(self) -> None:
        wall = self.clock.wall_seconds(self.interval_s)
        while not self.stop.is_set():
            before = self.latest.time_s
            called = time.monotonic()
            try:
                value = self.read_now()
            except Cancelled:
                return
            except InstrumentLost as exc:
                self.on_lost(exc, self.link.name)
                return
            except Exception as exc:
                self.on_lost(exc, self.link.name)
                return
            took = time.monotonic() - called
            if took > self.gap_threshold_s and self.on_gap is not None and before > -math.inf:
                # The instrument was silent (its driver recovered by itself): readings missing.
                self.on_gap(self.link.name, self.quantity, self.latest.time_s - before, took)
            kw = _LIMITED.get(self.quantity)
            breach = check(self.limits, **{kw: value}) if kw else None
            if breach is not None:
                self.on_breach(breach, self.link.name)
                return
            if self._actor is not None:
                self._actor.wait_until(self.clock.now() + self.interval_s, self.stop)
            else:
                self.stop.wait(wall)


# Driver method that reads each quantity, and the safety-limit keyword of the limited ones.
_READ = {
    TEMPERATURE: "read_temperature_celsius",
    PRESSURE: "read_pressure_megapascal",
    RESISTANCE: "read_resistance_ohm",
}
_LIMITED = {TEMPERATURE: "temperature_celsius", PRESSURE: "pressure_megapascal"}
