"""Mark-10 force gauges (Series 5/7, M3/M5 indicators) read as a stack-pressure gauge.

Follows the ASCII command set in the Mark-10 Series 5 / Series 7 force gauge user's guides
(section "Communications") and the Mark-10 GCL2 command list: 9600 baud 8-N-1 over the USB
virtual COM port or RS-232; a command ends in CR, replies end in CR+LF.

Command table:

- ``?`` -> ``"12.34 lbF"``: the current reading with its unit (user's guide; GCL2 "?").
- ``N``, ``LB``, ``KG``, ``G``, ``OZ``, ``KN``, ``MN``: select the unit (user's guide). GCL2
  documents replies only for queries and errors; whether a unit command answers with a line
  (an echo) is *not documented*, so the driver does not wait for one: it sends the command and
  looks for an error line during a short window (``ack_window_s``), dropping anything else.
- ``Z``: zero (tare) the reading; no reply documented; handled like the unit commands.
- An invalid command answers ``*10`` (an error code; GCL2 "error codes"), raised as
  :class:`InstrumentCommandError`.

The gauge has no over-range code on the serial line: a reading beyond its rated capacity
(``capacity_newton``) raises :class:`InstrumentRangeError`. A late echo of a unit command
that arrives after the window is recognised and skipped when the next reading is read.

Stack pressure on a cell is force / electrode area: ``area_cm2`` (the cell's area, required) turns
newtons into megapascals, so the gauge fills the ``PressureGauge`` role.
"""

from __future__ import annotations

import re

from cellbench.drivers.errors import (
    ArgumentRangeError,
    InstrumentCommandError,
    InstrumentRangeError,
    InstrumentTimeout,
)
from cellbench.drivers.line_driver import LineDriver, line_property

#: Newtons per unit of force, for every unit a Mark-10 gauge reports (force units only).
NEWTON_PER_UNIT = {
    "N": 1.0,
    "KN": 1000.0,
    "MN": 1e-3,  # Mark-10 "mN"
    "LBF": 4.4482216152605,
    "KGF": 9.80665,
    "GF": 9.80665e-3,
    "OZF": 0.27801385095378,
}
#: The command that selects each unit.
UNIT_COMMANDS = {"N": "N", "KN": "KN", "MN": "MN", "LBF": "LB", "KGF": "KG", "GF": "G", "OZF": "OZ"}

#: lines a gauge might echo after a command with no documented reply
_ECHOES = frozenset({*UNIT_COMMANDS.values(), "Z"})

_READING = re.compile(
    r"^\s*(?P<value>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*(?P<unit>[A-Za-z]+)\s*$"
)


def parse_reading(reply: str) -> tuple[float, str]:
    """``"12.34 lbF"`` -> ``(12.34, "LBF")``; raises ValueError if it is not a force reading."""
    match = _READING.match(reply)
    if not match:
        raise ValueError(f"not a reading: {reply!r}")
    unit = match["unit"].upper()
    if unit not in NEWTON_PER_UNIT:
        raise ValueError(f"unknown force unit {match['unit']!r} in {reply!r}")
    return float(match["value"]), unit


class Mark10Gauge(LineDriver):
    """A Mark-10 force gauge as a :class:`~cellbench.drivers.roles.PressureGauge`.

    Args:
        area_cm2: area the force acts on (the cell's electrode area), cm^2; required for
            :meth:`read_pressure_megapascal`.
        capacity_newton: the gauge's rated capacity (e.g. 2500 N for an M5-500); larger readings
            are over-range.
        unit: force unit to put the gauge in at connection (``"N"`` by default; readings in any
            unit are converted anyway).
    """

    model = "mark10"
    read_termination = "\r\n"
    write_termination = "\r"
    baud_rate = 9600

    #: the unit the gauge displays and reports (write-only: the reading carries the unit)
    unit = line_property(None, "{}", name="unit", mapping=UNIT_COMMANDS, send="_command")

    def __init__(
        self,
        address: str,
        *,
        area_cm2: float | None = None,
        capacity_newton: float = 2500.0,
        unit: str | None = "N",
        ack_window_s: float = 0.1,
        **kwargs,
    ):
        super().__init__(address, **kwargs)
        self.ack_window_s = self.check_range("ack_window_s", ack_window_s, 0.0, 5.0, "s")
        self.area_cm2 = (
            None if area_cm2 is None else self.check_range("area_cm2", area_cm2, 1e-4, 1e4, "cm^2")
        )
        self.capacity_newton = self.check_range("capacity_newton", capacity_newton, 0.1, 1e6, "N")
        if unit is not None:
            self.set_unit(unit)

    def _checked(self, command: str) -> str:
        reply = self._query(command).strip()
        if reply.startswith("*"):
            raise InstrumentCommandError(
                f"gauge reports error code {reply}",
                instrument=self.name,
                address=self.address,
                command=command,
            )
        return reply

    def _command(self, command: str) -> None:
        """Send a command that has no documented reply; raise on an error line (``*nn``) seen
        within ``ack_window_s``; drop an echo; never wait for one."""
        with self.transport.lock:
            self._write(command)
            saved = self.transport.timeout_s
            self.transport.timeout_s = max(self.ack_window_s, 1e-3)
            try:
                line = self.transport.read().strip()
            except InstrumentTimeout:
                return  # a silent gauge: nothing documented was expected
            finally:
                self.transport.timeout_s = saved
        if line.startswith("*"):
            raise InstrumentCommandError(
                f"gauge reports error code {line}",
                instrument=self.name,
                address=self.address,
                command=command,
            )

    def identify(self) -> str:
        """Mark-10 gauges have no identity query; the current reading proves the link."""
        value, unit = self.read_force()
        return f"Mark-10 force gauge (reading {value:g} {unit})"

    def set_unit(self, unit: str) -> None:
        """Select the gauge's force unit: N, kN, mN, lbF, kgF, gF or ozF."""
        self.unit = unit

    def read_force(self) -> tuple[float, str]:
        """The reading as the gauge reports it: (value, unit)."""
        command = "?"
        reply = self._checked(command)
        if reply.upper() in _ECHOES:  # a late echo of a unit or zero command: skip it
            reply = self._retrying(self.transport.read).strip()
        try:
            return parse_reading(reply)
        except ValueError as exc:
            raise self._reply_error(str(exc), command) from None

    def read_force_newton(self) -> float:
        """Force, N (compression positive as the gauge reports it)."""
        value, unit = self.read_force()
        newton = value * NEWTON_PER_UNIT[unit]
        if abs(newton) > self.capacity_newton:
            raise InstrumentRangeError(
                f"reading {value:g} {unit} exceeds the gauge capacity {self.capacity_newton:g} N",
                instrument=self.name,
                address=self.address,
                command="?",
            )
        return newton

    def read_pressure_megapascal(self) -> float:
        """Stack pressure = force / area, MPa."""
        if self.area_cm2 is None:
            raise ArgumentRangeError(
                "area_cm2 is not set: give the cell area in the instrument options",
                instrument=self.name,
                address=self.address,
            )
        return self.read_force_newton() / (self.area_cm2 * 1e-4) / 1e6

    def zero(self) -> None:
        """Tare the reading."""
        self._command("Z")

    def safe_state(self) -> None:
        """A gauge sources nothing; there is no state to make safe."""
