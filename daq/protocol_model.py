"""Test protocols, the model: the steps, limits and end conditions the engine runs.

A protocol is read from TOML by :mod:`cellbench.daq.protocol_loader` (which checks everything
before anything touches an instrument); :mod:`cellbench.daq.protocol` gathers both. Values are in
SI units named in the field (``current_ampere``, ``duration_second``); C-rates and current
densities are resolved with the cell's nominal capacity and area (NaN while unresolved, listed in
:attr:`Protocol.unresolved`). Steps are numbered depth-first from 0 (``Step.index``, the BDF
``step_index``); a loop has its own index, before its body's. Each step has a one-line
:meth:`Step.summary`, which is also its name when the file gives none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cellbench.core import units
from cellbench.core.schema import Cell

__all__ = [
    "CC",
    "CCCV",
    "CCD",
    "CV",
    "EIS",
    "GITT",
    "STEP_TYPES",
    "Ends",
    "Limits",
    "Loop",
    "LoopUntil",
    "Ocv",
    "Pressure",
    "Protocol",
    "Pulse",
    "Rest",
    "Step",
    "Temperature",
    "Unresolved",
]


@dataclass(frozen=True)
class Limits:
    """Safety limits; None where not set. A breach aborts the run (outputs to their safe state).

    ``current_max_ampere`` bounds |current|; temperatures are upper bounds; stack pressure has
    both (``pressure_min_megapascal``: a press that lost its load, a cell that lost contact).
    """

    voltage_min_volt: float | None = None
    voltage_max_volt: float | None = None
    current_max_ampere: float | None = None
    temperature_max_celsius: float | None = None
    pressure_max_megapascal: float | None = None
    pressure_min_megapascal: float | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def merged(self, inner: Limits | None) -> Limits:
        """These limits tightened by ``inner`` (a step's own limits): the stricter of each."""
        if inner is None:
            return self

        def pick(a: float | None, b: float | None, stricter: Callable[..., float]) -> float | None:
            if a is None:
                return b
            if b is None:
                return a
            return stricter(a, b)

        return Limits(
            voltage_min_volt=pick(self.voltage_min_volt, inner.voltage_min_volt, max),
            voltage_max_volt=pick(self.voltage_max_volt, inner.voltage_max_volt, min),
            current_max_ampere=pick(self.current_max_ampere, inner.current_max_ampere, min),
            temperature_max_celsius=pick(
                self.temperature_max_celsius, inner.temperature_max_celsius, min
            ),
            pressure_max_megapascal=pick(
                self.pressure_max_megapascal, inner.pressure_max_megapascal, min
            ),
            pressure_min_megapascal=pick(
                self.pressure_min_megapascal, inner.pressure_min_megapascal, max
            ),
        )


@dataclass(frozen=True)
class Ends:
    """Conditions that end a step; the first one met ends it. None where not set.

    Voltages compare with the measured cell voltage; ``current_below_ampere`` with |current|;
    ``capacity_ampere_hour`` with the charge passed during the step (absolute value);
    ``time_second`` with the step's elapsed time.
    """

    voltage_above_volt: float | None = None
    voltage_below_volt: float | None = None
    current_below_ampere: float | None = None
    time_second: float | None = None
    capacity_ampere_hour: float | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


@dataclass(frozen=True)
class LoopUntil:
    """Conditions that end a loop, checked after each iteration; None where not set.

    ``discharge_capacity_below_fraction``: the iteration's discharge capacity fell below this
    fraction of the first iteration's (e.g. 0.8: end of life at 80 % retention).
    ``discharge_capacity_below_ampere_hour``: the same against an absolute capacity.
    ``time_second``: the loop has run this long.
    """

    discharge_capacity_below_fraction: float | None = None
    discharge_capacity_below_ampere_hour: float | None = None
    time_second: float | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


@dataclass(frozen=True, kw_only=True)
class Step:
    """What every step has.

    ``index``: unique, depth-first from 0 (the BDF ``step_index``). ``kind``: the ``type`` as
    written (``"cc"``, ``"hppc"``...). ``name``: as written, else a generated summary. ``line``:
    the line of the step in the file. ``limits``: the step's own safety limits (tightening the
    run's while it runs). ``record_interval_second``/``record_dv_volt``: record a sample at most
    this often / whenever the voltage moved this much (None: every sample is recorded).
    """

    index: int
    kind: str = ""
    name: str = ""
    line: int = 0
    limits: Limits | None = None
    record_interval_second: float | None = None
    record_dv_volt: float | None = None

    def summary(self) -> str:
        """One line for people: what the step does, in units they write."""
        return self.kind


@dataclass(frozen=True, kw_only=True)
class Rest(Step):
    """Open circuit for a duration."""

    kind: str = "rest"
    duration_second: float

    def summary(self) -> str:
        return f"rest {_t(self.duration_second)}"


@dataclass(frozen=True, kw_only=True)
class Ocv(Step):
    """Open circuit for a duration, recording the open-circuit voltage (its relaxation)."""

    kind: str = "ocv"
    duration_second: float

    def summary(self) -> str:
        return f"ocv {_t(self.duration_second)}"


@dataclass(frozen=True, kw_only=True)
class CC(Step):
    """Constant current (positive = charge) until an end condition.

    ``voltage_limit_volt``: the source's voltage compliance — the voltage it will not pass, an upper
    bound when charging and a lower bound when discharging (from ``voltage_limit`` or the run's
    safety window).
    """

    kind: str = "cc"
    current_ampere: float
    voltage_limit_volt: float
    ends: Ends

    def summary(self) -> str:
        return f"cc {_a(self.current_ampere)} {_ends_text(self.ends)}"


@dataclass(frozen=True, kw_only=True)
class CV(Step):
    """Constant voltage, with a current compliance, until the current falls or time runs out."""

    kind: str = "cv"
    voltage_volt: float
    current_limit_ampere: float
    ends: Ends

    def summary(self) -> str:
        return f"cv {_v(self.voltage_volt)} {_ends_text(self.ends)}"


@dataclass(frozen=True, kw_only=True)
class CCCV(Step):
    """Constant current up (or down) to a voltage, then hold it until |I| < end current.

    ``max_duration_second``: the whole step ends after this long (None: no time limit).
    """

    kind: str = "cccv"
    current_ampere: float
    voltage_volt: float
    end_current_ampere: float
    max_duration_second: float | None = None

    def summary(self) -> str:
        out = f"cccv {_a(self.current_ampere)} to {_v(self.voltage_volt)}"
        out += f" until |I| < {_a(self.end_current_ampere)}"
        if self.max_duration_second is not None:
            out += f" or t > {_t(self.max_duration_second)}"
        return out


@dataclass(frozen=True, kw_only=True)
class EIS(Step):
    """An impedance sweep, log-spaced from start to stop.

    ``amplitude`` is in ``amplitude_unit`` ("V": potentiostatic, "A": galvanostatic).
    ``dc_bias_volt``: None measures at open circuit. ``every_cycles``: inside a loop, run only on
    iterations 0, N, 2N... (None: every time the step is reached).
    """

    kind: str = "eis"
    start_hertz: float
    stop_hertz: float
    points_per_decade: int
    amplitude: float
    amplitude_unit: str
    dc_bias_volt: float | None = None
    every_cycles: int | None = None
    # repeat until consecutive sweeps agree (cellbench.daq.eis_equilibrium); None: one sweep
    drift_max_fraction: float | None = None
    max_sweeps: int = 1
    temperature_drift_max_kelvin: float | None = None
    sweep_wait_second: float = 0.0

    def summary(self) -> str:
        from cellbench.daq.eis_equilibrium import summary as repeats

        amp = _v(self.amplitude) if self.amplitude_unit == "V" else _a(self.amplitude)
        bias = "at OCV" if self.dc_bias_volt is None else f"at {_v(self.dc_bias_volt)}"
        out = (
            f"eis {_hz(self.start_hertz)} → {_hz(self.stop_hertz)}, "
            f"{self.points_per_decade}/decade, {amp} {bias}"
        )
        if self.every_cycles is not None:
            out += f", every {self.every_cycles} cycles"
        return out + repeats(self)


@dataclass(frozen=True, kw_only=True)
class Pulse(Step):
    """Current pulses: ``count`` times (pulse at current, rest); ``kind`` "pulse" or "hppc".

    ``charge_current_ampere`` (HPPC): after each pulse and its rest, a pulse of this current
    (opposite sign) and another rest. ``ends``: voltage bounds that end the step early.
    """

    kind: str = "pulse"
    current_ampere: float
    pulse_second: float
    rest_second: float
    count: int = 1
    charge_current_ampere: float | None = None
    ends: Ends = field(default_factory=Ends)

    def summary(self) -> str:
        out = f"{self.kind} {self.count} × ({_a(self.current_ampere)} {_t(self.pulse_second)}"
        out += f", rest {_t(self.rest_second)}"
        if self.charge_current_ampere is not None:
            out += f", {_a(self.charge_current_ampere)} {_t(self.pulse_second)}"
            out += f", rest {_t(self.rest_second)}"
        return out + ")" + (f" {_ends_text(self.ends)}" if not self.ends.is_empty() else "")


@dataclass(frozen=True, kw_only=True)
class GITT(Step):
    """Galvanostatic intermittent titration: pulse, rest, repeated until ``ends`` (or ``count``)."""

    kind: str = "gitt"
    current_ampere: float
    pulse_second: float
    rest_second: float
    ends: Ends
    count: int | None = None

    def summary(self) -> str:
        out = (
            f"gitt {_a(self.current_ampere)} {_t(self.pulse_second)} / rest {_t(self.rest_second)}"
        )
        if self.count is not None:
            out += f" × {self.count}"
        return out + (f" {_ends_text(self.ends)}" if not self.ends.is_empty() else "")


@dataclass(frozen=True, kw_only=True)
class CCD(Step):
    """Critical current density staircase on a symmetric cell.

    Each current level is applied ``cycles_per_step`` times as +I for ``half_cycle_second`` then
    -I for as long; the level rises by ``step_ampere`` from ``start_ampere`` to ``max_ampere``.
    A short ends the step: |V| falls below ``short_voltage_fraction`` of the half-cycle's peak |V|,
    or below ``short_min_voltage_volt`` while current flows. ``area_cm2`` (None if unknown)
    converts back to current density for reports.
    """

    kind: str = "ccd"
    start_ampere: float
    step_ampere: float
    max_ampere: float
    half_cycle_second: float
    short_voltage_fraction: float
    short_min_voltage_volt: float
    area_cm2: float | None
    cycles_per_step: int = 1

    def levels_ampere(self) -> list[float]:
        """The current levels of the staircase, in A."""
        if not all(
            math.isfinite(x) for x in (self.start_ampere, self.step_ampere, self.max_ampere)
        ):
            return []
        n = math.floor((self.max_ampere - self.start_ampere) / self.step_ampere + 1e-9) + 1
        return [self.start_ampere + k * self.step_ampere for k in range(max(n, 0))]

    def summary(self) -> str:
        def j(a: float) -> str:
            if self.area_cm2 and math.isfinite(a):
                return f"{a / self.area_cm2 * 1e3:.4g} mA/cm2"
            return _a(a)

        return (
            f"ccd {j(self.start_ampere)} + {j(self.step_ampere)} → {j(self.max_ampere)}, "
            f"±{_t(self.half_cycle_second)} × {self.cycles_per_step}; short if |V| < "
            f"{self.short_voltage_fraction:.0%} of peak or < {_v(self.short_min_voltage_volt)}"
        )


@dataclass(frozen=True, kw_only=True)
class Temperature(Step):
    """Set the chamber and wait until |T - setpoint| <= tolerance for ``stable_second``, then soak.

    If that takes longer than ``timeout_second`` the run aborts with an alarm.
    """

    kind: str = "temperature"
    setpoint_celsius: float
    tolerance_celsius: float
    stable_second: float
    timeout_second: float
    soak_second: float = 0.0

    def summary(self) -> str:
        out = f"temperature {self.setpoint_celsius:g} °C ± {self.tolerance_celsius:g} K"
        out += f" stable {_t(self.stable_second)}"
        if self.soak_second:
            out += f", soak {_t(self.soak_second)}"
        return out + f" (timeout {_t(self.timeout_second)})"


@dataclass(frozen=True, kw_only=True)
class Pressure(Step):
    """Set the press to a stack pressure and wait until |p - setpoint| <= tolerance for
    ``stable_second`` (read on the press's load cell), then soak. A timeout aborts the run.

    ``rate_megapascal_per_second``: how fast the press changes the load (None: its own rate).
    """

    kind: str = "pressure"
    setpoint_megapascal: float
    tolerance_megapascal: float
    stable_second: float
    timeout_second: float
    soak_second: float = 0.0
    rate_megapascal_per_second: float | None = None

    def summary(self) -> str:
        out = f"pressure {self.setpoint_megapascal:g} MPa ± {self.tolerance_megapascal:g} MPa"
        out += f" stable {_t(self.stable_second)}"
        if self.soak_second:
            out += f", soak {_t(self.soak_second)}"
        return out + f" (timeout {_t(self.timeout_second)})"


@dataclass(frozen=True, kw_only=True)
class Loop(Step):
    """Repeat ``steps``: ``repeat`` times, or until ``until`` holds, at most ``max_repeat`` times.

    Each iteration is one cycle (the BDF ``cycle_count`` advances at the start of each).
    """

    kind: str = "loop"
    steps: tuple[Step, ...]
    repeat: int | None
    until: LoopUntil | None
    max_repeat: int

    def summary(self) -> str:
        if self.until is None:
            return f"loop × {self.repeat}"
        parts = []
        u = self.until
        if u.discharge_capacity_below_fraction is not None:
            parts.append(f"discharge capacity < {u.discharge_capacity_below_fraction:.0%} of first")
        if u.discharge_capacity_below_ampere_hour is not None:
            parts.append(f"discharge capacity < {_ah(u.discharge_capacity_below_ampere_hour)}")
        if u.time_second is not None:
            parts.append(f"t > {_t(u.time_second)}")
        return f"loop until {' or '.join(parts)} (at most {self.max_repeat})"


STEP_TYPES: dict[str, type[Step]] = {
    "rest": Rest,
    "ocv": Ocv,
    "cc": CC,
    "cv": CV,
    "cccv": CCCV,
    "eis": EIS,
    "pulse": Pulse,
    "hppc": Pulse,
    "gitt": GITT,
    "ccd": CCD,
    "temperature": Temperature,
    "pressure": Pressure,
    "loop": Loop,
}


@dataclass(frozen=True)
class Unresolved:
    """A quantity that needs the cell (C-rate: nominal capacity; current density: area).

    Loaded without a cell, its field holds NaN; load with the station's cell to resolve it.
    """

    step_index: int
    line: int
    key: str
    text: str
    needs: str  # "nominal_capacity_ah" or "area_cm2"


@dataclass(frozen=True)
class Protocol:
    """A loaded, checked protocol. ``text`` is the file as written (kept with the run)."""

    name: str
    path: Path | None
    text: str
    sample_interval_second: float
    safety: Limits
    steps: tuple[Step, ...]
    description: str = ""
    unresolved: tuple[Unresolved, ...] = ()

    def walk(self) -> Iterator[tuple[Step, int]]:
        """Every step depth-first (index order) with its loop depth (0 at top level)."""

        def visit(steps: tuple[Step, ...], depth: int) -> Iterator[tuple[Step, int]]:
            for s in steps:
                yield s, depth
                if isinstance(s, Loop):
                    yield from visit(s.steps, depth + 1)

        yield from visit(self.steps, 0)

    def step(self, index: int) -> Step:
        """The step with this ``index`` (KeyError if there is none)."""
        for s, _ in self.walk():
            if s.index == index:
                return s
        raise KeyError(f"protocol {self.name!r} has no step {index}")

    @property
    def step_count(self) -> int:
        """Number of step indices (loops included)."""
        return sum(1 for _ in self.walk())

    @property
    def is_resolved(self) -> bool:
        return not self.unresolved

    def kinds(self) -> set[str]:
        return {s.kind for s, _ in self.walk()}

    def with_cell(self, cell: Cell | None) -> Protocol:
        """The same protocol with C-rates and current densities resolved from ``cell``."""
        from cellbench.daq.protocol_loader import parse_protocol

        return parse_protocol(
            self.text, source=str(self.path) if self.path else "<string>", cell=cell, path=self.path
        )

    def to_dict(self) -> dict[str, Any]:
        """What ``run.json`` keeps: identity, the text as written and the resolved safety limits."""
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "description": self.description,
            "sample_interval_second": self.sample_interval_second,
            "safety": {f.name: getattr(self.safety, f.name) for f in fields(self.safety)},
            "step_count": self.step_count,
            "text": self.text,
        }


