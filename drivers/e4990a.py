"""Keysight E4990A impedance analyzer: log frequency sweeps for pellet conductivity and EIS.

Follows the *Keysight E4990A Impedance Analyzer Programming Guide* (SCPI over LAN raw socket
``TCPIP::host::5025::SOCKET``, HiSLIP/VXI-11 or USB-TMC). Frequency range 20 Hz..120 MHz (option
120; lower options stop at 10/20/30/50 MHz: pass ``max_frequency_hertz``), 2..1601 points,
oscillator 5 mV..1 V rms or 200 uA..20 mA rms, DC bias +/-40 V (option 001).

Command table (PG = the programming guide; "public drivers" = the E4990A scripts and classes
published on GitHub that we read: Keysight-style example scripts writing ``:SENS1:APER:TIME``,
MATLAB ``setAccuracy`` writing ``:SENS1:APER``, a VB.NET driver writing ``:SENS1:APER {n}``):

- ``*CLS``, ``:FORM:DATA ASC``, ``:TRIG:SOUR BUS``, ``:INIT1:CONT ON`` (no reply). PG; the
  public drivers send the same lines.
- ``:CALC1:PAR:COUN 2``, ``:CALC1:PAR<n>:DEF R|X``, ``:CALC1:PAR<n>:SEL``,
  ``:CALC1:SEL:FORM REAL`` (no reply). PG; public drivers (``:CALC1:PAR1:DEF R``,
  ``:CALC1:PAR2:DEF X``).
- ``:SENS1:APER:TIME <1..5>``: measurement speed, 1 fastest .. 5 most accurate. Every public
  E4990A driver we read uses ``:SENS1:APER[:TIME]``; ``:SENS1:BAND`` (which earlier versions
  sent) is a network analyzer's IF-bandwidth command that the E4990A is not documented to have.
- ``:SENS1:SWE:TYPE LOG``, ``:SENS1:FREQ:STAR|STOP``, ``:SENS1:SWE:POIN``, ``:SOUR1:MODE``,
  ``:SOUR1:VOLT|CURR``, ``:SOUR1:BIAS:MODE|VOLT|STAT`` (no reply). PG; public drivers.
- ``:TRIG:SING`` then ``*OPC?`` -> ``+1``. The public drivers read ``+1`` (Keysight signs <NR1>);
  this driver accepts ``1`` and ``+1``. With ``completion="stb"``: ``*ESE 1``, ``*OPC``,
  ``*STB?`` -> ``+<n>`` (bit 5: event summary), ``*ESR?`` -> ``+<n>``.
- ``:SYST:ERR?`` -> ``+0,"No error"`` / ``-113,"Undefined header"``. Signed codes as the public
  drivers print them; the parser accepts signed and unsigned.
- ``:CALC1:SEL:DATA:FDAT?`` -> ``<primary>,<secondary>,...`` (2 per point; secondary 0 in REAL
  format); ``:SENS1:FREQ:DATA?`` -> ``<f1>,<f2>,...``. PG; public drivers.
- ``:SOUR1:BIAS:STAT?`` -> ``0``/``1`` (or ``+0``/``+1``).

Over-range points read ``9.9E37``-class values (SCPI convention; not confirmed in the guide for
the E4990A) and are raised as InstrumentRangeError.

One sweep (:meth:`KeysightE4990A.sweep`): configure channel 1 for a log sweep with trace 1 = R
and trace 2 = X in REAL format; bus trigger ``:TRIG:SING``; wait for completion with ``*OPC?``
under a timeout computed from the sweep's expected duration (or, ``completion="stb"``, by
polling the status byte for the OPC event at bounded intervals); then read
``:CALC1:SEL:DATA:FDAT?`` for each trace and ``:SENS1:FREQ:DATA?``. No busy loop: every wait is a
blocking read or a sleep with a deadline.

Safety for a cell: :meth:`KeysightE4990A.safe_state` switches the DC bias off. The E4990A's
auto-balancing bridge is DC-coupled, so a charged cell (non-zero OCV) measured without a bias
equal to its OCV, or without a DC-blocking fixture, drives current through the analyzer; the
E4990A suits pellets and symmetric cells (OCV ~ 0 V) best. The simulator does not model that
drain (with the bias off it leaves the simulated cell open).
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import polars as pl

from cellbench.drivers.errors import (
    ArgumentRangeError,
    InstrumentCommandError,
    InstrumentRangeError,
    InstrumentTimeout,
)
from cellbench.drivers.frequencies import log_points
from cellbench.drivers.scpi_driver import ScpiDriver, parse_bool, scpi_property
from cellbench.drivers.transport import Transport

MIN_FREQUENCY_HERTZ = 20.0
MAX_FREQUENCY_HERTZ = 120e6
MAX_POINTS = 1601
OSC_VOLT_RANGE = (5e-3, 1.0)  # V rms
OSC_CURRENT_RANGE = (200e-6, 20e-3)  # A rms
BIAS_VOLT_LIMIT = 40.0
OVERFLOW = 9.9e37
ESR_OPC = 1
STB_ESB = 32


def expected_sweep_s(frequencies: np.ndarray, measurement_speed: int = 1) -> float:
    """A generous upper bound on the sweep time, s: ~10 signal periods per point at speed 1
    (times the speed setting) plus 5 ms per point (the E4990A needs a few periods per point at
    low frequency)."""
    return float(np.sum(5e-3 + 10.0 * measurement_speed / np.asarray(frequencies)))


class KeysightE4990A(ScpiDriver):
    """E4990A driver (an :class:`~cellbench.drivers.roles.ImpedanceAnalyzer`).

    Args:
        address: VISA resource.
        name: instrument name in the station.
        timeout_s: bound on each ordinary reply, s (a sweep's wait adds its expected duration).
        transport: an open transport to use instead of opening ``address``.
        max_frequency_hertz: top of the installed frequency option (120 MHz for option 120).
        measurement_speed: ``:SENS1:APER:TIME`` 1 (fastest) .. 5 (most accurate); ``bandwidth``
            is accepted as its former name.
        completion: ``"opc"`` (``*OPC?``) or ``"stb"`` (poll the status byte).
        poll_interval_s: status-byte polling interval with ``completion="stb"``.
    """

    model = "Keysight E4990A"

    def __init__(
        self,
        address: str,
        *,
        name: str = "",
        timeout_s: float = 5.0,
        transport: Transport | None = None,
        max_frequency_hertz: float = MAX_FREQUENCY_HERTZ,
        measurement_speed: int = 1,
        bandwidth: int | None = None,
        completion: Literal["opc", "stb"] = "opc",
        poll_interval_s: float = 0.05,
    ):
        super().__init__(address, name=name, timeout_s=timeout_s, transport=transport)
        self.max_frequency_hertz = self.check_range(
            "max frequency", max_frequency_hertz, 10e6, MAX_FREQUENCY_HERTZ, "Hz"
        )
        if completion not in ("opc", "stb"):
            raise ArgumentRangeError(
                f"completion must be 'opc' or 'stb', got {completion!r}",
                instrument=self.name,
                address=address,
            )
        self.completion = completion
        self.poll_interval_s = float(poll_interval_s)
        speed = measurement_speed if bandwidth is None else bandwidth
        self.measurement_speed = self.check_count("measurement speed", speed, 1, 5)
        self._configure()

    def _configure(self) -> None:
        with self.transport.lock:
            for line in (
                "*CLS",
                ":FORM:DATA ASC",
                ":TRIG:SOUR BUS",
                ":INIT1:CONT ON",
                ":CALC1:PAR:COUN 2",
                ":CALC1:PAR1:DEF R",
                ":CALC1:PAR1:SEL",
                ":CALC1:SEL:FORM REAL",
                ":CALC1:PAR2:DEF X",
                ":CALC1:PAR2:SEL",
                ":CALC1:SEL:FORM REAL",
                f":SENS1:APER:TIME {self.measurement_speed}",
            ):
                self._write(line)
            self.check_errors(":CALC1:PAR1:DEF R")

    # -- one-line settings ------------------------------------------------------------------
    bias_enabled = scpi_property(":SOUR1:BIAS:STAT?", name="DC bias", parse=parse_bool)
    points = scpi_property(":SENS1:SWE:POIN?", name="sweep points", parse=lambda s: int(float(s)))
    start_frequency_hertz = scpi_property(":SENS1:FREQ:STAR?", name="sweep start, Hz")
    stop_frequency_hertz = scpi_property(":SENS1:FREQ:STOP?", name="sweep stop, Hz")
    speed = scpi_property(
        ":SENS1:APER:TIME?",
        ":SENS1:APER:TIME {}",
        name="measurement speed",
        values=(1, 2, 3, 4, 5),
        parse=lambda s: int(float(s)),
        to_wire=lambda v: str(int(v)),
        doc="measurement speed 1 (fastest) .. 5 (most accurate), ``:SENS1:APER:TIME``",
    )

    # -- configuration ----------------------------------------------------------------------
    def configure_sweep(
        self,
        start_hertz: float,
        stop_hertz: float,
        points: int,
        amplitude: float,
        *,
        amplitude_unit: str = "V",
        dc_bias_volt: float | None = None,
        log: bool = True,
    ) -> list[str]:
        """Validate and send the sweep settings; returns the lines sent."""
        top = self.max_frequency_hertz
        f0 = self.check_range(
            "start frequency",
            start_hertz,
            MIN_FREQUENCY_HERTZ,
            top,
            "Hz",
            command=":SENS1:FREQ:STAR",
        )
        f1 = self.check_range(
            "stop frequency", stop_hertz, MIN_FREQUENCY_HERTZ, top, "Hz", command=":SENS1:FREQ:STOP"
        )
        n = int(
            self.check_range("points", points, 2, MAX_POINTS, "points", command=":SENS1:SWE:POIN")
        )
        unit = amplitude_unit.upper()
        if unit == "V":
            level = self.check_range(
                "oscillator level", amplitude, *OSC_VOLT_RANGE, "V rms", command=":SOUR1:VOLT"
            )
            osc = [":SOUR1:MODE VOLT", f":SOUR1:VOLT {level:.6g}"]
        elif unit == "A":
            level = self.check_range(
                "oscillator level", amplitude, *OSC_CURRENT_RANGE, "A rms", command=":SOUR1:CURR"
            )
            osc = [":SOUR1:MODE CURR", f":SOUR1:CURR {level:.6g}"]
        else:
            raise ArgumentRangeError(
                f"amplitude_unit must be 'V' or 'A', got {amplitude_unit!r}",
                instrument=self.name,
                address=self.address,
            )
        if dc_bias_volt is None:
            bias = [":SOUR1:BIAS:STAT OFF"]
        else:
            b = self.check_range(
                "DC bias",
                dc_bias_volt,
                -BIAS_VOLT_LIMIT,
                BIAS_VOLT_LIMIT,
                "V",
                command=":SOUR1:BIAS:VOLT",
            )
            bias = [":SOUR1:BIAS:MODE VOLT", f":SOUR1:BIAS:VOLT {b:.6g}", ":SOUR1:BIAS:STAT ON"]
        lines = [
            f":SENS1:SWE:TYPE {'LOG' if log else 'LIN'}",
            f":SENS1:FREQ:STAR {f0:.10g}",
            f":SENS1:FREQ:STOP {f1:.10g}",
            f":SENS1:SWE:POIN {n}",
            *osc,
            *bias,
        ]
        with self.transport.lock:
            for line in lines:
                self._write(line)
            self.check_errors(lines[0])
        return lines

    # -- measurement ------------------------------------------------------------------------
    def trigger_and_wait(self, wait_s: float) -> None:
        """Trigger one sweep and wait for it, at most ``wait_s`` + the reply timeout."""
        with self.transport.lock:
            if self.completion == "opc":
                self._write(":TRIG:SING")
                reply = self._query("*OPC?", timeout_s=self.timeout_s + wait_s)
                if reply.strip().lstrip("+") != "1":  # Keysight answers "+1"
                    raise self._reply_error(f"*OPC? answered {reply!r}", "*OPC?")
                return
            self._write("*ESE 1")
            self._write("*CLS")
            self._write(":TRIG:SING")
            self._write("*OPC")
            deadline = time.monotonic() + self.timeout_s + wait_s
            while True:
                stb = int(self._number(self._query("*STB?"), "*STB?"))
                if stb & STB_ESB:
                    self._query("*ESR?")  # clears the event register
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise InstrumentTimeout(
                        f"sweep not complete within {self.timeout_s + wait_s:.1f} s "
                        "(status byte never showed the OPC event)",
                        instrument=self.name,
                        address=self.address,
                        command=":TRIG:SING",
                    )
                time.sleep(min(self.poll_interval_s, remaining))

    def _trace(self, index: int, points: int) -> np.ndarray:
        command = ":CALC1:SEL:DATA:FDAT?"
        with self.transport.lock:
            self._write(f":CALC1:PAR{index}:SEL")
            values = self._numbers(self._query(command), command)
        if len(values) != 2 * points:
            raise self._reply_error(f"expected {2 * points} values, got {len(values)}", command)
        primary = np.asarray(values[0::2])
        if np.any(np.abs(primary) >= OVERFLOW):
            raise InstrumentRangeError(
                f"{int(np.sum(np.abs(primary) >= OVERFLOW))} point(s) over range",
                instrument=self.name,
                address=self.address,
                command=command,
            )
        return primary

    def read_data(self, points: int) -> pl.DataFrame:
        """The last sweep: frequency_hertz, z_real_ohm (trace 1, R), z_imag_ohm (trace 2, X)."""
        command = ":SENS1:FREQ:DATA?"
        with self.transport.lock:
            r = self._trace(1, points)
            x = self._trace(2, points)
            f = self._numbers(self._query(command), command)
        if len(f) != points:
            raise self._reply_error(f"expected {points} frequencies, got {len(f)}", command)
        return pl.DataFrame(
            {"frequency_hertz": np.asarray(f), "z_real_ohm": r, "z_imag_ohm": x},
            schema={
                "frequency_hertz": pl.Float64,
                "z_real_ohm": pl.Float64,
                "z_imag_ohm": pl.Float64,
            },
        )

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
        """A log sweep from ``start_hertz`` to ``stop_hertz``; frame of frequency_hertz,
        z_real_ohm, z_imag_ohm (ascending or descending as asked). ``amplitude``: V or A rms."""
        if not points_per_decade > 0:
            raise ArgumentRangeError(
                f"points_per_decade must be > 0, got {points_per_decade!r}",
                instrument=self.name,
                address=self.address,
            )
        points = log_points(start_hertz, stop_hertz, points_per_decade)
        if points > MAX_POINTS:
            raise ArgumentRangeError(
                f"{points} points exceed the E4990A's {MAX_POINTS}; lower points_per_decade",
                instrument=self.name,
                address=self.address,
                command=":SENS1:SWE:POIN",
            )
        low, high = sorted((start_hertz, stop_hertz))
        with self.transport.lock:
            self.configure_sweep(
                low,
                high,
                points,
                amplitude,
                amplitude_unit=amplitude_unit,
                dc_bias_volt=dc_bias_volt,
            )
            wait = expected_sweep_s(np.geomspace(low, high, points), self.measurement_speed)
            self.trigger_and_wait(wait)
            frame = self.read_data(points)
        return frame if start_hertz <= stop_hertz else frame.reverse()

    # -- safety -----------------------------------------------------------------------------
    def safe_state(self) -> None:
        """DC bias off (confirmed). Safe to call at any time, repeatedly."""
        with self.transport.lock:
            self._write(":SOUR1:BIAS:STAT OFF")
            if self.bias_enabled:
                raise InstrumentCommandError(
                    "DC bias still on after :SOUR1:BIAS:STAT OFF",
                    instrument=self.name,
                    address=self.address,
                    command=":SOUR1:BIAS:STAT OFF",
                )
