"""Hioki IM3590 chemical impedance analyzer over its USB virtual COM port or RS-232.

Follows the Hioki *IM3590 Chemical Impedance Analyzer Communication Instruction Manual* (LCR-mode
command set shared with the IM3570/IM3536; the online edition on hioki.com, "Querying measurement
data"): commands and replies end in CR+LF, headers off (``:HEADer OFF``), values in NR3 form.

Command table (CM = that manual; "3532 manual" = Hioki's 3532-50/3522-50 communication manual,
the same LCR command family, which prints the ``:MEASure:ITEM`` register bits):

- ``:HEAD OFF``; ``*IDN?`` -> ``HIOKI,IM3590,<serial>,<version>``; ``*ESR?`` -> ``0..255``
  (bits 2-5: refused commands). CM.
- ``:MODE LCR``; ``:PAR1..4 <parameter>|OFF``; ``:LEV V|CV|CC`` with ``:LEV:VOLT``,
  ``:LEV:CVOLT``, ``:LEV:CCURR``; ``:DCB ON|OFF``, ``:DCB:LEV``; ``:DCB?`` -> ``ON``/``OFF``.
  CM.
- ``:MEAS:ITEM <MR0>,<MR1>,<MR2>``: which parameters ``:MEASure?`` returns in normal LCR
  measurement (CM: "you can select the type of parameters to return with the :MEASure:ITEM
  command"). Bit assignment from the 3532 manual: MR0 Z=1, Y=2, PHASE=4, Cs=8, Cp=16, D=32,
  Ls=64, Lp=128; MR1 Q=1, Rs=2, G=4, Rp=8, X=16, B=32; MR2 (IM3590 additions) 0. *Not verified
  on an IM3590*: the driver therefore also checks the reply shape (exactly two NR3 values).
- ``:TRIG EXT`` once, then per point ``:FREQ <f>``, ``*TRG``, ``:MEAS?``. In internal trigger
  mode the instrument free-runs and a reply can hold a measurement begun before the ``:FREQ``
  change. The driver review (cellbench issue 18) found public drivers using external trigger
  with ``*TRG`` per point, as here; one public Hioki LCR script we read instead sets
  ``:TRIGger INTernal`` and reads ``:MEASure?`` directly, which carries that risk.
- ``:MEAS?`` -> what ``:MEASure:VALid`` selects: status, judgment results, measurement values,
  panel number (CM). The bit layout of ``:MEASure:VALid`` is not in the pages we could read, so
  the driver leaves it as the instrument has it and reads the reply tolerantly: NR3 fields
  (with an exponent) are the selected values, in ITEM order; integer fields are status,
  judgment or panel fields, and a non-zero leading status field is raised as
  :class:`InstrumentRangeError` (Hioki status codes: 0 normal; otherwise over/under range,
  contact or sampling errors). An over-range value reads ``9.9999E+19`` (also raised).

A sweep is measured point by point, so each point waits as long as its frequency needs (a 1 mHz
point takes more than one 1000 s period). ``parameters`` ``Z-PHASE`` (|Z| and phase in degrees)
or ``RS-X``; either way the driver returns Z' and Z''.
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
from cellbench.drivers.frequencies import log_frequencies
from cellbench.drivers.hioki_base import HiokiDriver
from cellbench.drivers.line_driver import line_property

__all__ = ["HiokiIM3590", "item_registers", "log_frequencies", "parse_measurement"]

FREQUENCY_RANGE_HERTZ = (1e-3, 200e3)
#: :MEAS:ITEM registers (MR0, MR1, MR2) per parameter (bit layout of the 3532 manual)
ITEM_BITS = {
    "Z": (1, 0, 0),
    "Y": (2, 0, 0),
    "PHAS": (4, 0, 0),
    "CS": (8, 0, 0),
    "CP": (16, 0, 0),
    "D": (32, 0, 0),
    "LS": (64, 0, 0),
    "LP": (128, 0, 0),
    "Q": (0, 1, 0),
    "RS": (0, 2, 0),
    "G": (0, 4, 0),
    "RP": (0, 8, 0),
    "X": (0, 16, 0),
    "B": (0, 32, 0),
}
#: Signal level ranges by level mode (V rms, V rms, A rms).
LEVEL_RANGES = {"V": (5e-3, 5.0), "CV": (5e-3, 5.0), "CC": (10e-6, 50e-3)}
LEVEL_COMMANDS = {"V": ":LEV:VOLT", "CV": ":LEV:CVOLT", "CC": ":LEV:CCURR"}
DC_BIAS_RANGE_VOLT = (-2.5, 2.5)
#: Replies at or above this magnitude are the instrument's over-range marker (9.9999E+19).
OVER_RANGE = 9.9e19
PARAMETER_SETS = {"Z-PHASE": ("Z", "PHAS"), "RS-X": ("RS", "X")}


def item_registers(*parameters: str) -> tuple[int, int, int]:
    """``:MEAS:ITEM`` register values selecting ``parameters`` (e.g. ``("Z", "PHAS")``)."""
    registers = [0, 0, 0]
    for parameter in parameters:
        for index, bits in enumerate(ITEM_BITS[parameter]):
            registers[index] |= bits
    return registers[0], registers[1], registers[2]


def parse_measurement(reply: str) -> tuple[list[int], list[float]]:
    """Split a ``:MEAS?`` reply into integer fields (status, judgments, panel) and NR3 values."""
    integers: list[int] = []
    values: list[float] = []
    for field in reply.split(","):
        text = field.strip()
        if not text:
            continue
        if "E" in text.upper() or "." in text:
            values.append(float(text))
        else:
            integers.append(int(text))
    return integers, values


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
    frequency_hertz = line_property(
        ":FREQ?",
        ":FREQ {}",
        name="frequency",
        check=(*FREQUENCY_RANGE_HERTZ, "Hz"),
        to_wire=lambda v: format_number(v),
    )
    trigger_source = line_property(
        ":TRIG?", ":TRIG {}", name="trigger source", mapping={"internal": "INT", "external": "EXT"}
    )
    dc_bias_enabled = line_property(
        ":DCB?", ":DCB {}", name="DC bias", mapping={True: "ON", False: "OFF"}
    )
    dc_bias_volt = line_property(
        ":DCB:LEV?",
        ":DCB:LEV {}",
        name="DC bias",
        check=(*DC_BIAS_RANGE_VOLT, "V"),
        to_wire=lambda v: format_number(v),
    )
    measurement_mode = line_property(
        ":MODE?", ":MODE {}", name="measurement mode", values=("LCR", "ANAL", "CONT"),
        to_wire=str, parse=lambda s: s.strip().upper(),
    )  # fmt: skip
    level_mode = line_property(
        ":LEV?", ":LEV {}", name="signal level mode", values=tuple(LEVEL_RANGES), to_wire=str,
        parse=lambda s: s.strip().upper(),
    )  # fmt: skip
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
        self.trigger_source = "external"  # one measurement per *TRG, at the frequency just set

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
        mr0, mr1, mr2 = item_registers(first, second)
        with self.transport.lock:
            self.measurement_mode = "LCR"
            for index, parameter in enumerate((first, "OFF", second, "OFF"), start=1):
                self._write(f":PAR{index} {parameter}")  # four numbered settings
            self._write(f":MEAS:ITEM {mr0},{mr1},{mr2}")
            self.level_mode = mode
            self._write(f"{LEVEL_COMMANDS[mode]} {format_number(level)}")
            if dc_bias_volt is None:
                self.dc_bias_enabled = False
            else:
                self.dc_bias_volt = bias
                self.dc_bias_enabled = True
            self.check_errors(after=":MODE; :PAR1..4; :MEAS:ITEM; :LEV; :DCB")

    def measure_point(self, frequency_hertz: float) -> complex:
        """Set the frequency and measure once; the impedance, ohm (Z'' negative = capacitive)."""
        frequency = self.check_range("frequency", frequency_hertz, *FREQUENCY_RANGE_HERTZ, "Hz")
        command = ":MEAS?"
        with self.transport.lock:
            self.frequency_hertz = frequency
            self._write("*TRG")  # external trigger: one measurement at the new frequency
            wait_s = self.timeout_s + self.settle_periods / frequency
            reply = self._query(command, timeout_s=wait_s)
        try:
            integers, values = parse_measurement(reply)
        except ValueError:
            raise self._reply_error(f"unreadable measurement {reply!r}", command) from None
        if len(values) != 2:
            raise self._reply_error(
                f"expected the 2 values selected by :MEAS:ITEM, got {reply!r}", command
            )
        a, b = values
        if abs(a) >= OVER_RANGE or abs(b) >= OVER_RANGE:
            raise InstrumentRangeError(
                f"over-range at {frequency:g} Hz (reply {reply!r}); choose another range or "
                "amplitude",
                instrument=self.name,
                address=self.address,
                command=command,
            )
        if integers and integers[0] != 0:
            raise InstrumentRangeError(
                f"measurement status {integers[0]} at {frequency:g} Hz (reply {reply!r}): "
                "over/under range or contact error; choose another range or amplitude",
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
        self.dc_bias_enabled = False
        if self.dc_bias_enabled:
            raise InstrumentCommandError(
                "DC bias still on after :DCB OFF",
                instrument=self.name,
                address=self.address,
                command=":DCB OFF",
            )
