"""What the engine needs from an instrument, by role. Drivers implement these methods.

The acquisition engine only talks to instruments through these roles, so a station can put any
driver (or its simulator, through the same driver) in any role it can fill. Units are in the
names: seconds, volts, amperes, hertz, degrees Celsius, megapascals. Current is positive on charge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import polars as pl


@dataclass(frozen=True)
class Reading:
    """One source-measure reading."""

    voltage_volt: float
    current_ampere: float
    timestamp_second: float | None = None  # instrument time if it gives one


@runtime_checkable
class Instrument(Protocol):
    name: str
    address: str

    def identify(self) -> str:
        """The instrument's identity string (``*IDN?`` or equivalent)."""

    def safe_state(self) -> None:
        """Output off / high impedance. Must be safe to call at any time, more than once."""

    def close(self) -> None: ...


@runtime_checkable
class SourceMeter(Instrument, Protocol):
    """A cycler channel, an SMU or a potentiostat channel: sources and measures one cell."""

    def source_current(self, current_ampere: float, *, voltage_limit_volt: float) -> None:
        """Output on, constant current, with a voltage compliance."""

    def source_voltage(self, voltage_volt: float, *, current_limit_ampere: float) -> None:
        """Output on, constant voltage, with a current compliance."""

    def output_off(self) -> None:
        """Open circuit (high impedance) — the cell rests; also what safe_state() does."""

    def measure(self) -> Reading:
        """Measure voltage and current now."""


@runtime_checkable
class ImpedanceAnalyzer(Instrument, Protocol):
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
        """A log sweep from start to stop; frame of frequency_hertz, z_real_ohm, z_imag_ohm."""


@runtime_checkable
class TemperatureController(Instrument, Protocol):
    def read_temperature_celsius(self) -> float: ...

    def set_temperature_celsius(self, setpoint_celsius: float) -> None: ...


@runtime_checkable
class PressureGauge(Instrument, Protocol):
    def read_pressure_megapascal(self) -> float: ...


@runtime_checkable
class SafetyProgrammable(Protocol):
    """An instrument that keeps safety limits of its own (a cycler channel): the engine programs
    the protocol's before anything is sourced, so that a dead logger cannot exceed them. A limit
    the protocol does not set is None; a driver that needs it refuses (one clear error)."""

    def program_safety_limits(
        self,
        *,
        voltage_min_volt: float | None,
        voltage_max_volt: float | None,
        current_max_ampere: float | None,
    ) -> None: ...


@dataclass(frozen=True)
class CyclerRecord:
    """One record of a cycler channel. Units: s, V, A (positive on charge)."""

    test_time_second: float
    voltage_volt: float
    current_ampere: float
    cycle: int
    step: int
    step_kind: str


@dataclass
class CyclerPoll:
    """What a poll of a schedule-running channel found: its state and the new records.

    ``state``: ``running``, ``finished``, ``stopped``, ``faulted`` or ``idle``.
    """

    state: str
    records: list[CyclerRecord] = field(default_factory=list)
    detail: str = ""


@runtime_checkable
class ScheduleChannel(Instrument, Protocol):
    """A cycler channel that runs a schedule by itself (a Neware BTS step file, a Maccor
    procedure) and is logged by polling: ``runs_own_schedule`` is True. The engine starts a
    translated protocol with ``start_schedule`` (or, monitoring, calls ``attach``) and then
    records what ``poll`` returns."""

    runs_own_schedule: bool

    def attach(self) -> None: ...

    def poll(self) -> CyclerPoll: ...
