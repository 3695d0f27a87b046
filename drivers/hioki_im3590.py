"""Hioki IM3590 chemical impedance analyzer over its USB virtual COM port or RS-232.

Follows the Hioki "IM3590 Chemical Impedance Analyzer — Communication Instruction Manual"
(LCR-mode command set shared with the IM3570/IM3536): commands and replies end in CR+LF, headers
are switched off (``:HEADer OFF``) so replies are bare numbers in NR3 form.

A sweep is measured point by point in LCR mode — set ``:FREQuency``, then ``:MEASure?`` — which
works on every firmware and lets each point wait as long as its frequency needs (a 1 mHz point
takes more than one 1000 s period). Per point the driver sends::

    :FREQ 1000
    :MEAS?            -> "1.23456E+01,-4.5678E+01"   (parameter 1, parameter 3)

The parameters are set once per sweep: ``Z`` and ``PHASe`` (impedance magnitude and phase in
degrees, the default) or ``RS`` and ``X`` (series resistance and reactance); either way the driver
returns Z' and Z''. Signal level: ``:LEVel V`` (open-circuit voltage) with ``:LEVel:VOLTage``,
``:LEVel CV`` with ``:LEVel:CVOLTage``, or ``:LEVel CC`` with ``:LEVel:CCURRent``; DC bias with
``:DCBias ON`` and ``:DCBias:LEVel``. Configuration errors are read from the standard event status
register (``*ESR?``: bits 2-5 query/device/execution/command error) and raised as
:class:`InstrumentCommandError`; an over-range point comes back as ``9.9999E+19`` and is raised
as :class:`InstrumentRangeError`.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from cellbench.drivers.errors import (
    ArgumentRangeError,
    InstrumentCommandError,
    InstrumentRangeError,
)
from cellbench.drivers.hioki_base import HiokiDriver

FREQUENCY_RANGE_HERTZ = (1e-3, 200e3)
#: Signal level ranges by level mode (V rms, V rms, A rms).
LEVEL_RANGES = {"V": (5e-3, 5.0), "CV": (5e-3, 5.0), "CC": (10e-6, 50e-3)}
LEVEL_COMMANDS = {"V": ":LEV:VOLT", "CV": ":LEV:CVOLT", "CC": ":LEV:CCURR"}
DC_BIAS_RANGE_VOLT = (-2.5, 2.5)
#: Replies at or above this magnitude are the instrument's over-range marker (9.9999E+19).
OVER_RANGE = 9.9e19
PARAMETER_SETS = {"Z-PHASE": ("Z", "PHAS"), "RS-X": ("RS", "X")}


def log_frequencies(start_hertz: float, stop_hertz: float, points_per_decade: int) -> np.ndarray:
    """Log-spaced frequencies from start to stop (either direction), both ends included, Hz."""
    decades = abs(math.log10(stop_hertz / start_hertz))
    count = max(2, round(decades * points_per_decade) + 1)
    return np.logspace(math.log10(start_hertz), math.log10(stop_hertz), count)


def format_number(value: float) -> str:
    """Short unambiguous numeral for a command argument (``1000``, ``0.001``, ``2.5E-05``)."""
    return f"{value:.6G}"


class HiokiIM3590(HiokiDriver):
    """Hioki IM3590: an :class:`~cellbench.drivers.roles.ImpedanceAnalyzer`.

    Args:
        parameters: ``"Z-PHASE"`` (default) or ``"RS-X"``: what ``:MEASure?`` reports.
        settle_periods: signal periods the instrument needs per point (its measurement time is
            at least about that many periods); sets how long the driver waits for a point.
    """

    model = "im3590"
    read_termination = "\r\n"
    write_termination = "\r\n"
    baud_rate = 9600

    def __init__(
        self, address: str, *, parameters: str = "Z-PHASE", settle_periods: float = 2.0, **kwargs
    ):
        super().__init__(address, **kwargs)
        key = parameters.upper()
        if key not in PARAMETER_SETS:
            raise ArgumentRangeError(
                f"parameters {parameters!r} is not one of {', '.join(PARAMETER_SETS)}",
                instrument=self.name,
                address=self.address,
            )
        self.parameters = key
        self.settle_periods = float(settle_periods)
        self._write(":HEAD OFF")

    def configure(
        self,
        amplitude: float,
        amplitude_unit: str = "V",
        *,
        dc_bias_volt: float | None = None,
        level_mode: str | None = None,
    ) -> None:
        """Measurement parameters, signal level and DC bias; checked through ``*ESR?``.

        ``amplitude_unit`` ``"V"`` (V rms, open-circuit voltage mode unless ``level_mode="CV"``)
        or ``"A"`` (A rms, constant-current mode).
        """
        unit = amplitude_unit.upper()
        mode = (level_mode or {"V": "V", "A": "CC"}.get(unit, "")).upper()
        if mode not in LEVEL_RANGES or (unit == "A") != (mode == "CC"):
            raise ArgumentRangeError(
                f"amplitude unit {amplitude_unit!r} with level mode {level_mode!r}: use 'V' "
                "(level mode V or CV) or 'A' (CC)",
                instrument=self.name,
                address=self.address,
            )
        low, high = LEVEL_RANGES[mode]
        level = self.check_range(
            "AC amplitude", amplitude, low, high, "V rms" if unit == "V" else "A rms"
        )
        if dc_bias_volt is not None:
            bias = self.check_range("DC bias", dc_bias_volt, *DC_BIAS_RANGE_VOLT, "V")
        first, second = PARAMETER_SETS[self.parameters]
        commands = [
            ":MODE LCR",
            f":PAR1 {first}",
            ":PAR2 OFF",
            f":PAR3 {second}",
            ":PAR4 OFF",
            f":LEV {mode}",
            f"{LEVEL_COMMANDS[mode]} {format_number(level)}",
        ]
        if dc_bias_volt is None:
            commands.append(":DCB OFF")
        else:
            commands += [f":DCB:LEV {format_number(bias)}", ":DCB ON"]
        with self.transport.lock:
            for command in commands:
                self._write(command)
            self.check_errors(after="; ".join(commands))

    def measure_point(self, frequency_hertz: float) -> complex:
        """Set the frequency and measure once; the impedance, ohm (Z'' negative = capacitive)."""
        frequency = self.check_range("frequency", frequency_hertz, *FREQUENCY_RANGE_HERTZ, "Hz")
        self._write(f":FREQ {format_number(frequency)}")
        wait_s = self.timeout_s + self.settle_periods / frequency
        command = ":MEAS?"
        reply = self._query(command, timeout_s=wait_s)
        fields = reply.split(",")
        if len(fields) != 2:
            raise self._reply_error(f"expected 2 values, got {reply!r}", command)
        a, b = (self._number(field, command) for field in fields)
        if abs(a) >= OVER_RANGE or abs(b) >= OVER_RANGE:
            raise InstrumentRangeError(
                f"over-range at {frequency:g} Hz (reply {reply!r}); choose another range or "
                "amplitude",
                instrument=self.name,
                address=self.address,
                command=command,
            )
        if self.parameters == "Z-PHASE":
            return complex(a * math.cos(math.radians(b)), a * math.sin(math.radians(b)))
        return complex(a, b)

    def sweep(
        self,
        start_hertz: float,
        stop_hertz: float,
        points_per_decade: int,
        amplitude: float,
        *,
        amplitude_unit: str = "V",
        dc_bias_volt: float | None = None,
    ) -> pl.DataFrame:
        """Log sweep from start to stop; frame of frequency_hertz, z_real_ohm, z_imag_ohm."""
        self.check_range("start frequency", start_hertz, *FREQUENCY_RANGE_HERTZ, "Hz")
        self.check_range("stop frequency", stop_hertz, *FREQUENCY_RANGE_HERTZ, "Hz")
        self.check_count("points per decade", points_per_decade, 1, 100)
        if start_hertz == stop_hertz:
            raise ArgumentRangeError(
                "start and stop frequency are equal", instrument=self.name, address=self.address
            )
        frequencies = log_frequencies(start_hertz, stop_hertz, int(points_per_decade))
        self.configure(amplitude, amplitude_unit, dc_bias_volt=dc_bias_volt)
        z = np.array([self.measure_point(f) for f in frequencies])
        return pl.DataFrame(
            {
                "frequency_hertz": frequencies,
                "z_real_ohm": z.real,
                "z_imag_ohm": z.imag,
            }
        )

    def safe_state(self) -> None:
        """DC bias off, confirmed by ``:DCB?``: nothing is applied to the cell between points."""
        self._write(":DCB OFF")
        state = self._query(":DCB?").strip().upper()
        if state not in ("OFF", "0"):
            raise InstrumentCommandError(
                f"DC bias still {state!r} after :DCB OFF",
                instrument=self.name,
                address=self.address,
                command=":DCB OFF",
            )
