"""Hioki BT3562/BT3563 battery HiTesters (AC resistance at 1 kHz and DC voltage) over RS-232.

Follows the Hioki *BT3562A/BT3561A/BT3563/BT3563-01/BT3562/BT3562-01 Battery HiTester
Instruction Manual* (BT3562A981-09 and -11), chapter 8 "RS-232C/GP-IB/LAN Interfaces": 9600 baud
8-N-1, commands and replies end in CR+LF, replies without headers (``:SYSTem:HEADer OFF``).

Command table (M = that manual; pages of edition -09):

- ``:SYST:HEAD OFF``, ``:INIT:CONT OFF`` (no reply). M 8.6 (headers off; a ``:READ?`` then
  triggers exactly one measurement).
- ``*IDN?`` -> ``HIOKI,<model>,0,<version>``; model one of BT3562, BT3562-01, BT3562A,
  BT3563, BT3563-01, BT3563A (M 8.6 "*IDN?"; the BT3561A answers too but is not a BT356x
  voltage meter this driver models). Any other model is an error, never a silent BT3562.
- ``:FUNC RV|RES|VOLT``; ``:AUT ON|OFF``; ``:RES:RANG 3E-3 .. 3E+3``;
  ``:VOLT:RANG 6|60|100|300`` (100 V: BT3562A only; 300 V: BT3563, BT3563-01, BT3563A only,
  M p. 159 footnotes); ``:SAMP:RATE EXF|FAST|MED|SLOW`` (no reply). M 8.6.
- ``:READ?`` / ``:FETC?`` -> ``<R>,<V>`` in RV mode. M p. 159 "Measurement Value Formats": the
  sign position is a blank for positive values and unneeded zeros left of the decimal point
  are blanks (``-0007.51E+0`` is sent as ``-   7.51E+0``), so the parser drops blanks inside a
  field. ±OF (over range) reads ``±10.0000E+8`` / ``±100.000E+7`` / ``±1000.00E+6`` /
  ``±1.00000E+9`` — all 1E+9 — and a measurement fault (contact/lead-break check) ``+10.0000E+9``
  class — all 1E+10; the driver raises InstrumentRangeError for each, naming which.
- ``*ESR?`` -> ``0``..``255``; bits 2-5 = the previous commands were refused (M 8.5).
- ``:INIT:CONT?`` -> ``ON``/``OFF`` (confirmation in :meth:`HiokiBT3562.safe_state`).

Not settled by the pages we could read: how long the manual asks to wait after a settings change
before the first reading (the driver waits ``settle_s``, 0.5 s by default, once after a
:meth:`HiokiBT3562.configure` that changed something — a generous figure, configurable) and
whether every firmware pads fields exactly as printed (the parser accepts padded and unpadded
numbers alike).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from cellbench.drivers.errors import (
    ArgumentRangeError,
    InstrumentCommandError,
    InstrumentRangeError,
)
from cellbench.drivers.hioki_base import HiokiDriver
from cellbench.drivers.line_driver import line_property

RESISTANCE_RANGES_OHM = (3e-3, 30e-3, 300e-3, 3.0, 30.0, 300.0, 3000.0)
#: voltage ranges per model (M p. 159: 100 V on the BT3562A, 300 V on the BT3563 family)
VOLTAGE_RANGES_VOLT = {
    "BT3562": (6.0, 60.0),
    "BT3562-01": (6.0, 60.0),
    "BT3562A": (6.0, 60.0, 100.0),
    "BT3563": (6.0, 60.0, 300.0),
    "BT3563-01": (6.0, 60.0, 300.0),
    "BT3563A": (6.0, 60.0, 300.0),
}
SAMPLE_RATES = {"EXFAST": "EXF", "EXF": "EXF", "FAST": "FAST", "MEDIUM": "MED", "MED": "MED",
                "SLOW": "SLOW"}  # fmt: skip
#: |reading| at or above this is the ±OF marker (every range: 1E+9, M p. 159)
OVER_RANGE = 0.999e9
#: reading at or above this is the measurement-fault marker (every range: 1E+10, M p. 159)
MEASUREMENT_FAULT = 0.999e10


@dataclass(frozen=True)
class ResistanceVoltage:
    """One BT356x reading: AC resistance at 1 kHz, ohm, and DC voltage, V."""

    resistance_ohm: float
    voltage_volt: float


def parse_value(field: str) -> float:
    """One reply field as the manual prints it: ``"-   7.51E+0"`` -> -7.51 (blanks dropped)."""
    text = "".join(field.split())
    if not text:
        raise ValueError(f"empty field {field!r}")
    return float(text)


def _range_text(value: float) -> str:
    return f"{value:G}"


class HiokiBT3562(HiokiDriver):
    """Hioki BT3562/BT3563 battery tester: AC internal resistance and open-circuit voltage.

    Args:
        model_name: the model (see :data:`VOLTAGE_RANGES_VOLT`); read from ``*IDN?`` if None.
            An unknown model raises :class:`InstrumentCommandError`.
        settle_s: wait after a settings change before the next reading, s.
    """

    model = "bt3562"
    read_termination = "\r\n"
    write_termination = "\r\n"
    baud_rate = 9600

    # -- one-command settings (M 8.6) -------------------------------------------------------
    function = line_property(
        ":FUNC?", ":FUNC {}", name="function", values=("RV", "RES", "VOLT"), to_wire=str,
        parse=lambda s: s.strip().upper(),
    )  # fmt: skip
    auto_range = line_property(
        ":AUT?", ":AUT {}", name="auto-ranging", mapping={True: "ON", False: "OFF"}
    )
    resistance_range_ohm = line_property(
        ":RES:RANG?", ":RES:RANG {}", name="resistance range", values=RESISTANCE_RANGES_OHM,
        to_wire=_range_text, parse=parse_value,
    )  # fmt: skip
    voltage_range_volt = line_property(
        ":VOLT:RANG?", ":VOLT:RANG {}", name="voltage range", values=(6.0, 60.0, 100.0, 300.0),
        to_wire=_range_text, parse=parse_value,
    )  # fmt: skip
    sample_rate = line_property(
        ":SAMP:RATE?", ":SAMP:RATE {}", name="sample rate", mapping=SAMPLE_RATES
    )
    continuous = line_property(
        ":INIT:CONT?", ":INIT:CONT {}", name="free-run", mapping={True: "ON", False: "OFF"}
    )

    def __init__(
        self, address: str, *, model_name: str | None = None, settle_s: float = 0.5, **kwargs
    ):
        super().__init__(address, **kwargs)
        self.settle_s = self.check_range("settle_s", settle_s, 0.0, 60.0, "s")
        self._settled_at = 0.0  # time.monotonic() before which a reading would be early
        self._write(":SYST:HEAD OFF")
        self.continuous = False
        identity = self.identify() if model_name is None else ""
        if model_name is None:
            fields = identity.split(",")
            model_name = fields[1].strip() if len(fields) > 1 else identity
        key = model_name.strip().upper()
        if key not in VOLTAGE_RANGES_VOLT:
            raise InstrumentCommandError(
                f"unknown BT356x model {model_name!r}"
                + (f" (identity {identity!r})" if identity else "")
                + f"; known models: {', '.join(VOLTAGE_RANGES_VOLT)}",
                instrument=self.name,
                address=self.address,
                command="*IDN?" if identity else "",
            )
        self.model_name = key

    @property
    def voltage_ranges_volt(self) -> tuple[float, ...]:
        """The voltage ranges of this model, V."""
        return VOLTAGE_RANGES_VOLT[self.model_name]

    def configure(
        self,
        *,
        resistance_range_ohm: float | None = None,
        voltage_range_volt: float | None = None,
        sample_rate: str = "MED",
    ) -> None:
        """RV function; fixed ranges where given, else auto-ranging; sampling speed. Every
        argument is checked before anything is sent; ``*ESR?`` confirms the instrument took
        them; the next reading waits ``settle_s``."""
        if sample_rate.upper() not in SAMPLE_RATES:
            raise ArgumentRangeError(
                f"sample rate {sample_rate!r} is not one of EXFast, FAST, MEDium, SLOW",
                instrument=self.name,
                address=self.address,
                command=":SAMP:RATE",
            )
        if voltage_range_volt is not None and not any(
            abs(float(voltage_range_volt) - r) <= 1e-9 * r for r in self.voltage_ranges_volt
        ):
            raise ArgumentRangeError(
                f"voltage range {voltage_range_volt!r} V is not one of the {self.model_name}'s "
                f"{', '.join(f'{r:g}' for r in self.voltage_ranges_volt)} V",
                instrument=self.name,
                address=self.address,
                command=":VOLT:RANG",
            )
        if resistance_range_ohm is not None and not any(
            abs(float(resistance_range_ohm) - r) <= 1e-9 * r for r in RESISTANCE_RANGES_OHM
        ):
            raise ArgumentRangeError(
                f"resistance range {resistance_range_ohm!r} ohm is not one of "
                f"{', '.join(f'{r:g}' for r in RESISTANCE_RANGES_OHM)} ohm",
                instrument=self.name,
                address=self.address,
                command=":RES:RANG",
            )
        with self.transport.lock:
            self.function = "RV"
            fixed = resistance_range_ohm is not None or voltage_range_volt is not None
            self.auto_range = not fixed
            if resistance_range_ohm is not None:
                self.resistance_range_ohm = resistance_range_ohm
            if voltage_range_volt is not None:
                self.voltage_range_volt = voltage_range_volt
            self.sample_rate = sample_rate.upper()
            self.check_errors(after=":FUNC RV; :AUT; :RES:RANG; :VOLT:RANG; :SAMP:RATE")
            self._settled_at = time.monotonic() + self.settle_s

    def read(self) -> ResistanceVoltage:
        """Trigger one reading (``:READ?``) in RV mode; ohm and volt."""
        command = ":READ?"
        wait = self._settled_at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        reply = self._query(command)
        fields = reply.split(",")
        if len(fields) != 2:
            raise self._reply_error(f"expected resistance,voltage; got {reply!r}", command)
        try:
            resistance, voltage = (parse_value(field) for field in fields)
        except ValueError:
            raise self._reply_error(f"expected two numbers, got {reply!r}", command) from None
        for what, value in (("resistance", resistance), ("voltage", voltage)):
            if value >= MEASUREMENT_FAULT:
                raise InstrumentRangeError(
                    f"{what} measurement fault (reply {reply!r}): check the probe contacts and "
                    "leads (the instrument's contact check failed)",
                    instrument=self.name,
                    address=self.address,
                    command=command,
                )
            if abs(value) >= OVER_RANGE:
                raise InstrumentRangeError(
                    f"{what} over range (reply {reply!r}); select a higher range or auto-range",
                    instrument=self.name,
                    address=self.address,
                    command=command,
                )
        return ResistanceVoltage(resistance, voltage)

    def read_resistance_ohm(self) -> float:
        """AC resistance at 1 kHz, ohm."""
        return self.read().resistance_ohm

    def read_voltage_volt(self) -> float:
        """DC (open-circuit) voltage, V."""
        return self.read().voltage_volt

    def safe_state(self) -> None:
        """Stop free-running measurement (confirmed by ``:INIT:CONT?``): the 1 kHz test
        current then flows only during a triggered reading."""
        self.continuous = False
        if self.continuous:
            raise InstrumentCommandError(
                "free-run still on after :INIT:CONT OFF",
                instrument=self.name,
                address=self.address,
                command=":INIT:CONT OFF",
            )
