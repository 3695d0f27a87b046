"""Simulated motorised press with a load cell (the protocol of :mod:`cellbench.drivers.press`).

The press sets the shared cell's stack pressure: closed loop on force, it moves the force
towards its set point at ``rate_newton_per_second`` on the cell's clock (integrated lazily at
each command, as the cell is) and keeps correcting it there (a cell that creeps or a pressure
changed from outside is pushed back); the load cell reads ``pressure x area``. ``HOLD`` stops
the motor where it is. The cell's interface resistance follows the pressure (``SimCell``), so
a pressure step shows in the impedance and in the DC resistance.

Faults: ``error_queue`` answers the next command ``ERR 1 COMMAND``; ``over_range`` reports a
force of 1.2 x the load cell's capacity once. Setting :attr:`PressSimulator.stalled` jams the
motor (the force no longer follows the set point, as with a jammed screw or a tripped drive).
"""

from __future__ import annotations

import re

from cellbench.drivers.sim.serial_server import SerialSimulator

NEWTON_PER_MPA_CM2 = 100.0
MIN_PRESSURE_MPA = 1e-3  # the cell model needs a positive pressure; an unloaded fixture


class PressSimulator(SerialSimulator):
    """A motorised press on the simulated cell."""

    driver = "press"
    line_end = b"\n"
    command_end = b"\n"
    _SETF = re.compile(r"^SETF\s+([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)$", re.IGNORECASE)
    _RATE = re.compile(r"^RATE\s+([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)$", re.IGNORECASE)

    def __init__(
        self,
        cell,
        *,
        area_cm2: float | None = None,
        capacity_newton: float = 20000.0,
        rate_newton_per_second: float = 200.0,
        name: str = "",
        faults=None,
        link_dir=None,
    ):
        super().__init__(cell, name=name, faults=faults, link_dir=link_dir)
        self.area_cm2 = float(area_cm2 if area_cm2 is not None else cell.params.area_cm2)
        self.capacity_newton = float(capacity_newton)
        self.rate = float(rate_newton_per_second)
        self.setpoint_newton = self.force_newton()
        self.mode = "HOLD"
        self.stalled = False
        self._time = cell.clock.now()

    def force_newton(self) -> float:
        return self.cell.pressure_megapascal * self.area_cm2 * NEWTON_PER_MPA_CM2

    def advance(self) -> None:
        """Move the force towards the set point for the time since the last call."""
        now = self.cell.clock.now()
        dt, self._time = max(0.0, now - self._time), now
        if self.mode == "HOLD" or self.stalled:
            return
        force = self.force_newton()
        step = self.rate * dt
        gap = self.setpoint_newton - force
        if abs(gap) <= max(step, 1e-9 * self.capacity_newton):
            force, self.mode = self.setpoint_newton, "AT_SETPOINT"
        else:
            force += step if gap > 0 else -step
            self.mode = "MOVING"
        self.cell.pressure_megapascal = max(
            MIN_PRESSURE_MPA, force / (self.area_cm2 * NEWTON_PER_MPA_CM2)
        )

    def handle(self, line: str) -> str | None:
        text = line.strip()
        if not text:
            return None
        self.advance()
        if self.faults.take("error_queue", text) is not None:
            return "ERR 1 COMMAND"
        upper = text.upper()
        if upper == "*IDN?":
            return "cellbench,simulated press,0,1.0"
        if upper == "FORCE?":
            force = self.force_newton()
            if self.faults.take("over_range", text) is not None:
                force = 1.2 * self.capacity_newton
            return f"{force:.3f}"
        if upper == "SETF?":
            return f"{self.setpoint_newton:.3f}"
        if upper == "RATE?":
            return f"{self.rate:.6g}"
        if upper == "CAP?":
            return f"{self.capacity_newton:.6g}"
        if upper == "STAT?":
            return self.mode
        if upper == "HOLD":
            self.mode = "HOLD"
            return "OK"
        match = self._SETF.match(text)
        if match:
            value = float(match.group(1))
            if not 0.0 <= value <= self.capacity_newton:
                return "ERR 2 OUT OF RANGE"
            self.setpoint_newton = value
            self.mode = "MOVING"
            self.advance()  # a set point already reached reads AT_SETPOINT at once
            return "OK"
        match = self._RATE.match(text)
        if match:
            value = float(match.group(1))
            if not value > 0:
                return "ERR 2 OUT OF RANGE"
            self.rate = value
            return "OK"
        return "ERR 1 COMMAND"
