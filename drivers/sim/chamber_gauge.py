"""Simulated Espec temperature chamber and Mark-10 force gauge on pseudo-terminals.

The chamber's air temperature is the shared cell's temperature (the cell model's thermal lag
stands in for the chamber's); CONSTANT mode drives the cell's chamber set point, STANDBY lets it
relax to ``ambient_celsius``. The gauge reads the cell's stack pressure times its area.
"""

from __future__ import annotations

import re
from typing import ClassVar

from cellbench.drivers.sim.serial_server import SerialSimulator


class EspecSimulator(SerialSimulator):
    """Espec controller commands ``ROM? TYPE? TEMP? TEMP, S<x> MODE? MODE, <mode> MON?``.

    Faults: ``error_queue`` answers the next command ``NA:COMMAND ERR``; ``interlock`` trips the
    over-temperature protector (alarm 12): control stops (STANDBY), ``ALARM?`` answers
    ``1,12`` and ``MODE, CONSTANT`` is refused with ``NA:ALARM`` until ``ALARM, CLEAR``.
    """

    driver = "espec"
    line_end = b"\r\n"
    command_end = b"\n"
    _SET_TEMP = re.compile(r"^TEMP\s*,\s*S\s*([-+]?\d+(?:\.\d*)?)$", re.IGNORECASE)
    _SET_MODE = re.compile(r"^MODE\s*,\s*(\w+)$", re.IGNORECASE)

    def __init__(
        self,
        cell,
        *,
        upper_limit_celsius: float = 100.0,
        lower_limit_celsius: float = -40.0,
        ambient_celsius: float = 25.0,
        name: str = "",
        faults=None,
        link_dir=None,
    ):
        super().__init__(cell, name=name, faults=faults, link_dir=link_dir)
        self.upper = float(upper_limit_celsius)
        self.lower = float(lower_limit_celsius)
        self.ambient = float(ambient_celsius)
        self.setpoint = float(cell.chamber_setpoint_celsius)
        self.mode = "STANDBY"
        self.alarms: list[int] = []

    def trip(self, code: int = 12) -> None:
        """An alarm stops temperature control, as the chamber's protector does."""
        self.alarms.append(code)
        self.mode = "STANDBY"
        self.cell.set_chamber_setpoint(self.ambient)

    def handle(self, line: str) -> str | None:
        text = line.strip()
        if not text:
            return None
        if self.faults.take("error_queue", text) is not None:
            return "NA:COMMAND ERR"
        if self.faults.take("interlock", text) is not None:
            self.trip()
        upper = text.upper()
        if upper == "ALARM?":
            return ",".join(str(v) for v in [len(self.alarms), *self.alarms])
        if upper == "ALARM, CLEAR":
            self.alarms.clear()
            return "OK: ALARM, CLEAR"
        if upper == "ROM?":
            return "P5.01 SIMULATED"
        if upper == "TYPE?":
            return "SH-241,T,S2,150.0"
        if upper == "TEMP?":
            measured = self.cell.temperature_celsius
            return f"{measured:.1f},{self.setpoint:.1f},{self.upper:.1f},{self.lower:.1f}"
        if upper == "MODE?":
            return self.mode
        if upper == "MON?":
            return f"{self.cell.temperature_celsius:.1f},,{self.mode},{len(self.alarms)}"
        match = self._SET_TEMP.match(text)
        if match:
            value = float(match.group(1))
            if not self.lower <= value <= self.upper:
                return "NA:DATA OUT OF RANGE"
            self.setpoint = value
            if self.mode == "CONSTANT":
                self.cell.set_chamber_setpoint(value)
            return f"OK: TEMP, S{value:.1f}"
        match = self._SET_MODE.match(text)
        if match:
            mode = match.group(1).upper()
            if mode not in ("CONSTANT", "STANDBY", "OFF"):
                return "NA:PARAMETER ERR"
            if mode == "CONSTANT" and self.alarms:
                return "NA:ALARM"
            self.mode = mode
            self.cell.set_chamber_setpoint(self.setpoint if mode == "CONSTANT" else self.ambient)
            return f"OK: MODE, {mode}"
        return "NA:COMMAND ERR"


class Mark10Simulator(SerialSimulator):
    """Mark-10 gauge: ``?`` -> ``"123.4 N"``; unit commands; ``Z`` tare; ``*10`` for others.

    Unit commands and ``Z`` are silent by default: GCL2 documents replies only for queries and
    errors. ``acknowledges=True`` makes them echo the command instead (the other possibility a
    driver must tolerate).

    Faults: ``over_range`` reports 1.2 x the rated capacity; ``error_queue`` answers ``*10``.
    """

    driver = "mark10"
    line_end = b"\r\n"
    command_end = b"\r"
    #: unit command -> (reported unit text, newtons per unit, decimals)
    UNITS: ClassVar[dict[str, tuple[str, float, int]]] = {
        "N": ("N", 1.0, 2),
        "KN": ("kN", 1000.0, 4),
        "MN": ("mN", 1e-3, 0),
        "LB": ("lbF", 4.4482216152605, 3),
        "KG": ("kgF", 9.80665, 3),
        "G": ("gF", 9.80665e-3, 1),
        "OZ": ("ozF", 0.27801385095378, 2),
    }

    def __init__(
        self,
        cell,
        *,
        area_cm2: float | None = None,
        capacity_newton: float = 2500.0,
        acknowledges: bool = False,
        name: str = "",
        faults=None,
        link_dir=None,
    ):
        super().__init__(cell, name=name, faults=faults, link_dir=link_dir)
        self.acknowledges = bool(acknowledges)
        self.area_cm2 = float(area_cm2 if area_cm2 is not None else cell.params.area_cm2)
        self.capacity_newton = float(capacity_newton)
        self.unit = "LB"  # factory default
        self.tare_newton = 0.0

    def force_newton(self) -> float:
        return self.cell.pressure_megapascal * 1e6 * self.area_cm2 * 1e-4 - self.tare_newton

    def handle(self, line: str) -> str | None:
        text = line.strip().upper()
        if not text:
            return None
        if self.faults.take("error_queue", text) is not None:
            return "*10"
        if text == "?":
            newton = self.force_newton()
            if self.faults.take("over_range", text) is not None:
                newton = 1.2 * self.capacity_newton
            label, factor, decimals = self.UNITS[self.unit]
            return f"{newton / factor:.{decimals}f} {label}"
        if text in self.UNITS:
            self.unit = text
            return text if self.acknowledges else None
        if text == "Z":
            self.tare_newton += self.force_newton()
            return "Z" if self.acknowledges else None
        return "*10"