# --------------------------------------------------------------------------------------------------
# Display helpers (summaries and the loader's messages)
# --------------------------------------------------------------------------------------------------


def _a(amp: float) -> str:
    return "? A" if math.isnan(amp) else units.format_quantity(amp, units.CURRENT)


def _v(volt: float) -> str:
    return units.format_quantity(volt, units.VOLTAGE)


def _hz(hertz: float) -> str:
    return units.format_quantity(hertz, units.FREQUENCY)


def _t(second: float) -> str:
    return units.format_quantity(second, units.TIME)


def _ah(ah: float) -> str:
    return "? Ah" if math.isnan(ah) else units.format_quantity(ah * 3600.0, units.CAPACITY)


def _ends_text(e: Ends) -> str:
    parts = []
    if e.voltage_above_volt is not None:
        parts.append(f"V > {_v(e.voltage_above_volt)}")
    if e.voltage_below_volt is not None:
        parts.append(f"V < {_v(e.voltage_below_volt)}")
    if e.current_below_ampere is not None:
        parts.append(f"|I| < {_a(e.current_below_ampere)}")
    if e.capacity_ampere_hour is not None:
        parts.append(f"Q > {_ah(e.capacity_ampere_hour)}")
    if e.time_second is not None:
        parts.append(f"t > {_t(e.time_second)}")
    return "until " + " or ".join(parts) if parts else ""
