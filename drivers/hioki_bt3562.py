"""Hioki BT3562 / BT3563 battery HiTester (AC resistance at 1 kHz and DC voltage) over RS-232.

Follows the Hioki "BT3562/BT3563 Battery HiTester Instruction Manual", chapter "External
control — RS-232C / communication commands": 9600 baud 8-N-1, commands and replies end in CR+LF,
replies without headers (``:SYSTem:HEADer OFF``).

====================================  ==============================================
command                               meaning
====================================  ==============================================
``:FUNC RV`` / ``:FUNC RES`` / ``VOLT``  measure resistance and voltage / one of them
``:RES:RANG 3E-3`` ... ``3E+3``       resistance range, ohm (3 mohm .. 3 kohm)
``:VOLT:RANG 6`` / ``60`` (``300``)   voltage range, V (300 V: BT3563 only)
``:AUT ON|OFF``                       auto-ranging
``:SAMP:RATE EXFast|FAST|MEDium|SLOW``  sampling speed
``:INIT:CONT OFF``                    stop free-run; a ``:READ?`` then triggers one reading
``:READ?`` -> ``"1.2345E-03,3.81230E+00"``  trigger and fetch (R ohm, V volt in RV mode)
``:FETC?``                            the last reading again
====================================  ==============================================

An over-range reading is reported as ``+9.9999E+37`` ("OvrRng" on the display) and raised as
:class:`InstrumentRangeError`; rejected commands set ``*ESR?`` error bits, raised as
:class:`InstrumentCommandError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cellbench.drivers.errors import (
    ArgumentRangeError,
    InstrumentCommandError,
    InstrumentRangeError,
)
from cellbench.drivers.hioki_base import HiokiDriver

RESISTANCE_RANGES_OHM = (3e-3, 30e-3, 300e-3, 3.0, 30.0, 300.0, 3000.0)
VOLTAGE_RANGES_VOLT = {"BT3562": (6.0, 60.0), "BT3563": (6.0, 60.0, 300.0)}
SAMPLE_RATE_NAMES = {
    "EXF": "EXF",
    "EXFAST": "EXF",
    "FAST": "FAST",
    "MED": "MED",
    "MEDIUM": "MED",
    "SLOW": "SLOW",
}
#: Replies at or above this magnitude are the over-range marker (+9.9999E+37).
OVER_RANGE = 9.9e37


@dataclass(frozen=True)
class ResistanceVoltage:
    """One BT3562 reading: AC resistance at 1 kHz, ohm, and DC voltage, V."""

    resistance_ohm: float
    voltage_volt: float


class HiokiBT3562(HiokiDriver):
    """Hioki BT3562/BT3563 battery tester: AC internal resistance and open-circuit voltage.

    Args:
        model_name: ``"BT3562"`` (60 V) or ``"BT3563"`` (300 V); taken from ``*IDN?`` if None.
    """

    model = "bt3562"
    read_termination = "\r\n"
    write_termination = "\r\n"
    baud_rate = 9600

    def __init__(self, address: str, *, model_name: str | None = None, **kwargs):
        super().__init__(address, **kwargs)
        self._write(":SYST:HEAD OFF")
        self._write(":INIT:CONT OFF")
        self.model_name = (model_name or self.identify().split(",")[1]).upper()
        if self.model_name not in VOLTAGE_RANGES_VOLT:
            self.model_name = "BT3562"

    def configure(
        self,
        *,
        resistance_range_ohm: float | None = None,
        voltage_range_volt: float | None = None,
        sample_rate: str = "MED",
    ) -> None:
        """RV function; fixed ranges where given, else auto-ranging; sampling speed."""
        commands = [":FUNC RV"]
        if resistance_range_ohm is None and voltage_range_volt is None:
            commands.append(":AUT ON")
        else:
            commands.append(":AUT OFF")
            if resistance_range_ohm is not None:
                picked = self._pick(
                    "resistance range", resistance_range_ohm, RESISTANCE_RANGES_OHM, "ohm"
                )
                commands.append(f":RES:RANG {picked}")
            if voltage_range_volt is not None:
                allowed = VOLTAGE_RANGES_VOLT[self.model_name]
                picked = self._pick("voltage range", voltage_range_volt, allowed, "V")
                commands.append(f":VOLT:RANG {picked}")
        rate = SAMPLE_RATE_NAMES.get(sample_rate.upper())
        if rate is None:
            raise ArgumentRangeError(
                f"sample rate {sample_rate!r} is not one of EXFast, FAST, MEDium, SLOW",
                instrument=self.name,
                address=self.address,
            )
        commands.append(f":SAMP:RATE {rate}")
        with self.transport.lock:
            for command in commands:
                self._write(command)
            self.check_errors(after="; ".join(commands))

    def _pick(self, what: str, value: float, allowed: tuple[float, ...], unit: str) -> str:
        for candidate in allowed:
            if abs(float(value) - candidate) <= 1e-9 * candidate:
                return f"{candidate:G}"
        raise ArgumentRangeError(
            f"{what} {value!r} {unit} is not one of {', '.join(f'{a:g}' for a in allowed)} {unit}",
            instrument=self.name,
            address=self.address,
        )

    def read(self) -> ResistanceVoltage:
        """Trigger one reading (``:READ?``) in RV mode; ohm and volt."""
        command = ":READ?"
        reply = self._query(command)
        fields = reply.split(",")
        if len(fields) != 2:
            raise self._reply_error(f"expected resistance,voltage; got {reply!r}", command)
        resistance, voltage = (self._number(field, command) for field in fields)
        for what, value in (("resistance", resistance), ("voltage", voltage)):
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
        self._write(":INIT:CONT OFF")
        state = self._query(":INIT:CONT?").strip().upper()
        if state not in ("OFF", "0"):
            raise InstrumentCommandError(
                f"free-run still {state!r} after :INIT:CONT OFF",
                instrument=self.name,
                address=self.address,
                command=":INIT:CONT OFF",
            )
