"""Test protocols: the TOML a technician writes, the step model the engine runs, and its loader.

A protocol file looks like this (``docs/protocols.md`` is the full reference)::

    name = "Formation and cycling, coin cell"
    sample_interval = "1 s"

    [safety]                      # run-wide; a breach aborts the run
    voltage_min = "2.5 V"
    voltage_max = "4.3 V"
    current_max = "5 mA"

    [[step]]
    type = "rest"
    duration = "10 min"

    [[step]]
    type = "cc"
    current = "C/10"
    until = { voltage_above = "4.2 V", time = "12 h" }

    [[step]]
    type = "loop"
    repeat = 20
    steps = [
      { type = "cccv", current = "C/2", voltage = "4.2 V", until = { current_below = "C/20" } },
      { type = "cc", current = "-C/2", until = { voltage_below = "3.0 V" } },
      { type = "eis", every = 5, start = "1 MHz", stop = "100 mHz", amplitude = "10 mV" },
    ]

:func:`load_protocol` reads and checks the whole file before anything touches an instrument and
raises one :class:`ProtocolError` listing every problem with its file, line and key. Values are
stored in SI units named in the field (``current_ampere``, ``duration_second``); C-rates and
current densities are resolved with the cell's nominal capacity and area. Steps are numbered
depth-first from 0 (``Step.index``, the BDF ``step_index``); a loop has its own index, before
its body's.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from cellbench.core import units
from cellbench.core.errors import CellbenchError
from cellbench.core.schema import Cell
from cellbench.core.units import UnitError
from cellbench.daq.toml_lines import KeyLines, format_path, key_lines

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
    "Problem",
    "Protocol",
    "ProtocolError",
    "Pulse",
    "Rest",
    "Step",
    "Temperature",
    "Unresolved",
    "load_protocol",
    "parse_protocol",
]


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One problem in a file: where (file, 1-based line, 0 if unknown; dotted key) and what."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ProtocolError(CellbenchError, ValueError):
    """A protocol (or a protocol with its station) that cannot run; ``problems`` lists them all."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]):
        self.problems: tuple[Problem, ...] = tuple(problems)
        head = f"{len(self.problems)} problem(s)"
        if self.problems:
            head += f" in {self.problems[0].file}"
        super().__init__(head + ":\n" + "\n".join(str(p) for p in self.problems))


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Safety limits; None where not set. A breach aborts the run (outputs to their safe state).

    ``current_max_ampere`` bounds |current|; temperatures and pressures are upper bounds.
    """

    voltage_min_volt: float | None = None
    voltage_max_volt: float | None = None
    current_max_ampere: float | None = None
    temperature_max_celsius: float | None = None
    pressure_max_megapascal: float | None = None

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

    def summary(self) -> str:
        amp = _v(self.amplitude) if self.amplitude_unit == "V" else _a(self.amplitude)
        bias = "at OCV" if self.dc_bias_volt is None else f"at {_v(self.dc_bias_volt)}"
        out = (
            f"eis {_hz(self.start_hertz)} → {_hz(self.stop_hertz)}, "
            f"{self.points_per_decade}/decade, {amp} {bias}"
        )
        if self.every_cycles is not None:
            out += f", every {self.every_cycles} cycles"
        return out


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
# Loading
# --------------------------------------------------------------------------------------------------


def load_protocol(path: Path | str, *, cell: Cell | None = None) -> Protocol:
    """Read and check a protocol file; ``cell`` resolves C-rates and current densities.

    Raises :class:`ProtocolError` listing every problem (file, line, key, message). Nothing here
    touches an instrument.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProtocolError([Problem(str(path), 0, "", "no such protocol file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError([Problem(str(path), 0, "", f"cannot read: {exc}")]) from None
    return parse_protocol(text, source=str(path), cell=cell, path=path)


def parse_protocol(
    text: str,
    *,
    source: str = "<string>",
    cell: Cell | None = None,
    path: Path | None = None,
) -> Protocol:
    """Check protocol TOML text and build the :class:`Protocol` (see :func:`load_protocol`)."""
    data = parse_toml(text, source)
    ctx = _Context(source, key_lines(text), cell)
    protocol = _build_protocol(ctx, data, text, path)
    if ctx.problems:
        raise ProtocolError(sorted(ctx.problems, key=lambda p: (p.line, p.key)))
    assert protocol is not None
    return protocol


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """tomllib with its syntax errors turned into a ProtocolError naming the file and line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line, column = getattr(exc, "lineno", 0) or 0, getattr(exc, "colno", 0) or 0
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)", message)
        if m:  # Python < 3.14 gives the position only in the message
            line, column = line or int(m.group(1)), column or int(m.group(2))
            message = message[: m.start()] + message[m.end() :]
        if column:
            message += f" (column {column})"
        if line and _inside_inline_table(text, line, column):
            message += (
                "; an inline table { ... } must be on one line: write a long step as its "
                "own [[step]] or [[step.steps]] table"
            )
        raise ProtocolError([Problem(source, line, "", f"TOML syntax: {message}")]) from None


def _inside_inline_table(text: str, line: int, column: int) -> bool:
    """True if (line, column) lies inside an unclosed ``{`` (strings and comments skipped)."""
    lines = text.splitlines(keepends=True)
    end = sum(len(x) for x in lines[: line - 1]) + max(column - 1, 0)
    depth = 0
    i = 0
    while i < min(end, len(text)):
        c = text[i]
        if c == "#":
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl
            continue
        if c in "\"'":
            quote = c * 3 if text.startswith(c * 3, i) else c
            j = i + len(quote)
            while j < len(text) and not text.startswith(quote, j):
                if c == '"' and text[j] == "\\":
                    j += 1
                elif len(quote) == 1 and text[j] == "\n":
                    break
                j += 1
            i = j + len(quote)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth = max(depth - 1, 0)
        i += 1
    return depth > 0


class _Context:
    """Collects problems; resolves lines; numbers steps."""

    def __init__(self, source: str, lines: KeyLines, cell: Cell | None):
        self.source = source
        self.lines = lines
        self.cell = cell
        self.problems: list[Problem] = []
        self.unresolved: list[Unresolved] = []
        self.next_index = 0
        self.step_index = -1  # index of the step being read, for Unresolved
        self.safety = Limits()
        self.sample_interval_second = 1.0

    def error(self, path: tuple[str | int, ...], message: str) -> None:
        self.problems.append(
            Problem(self.source, self.lines.line(path), format_path(path), message)
        )


class _Table:
    """A TOML table being read: parsed values by key; unknown keys are reported at the end."""

    def __init__(self, ctx: _Context, data: Mapping[str, Any], path: tuple[str | int, ...]):
        self.ctx = ctx
        self.data = data
        self.path = path
        self.used: set[str] = set()
        self.failed = False

    def has(self, key: str) -> bool:
        self.used.add(key)
        return key in self.data

    def get(self, key: str, parse: Callable[[Any], Any], default: Any = None) -> Any:
        """The parsed value of key, ``default`` if absent, None after reporting a bad value."""
        self.used.add(key)
        if key not in self.data:
            return default
        try:
            return parse(self.data[key])
        except (UnitError, _Invalid) as exc:
            self.ctx.error((*self.path, key), str(exc))
            self.failed = True
            return None

    def need(self, key: str, parse: Callable[[Any], Any], hint: str = "") -> Any:
        """The parsed value of a required key (None after reporting it missing or bad)."""
        if key not in self.data:
            self.used.add(key)
            self.ctx.error(self.path, f"missing {key!r}" + (f" ({hint})" if hint else ""))
            self.failed = True
            return None
        return self.get(key, parse)

    def table(self, key: str) -> _Table | None:
        self.used.add(key)
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, dict):
            self.ctx.error(
                (*self.path, key), f"must be a table like {{ key = value }}, got {value!r}"
            )
            self.failed = True
            return None
        return _Table(self.ctx, value, (*self.path, key))

    def finish(self, known: tuple[str, ...] | None = None) -> None:
        """Report keys nobody asked for (typos), with the closest known key."""
        allowed = set(known) if known is not None else self.used
        for key in self.data:
            if key not in allowed:
                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                choices = ", ".join(sorted(allowed)) if not close else ""
                msg = f"unknown key{hint}" + (f" (known: {choices})" if choices else "")
                self.ctx.error((*self.path, key), msg)
                self.failed = True


class _Invalid(ValueError):
    """A value of the wrong type or out of range; the message is for the technician."""


# -- value parsers ---------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"must be text in quotes, got {value!r}")
    return value


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"must be a whole number, got {value!r}")
    if value < 1:
        raise _Invalid(f"must be at least 1, got {value}")
    return value


def _positive(parse: Callable[[Any], float], what: str = "") -> Callable[[Any], float]:
    def wrapped(value: Any) -> float:
        x = parse(value)
        if not math.isnan(x) and x <= 0:
            raise _Invalid(f"must be positive{what}, got {value!r}")
        return x

    return wrapped


def _duration(value: Any) -> float:
    return units.parse_duration(value)


_positive_duration = _positive(units.parse_duration)


def _fraction_0_1(value: Any) -> float:
    x = units.parse_fraction(value)
    if not 0 < x < 1:
        raise _Invalid(f"must be a fraction between 0 and 1 (or 0 % and 100 %), got {value!r}")
    return x


def _current_parser(ctx: _Context, key_path: tuple[str | int, ...]) -> Callable[[Any], float]:
    """Parser of a current that may be a C-rate or a current density (NaN while unresolved)."""

    def parse(value: Any) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return units.parse_current(value)  # raises: no unit
        q = units.parse_quantity(value) if isinstance(value, str) else None
        if q is not None and q.dimension in (units.C_RATE, units.CURRENT_DENSITY):
            needs = "nominal_capacity_ah" if q.dimension == units.C_RATE else "area_cm2"
            if ctx.cell is None:
                ctx.unresolved.append(
                    Unresolved(
                        ctx.step_index,
                        ctx.lines.line(key_path),
                        format_path(key_path),
                        value,
                        needs,
                    )
                )
                return math.copysign(math.nan, q.value_si)
            if getattr(ctx.cell, needs) is None:
                what = "a C-rate" if needs == "nominal_capacity_ah" else "a current density"
                raise _Invalid(f"{value!r} is {what}, but the station's [cell] has no {needs}")
        return units.parse_current(
            value,
            nominal_capacity_ah=ctx.cell.nominal_capacity_ah if ctx.cell else None,
            area_cm2=ctx.cell.area_cm2 if ctx.cell else None,
        )

    return parse


def _capacity_parser(ctx: _Context, key_path: tuple[str | int, ...]) -> Callable[[Any], float]:
    """Capacity in Ah: "1.5 mAh", or "50 %" of the cell's nominal capacity."""

    def parse(value: Any) -> float:
        q = units.parse_quantity(value) if isinstance(value, str) else None
        if q is not None and q.dimension == units.DIMENSIONLESS:
            if ctx.cell is None:
                ctx.unresolved.append(
                    Unresolved(
                        ctx.step_index,
                        ctx.lines.line(key_path),
                        format_path(key_path),
                        value,
                        "nominal_capacity_ah",
                    )
                )
                return math.nan
            if ctx.cell.nominal_capacity_ah is None:
                raise _Invalid(
                    f"{value!r} is a fraction of the nominal capacity, "
                    "but the station's [cell] has no nominal_capacity_ah"
                )
            return q.value_si * ctx.cell.nominal_capacity_ah
        ah = units.parse_capacity(value)
        if ah <= 0:
            raise _Invalid(f"must be positive, got {value!r}")
        return ah

    return parse


# -- protocol --------------------------------------------------------------------------------------

_TOP_KEYS = ("name", "description", "sample_interval", "safety", "step")
_COMMON_KEYS = ("type", "name", "limits", "record_every", "record_dv")


def _build_protocol(
    ctx: _Context, data: dict[str, Any], text: str, path: Path | None
) -> Protocol | None:
    top = _Table(ctx, data, ())
    name = top.get("name", _text)
    if name is None and "name" not in data:
        name = path.stem if path else "protocol"
    description = top.get("description", _text, "") or ""
    interval = top.get("sample_interval", _positive_duration, 1.0)
    ctx.sample_interval_second = interval if interval is not None else 1.0
    safety_table = top.table("safety")
    safety = _limits(ctx, safety_table) if safety_table else Limits()
    ctx.safety = safety or Limits()
    top.used.add("step")
    if "steps" in data and "step" not in data:
        ctx.error(("steps",), "the top-level steps are written [[step]] (one table per step)")
        top.used.add("steps")
    raw_steps = data.get("step")
    steps: tuple[Step, ...] = ()
    if raw_steps is None:
        if "steps" not in data:
            ctx.error((), "no steps: add at least one [[step]] table")
    elif not isinstance(raw_steps, list) or not all(isinstance(s, dict) for s in raw_steps):
        ctx.error(("step",), "steps are written as [[step]] tables")
    elif not raw_steps:
        ctx.error(("step",), "no steps: add at least one [[step]] table")
    else:
        steps = _steps(ctx, raw_steps, ("step",), in_loop=False)
    top.finish(_TOP_KEYS)
    return Protocol(
        name=name or "",
        path=path,
        text=text,
        sample_interval_second=ctx.sample_interval_second,
        safety=ctx.safety,
        steps=steps,
        description=description,
        unresolved=tuple(ctx.unresolved),
    )


_LIMIT_KEYS = ("voltage_min", "voltage_max", "current_max", "temperature_max", "pressure_max")


def _limits(ctx: _Context, t: _Table) -> Limits | None:
    lim = Limits(
        voltage_min_volt=t.get("voltage_min", units.parse_voltage),
        voltage_max_volt=t.get("voltage_max", units.parse_voltage),
        current_max_ampere=t.get(
            "current_max", _abs(_current_parser(ctx, (*t.path, "current_max")))
        ),
        temperature_max_celsius=t.get("temperature_max", units.parse_temperature),
        pressure_max_megapascal=t.get("pressure_max", _positive(units.parse_pressure)),
    )
    t.finish(_LIMIT_KEYS)
    lo, hi = lim.voltage_min_volt, lim.voltage_max_volt
    if lo is not None and hi is not None and lo >= hi:
        ctx.error((*t.path, "voltage_max"), f"must be above voltage_min ({_v(lo)}), got {_v(hi)}")
    if lim.current_max_ampere is not None and lim.current_max_ampere == 0:
        ctx.error((*t.path, "current_max"), "must be above zero")
    return lim


def _abs(parse: Callable[[Any], float]) -> Callable[[Any], float]:
    return lambda value: abs(parse(value))


def _steps(
    ctx: _Context, raw: list[dict[str, Any]], path: tuple[str | int, ...], *, in_loop: bool
) -> tuple[Step, ...]:
    out = []
    for i, item in enumerate(raw):
        step = _step(ctx, item, (*path, i), in_loop=in_loop)
        if step is not None:
            out.append(step)
    return tuple(out)


def _step(ctx: _Context, data: Any, path: tuple[str | int, ...], *, in_loop: bool) -> Step | None:
    index = ctx.next_index
    ctx.next_index += 1
    if not isinstance(data, dict):
        ctx.error(path, f'a step must be a table like {{ type = "rest", ... }}, got {data!r}')
        return None
    t = _Table(ctx, data, path)
    kind = t.need("type", _text, "one of " + ", ".join(STEP_TYPES))
    if kind is None:
        t.finish(tuple(data))  # nothing more can be said about its keys
        return None
    if kind not in STEP_TYPES:
        close = difflib.get_close_matches(kind, list(STEP_TYPES), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(STEP_TYPES)
        ctx.error((*path, "type"), f"unknown step type {kind!r}; {hint}")
        return None
    saved_index, ctx.step_index = ctx.step_index, index
    common: dict[str, Any] = {"index": index, "kind": kind, "line": ctx.lines.line(path)}
    name = t.get("name", _text, "")
    limits_table = t.table("limits")
    limits = _limits(ctx, limits_table) if limits_table else None
    record_every = t.get("record_every", _positive_duration)
    if record_every is not None and record_every < ctx.sample_interval_second:
        ctx.error(
            (*path, "record_every"),
            f"{_t(record_every)} is shorter than the sample interval "
            f"({_t(ctx.sample_interval_second)}): samples are taken no faster than that",
        )
    common.update(
        limits=limits,
        record_interval_second=record_every,
        record_dv_volt=t.get("record_dv", _positive(units.parse_voltage)),
    )
    builder, keys = _BUILDERS[kind]
    try:
        specific = builder(ctx, t, in_loop)
    finally:
        ctx.step_index = saved_index
    t.finish((*_COMMON_KEYS, *keys))
    if specific is None or t.failed:
        return None
    step = STEP_TYPES[kind](**common, **specific)
    return replace(step, name=name or step.summary())


# -- per-type builders: return the type's fields, or None after reporting problems -----------------


def _ends(ctx: _Context, t: _Table | None, allowed: tuple[str, ...]) -> Ends:
    if t is None:
        return Ends()
    ends = Ends(
        voltage_above_volt=t.get("voltage_above", units.parse_voltage)
        if "voltage_above" in allowed
        else None,
        voltage_below_volt=t.get("voltage_below", units.parse_voltage)
        if "voltage_below" in allowed
        else None,
        current_below_ampere=t.get(
            "current_below", _positive(_abs(_current_parser(ctx, (*t.path, "current_below"))))
        )
        if "current_below" in allowed
        else None,
        time_second=t.get("time", _positive_duration) if "time" in allowed else None,
        capacity_ampere_hour=t.get("capacity", _capacity_parser(ctx, (*t.path, "capacity")))
        if "capacity" in allowed
        else None,
    )
    t.finish(allowed)
    return ends


def _check_window(ctx: _Context, path: tuple[str | int, ...], volt: float | None) -> None:
    """A voltage the step targets must lie inside the run's safety window."""
    if volt is None:
        return
    lo, hi = ctx.safety.voltage_min_volt, ctx.safety.voltage_max_volt
    if lo is not None and hi is not None and lo >= hi:
        return  # the window itself is reported; comparing with it would only add noise
    if lo is not None and volt < lo:
        ctx.error(path, f"{_v(volt)} is below the safety voltage_min ({_v(lo)})")
    if hi is not None and volt > hi:
        ctx.error(path, f"{_v(volt)} is above the safety voltage_max ({_v(hi)})")


def _check_current(ctx: _Context, path: tuple[str | int, ...], amp: float | None) -> None:
    cap = ctx.safety.current_max_ampere
    if amp is not None and cap is not None and abs(amp) > cap:
        ctx.error(path, f"|{_a(amp)}| exceeds the safety current_max ({_a(cap)})")


def _compliance_voltage(ctx: _Context, t: _Table, current: float | None) -> float | None:
    explicit = t.get("voltage_limit", units.parse_voltage)
    if explicit is not None or "voltage_limit" in t.data:
        _check_window(ctx, (*t.path, "voltage_limit"), explicit)
        return explicit
    if current is None:
        return None
    charging = math.copysign(1.0, current) > 0
    bound = ctx.safety.voltage_max_volt if charging else ctx.safety.voltage_min_volt
    if bound is None:
        which = "voltage_max" if charging else "voltage_min"
        ctx.error(
            t.path,
            f"needs 'voltage_limit' (the source's voltage compliance) or a [safety] {which}",
        )
        t.failed = True
    return bound


def _build_rest(ctx: _Context, t: _Table, in_loop: bool) -> dict[str, Any] | None:
    d = t.need("duration", _positive_duration, 'e.g. duration = "10 min"')
    return None if d is None else {"duration_second": d}


def _build_cc(ctx: _Context, t: _Table, in_loop: bool) -> dict[str, Any] | None:
    current = t.need("current", _current_parser(ctx, (*t.path, "current")), 'e.g. "C/10"')
    if current is not None and current == 0:
        ctx.error((*t.path, "current"), "must not be zero (use a rest step)")
        t.failed = True
    _check_current(ctx, (*t.path, "current"), current)
    until = t.table("until")
    if until is None:
        if "until" not in t.data:
            ctx.error(
                t.path, "needs an end: until = { voltage_above/voltage_below, time, capacity }"
            )
        t.failed = True
        ends = Ends()
    else:
        ends = _ends(ctx, until, ("voltage_above", "voltage_below", "time", "capacity"))
        if ends.is_empty() and not until.failed:
            ctx.error(
                until.path, "needs at least one of voltage_above, voltage_below, time, capacity"
            )
            t.failed = True
    if current is not None:
        charging = math.copysign(1.0, current) > 0
        if charging and ends.voltage_below_volt is not None:
            ctx.error(
                (*t.path, "until", "voltage_below"),
                "a charging step (current > 0) raises the voltage: end it with voltage_above",
            )
        if not charging and ends.voltage_above_volt is not None:
            ctx.error(
                (*t.path, "until", "voltage_above"),
                "a discharging step (current < 0) lowers the voltage: end it with voltage_below",
            )
    _check_window(ctx, (*t.path, "until", "voltage_above"), ends.voltage_above_volt)
    _check_window(ctx, (*t.path, "until", "voltage_below"), ends.voltage_below_volt)
    limit = _compliance_voltage(ctx, t, current)
    if current is None or limit is None:
        return None
    return {"current_ampere": current, "voltage_limit_volt": limit, "ends": ends}


def _build_cv(ctx: _Context, t: _Table, in_loop: bool) -> dict[str, Any] | None:
    voltage = t.need("voltage", units.parse_voltage, 'e.g. "4.2 V"')
    _check_window(ctx, (*t.path, "voltage"), voltage)
    limit = t.get(
        "current_limit", _positive(_abs(_current_parser(ctx, (*t.path, "current_limit"))))
    )
    if limit is None and "current_limit" not in t.data:
        limit = ctx.safety.current_max_ampere
        if limit is None:
            ctx.error(
                t.path,
                "needs 'current_limit' (the source's current compliance) or a [safety] current_max",
            )
            t.failed = True
    _check_current(ctx, (*t.path, "current_limit"), limit)
    until = t.table("until")
    if until is None:
        if "until" not in t.data:
            ctx.error(t.path, "needs an end: until = { current_below, time, capacity }")
        t.failed = True
        return None
    ends = _ends(ctx, until, ("current_below", "time", "capacity"))
    if ends.is_empty() and not until.failed:
        ctx.error(until.path, "needs at least one of current_below, time, capacity")
        t.failed = True
    if voltage is None or limit is None:
        return None
    return {"voltage_volt": voltage, "current_limit_ampere": limit, "ends": ends}


def _build_cccv(ctx: _Context, t: _Table, in_loop: bool) -> dict[str, Any] | None:
    current = t.need("current", _current_parser(ctx, (*t.path, "current")), 'e.g. "C/2"')
    if current is not None and current == 0:
        ctx.error((*t.path, "current"), "must not be zero")
        t.failed = True
    _check_current(ctx, (*t.path, "current"), current)
    voltage = t.need("voltage", units.parse_voltage, 'the hold voltage, e.g. "4.2 V"')
    _check_window(ctx, (*t.path, "voltage"), voltage)
    until = t.table("until")
    if until is None:
        if "until" not in t.data:
            ctx.error(t.path, 'needs an end: until = { current_below = "C/20", time = "3 h" }')
        t.failed = True
        return None
    ends = _ends(ctx, until, ("current_below", "time"))
    if ends.current_below_ampere is None and "current_below" not in until.data:
        ctx.error(until.path, "needs current_below (the current that ends the voltage hold)")
        t.failed = True
    if (
        current is not None
        and ends.current_below_ampere is not None
        and ends.current_below_ampere >= abs(current)
    ):
        ctx.error(
            (*until.path, "current_below"),
            f"{_a(ends.current_below_ampere)} is not below the step current ({_a(abs(current))})",
        )
    if current is None or voltage is None or ends.current_below_ampere is None:
        return None
    return {
        "current_ampere": current,
        "voltage_volt": voltage,
        "end_current_ampere": ends.current_below_ampere,
        "max_duration_second": ends.time_second,
    }


def _build_eis(ctx: _Context, t: _Table, in_loop: bool) -> dict[str, Any] | None:
    start = t.need("start", units.parse_frequency, 'e.g. start = "1 MHz"')
    stop = t.need("stop", units.parse_frequency, 'e.g. stop = "100 mHz"')
    if start is not None and stop is not None and start == stop:
        ctx.error((*t.path, "stop"), "must differ from start")
    ppd = t.get("points_per_decade", _positive_int, 10)
    if ppd is not None and ppd > 100:
        ctx.error((*t.path, "points_per_decade"), f"at most 100, got {ppd}")
    amplitude = t.need("amplitude", units.parse_quantity, 'e.g. "10 mV" or "10 uA"')
    unit = None
    if amplitude is not None:
        if amplitude.dimension == units.VOLTAGE:
            unit = "V"
        elif amplitude.dimension == units.CURRENT:
            unit = "A"
        else:
            ctx.error((*t.path, "amplitude"), 'must be a voltage ("10 mV") or a current ("10 uA")')
        if amplitude.value_si <= 0:
            ctx.error((*t.path, "amplitude"), "must be positive")
            unit = None
    bias = t.get("dc_bias", _bias, None)
    _check_window(ctx, (*t.path, "dc_bias"), bias)
    every = t.get("every", _positive_int)
    if every is not None and not in_loop:
        ctx.error((*t.path, "every"), "'every' counts loop iterations: use it inside a loop")
    if None in (start, stop, ppd, unit) or t.failed:
        return None
    return {
        "start_hertz": start,
        "stop_hertz": stop,
        "points_per_decade": ppd,
        "amplitude": amplitude.value_si,
        "amplitude_unit": unit,
        "dc_bias_volt": bias,
        "every_cycles": every,
    }


def _bias(value: Any) -> float | None:
    if isinstance(value, str) and value.strip().lower() in ("ocv", "ocp", "open circuit"):
        return None
    try:
        return units.parse_voltage(value)
    except UnitError as exc:
        raise _Invalid(f'must be a voltage or "ocv" (open circuit): {exc}') from None


def _build_pulse(ctx: _Context, t: _Table, in_loop: bool) -> dict[str, Any] | None:
    current = t.need("current", _current_parser(ctx, (*t.path, "current")), 'e.g. "-1C"')
    _check_current(ctx, (*t.path, "current"), current)
    pulse = t.need("pulse", _positive_duration, 'the pulse length, e.g. "10 s"')
    rest = t.get("rest", _duration, 0.0)
    count = t.get("count", _positive_int, 1)
    charge = t.get("charge_current", _current_parser(ctx, (*t.path, "charge_current")))
    _check_current(ctx, (*t.path, "charge_current"), charge)
    if (
        charge is not None
        and current is not None
        and math.copysign(1.0, charge) == math.copysign(1.0, current)
    ):
        ctx.error((*t.path, "charge_current"), "must have the opposite sign of 'current'")
    until = t.table("until")
    ends = _ends(ctx, until, ("voltage_above", "voltage_below"))
    if None in (current, pulse, rest, count):
        return None
    return {
        "current_ampere": current,
        "pulse_second": pulse,
        "rest_second": rest,
        "count": count,
        "charge_current_ampere": charge,
        "ends": ends,
    }


def _build_gitt(ctx: _Context, t: _Table, in_loop: bool) -> dict[str, Any] | None:
    current = t.need("current", _current_parser(ctx, (*t.path, "current")), 'e.g. "C/20"')
    _check_current(ctx, (*t.path, "current"), current)
    pulse = t.need("pulse", _positive_duration, 'e.g. "10 min"')
    rest = t.need("rest", _positive_duration, 'e.g. "1 h"')
    count = t.get("count", _positive_int)
    until = t.table("until")
    ends = _ends(ctx, until, ("voltage_above", "voltage_below", "time", "capacity"))
    until_bad = "until" in t.data and (until is None or until.failed)  # reported already
    if ends.is_empty() and "count" not in t.data and not until_bad:
        ctx.error(t.path, "needs an end: until = { voltage_above/voltage_below, ... } or count")
        t.failed = True
    _check_window(ctx, (*t.path, "until", "voltage_above"), ends.voltage_above_volt)
    _check_window(ctx, (*t.path, "until", "voltage_below"), ends.voltage_below_volt)
    if None in (current, pulse, rest):
        return None
    return {
        "current_ampere": current,
        "pulse_second": pulse,
        "rest_second": rest,
        "ends": ends,
        "count": count,
    }


def _build_ccd(ctx: _Context, t: _Table, in_loop: bool) -> dict[str, Any] | None:
    def current(key: str) -> float | None:
        return t.need(key, _positive(_current_parser(ctx, (*t.path, key))), 'e.g. "0.1 mA/cm2"')

    start, step, maximum = current("start"), current("step"), current("max")
    if start is not None and maximum is not None and maximum < start:
        ctx.error((*t.path, "max"), "must not be below start")
    _check_current(ctx, (*t.path, "max"), maximum)
    half = t.need("half_cycle", _positive_duration, 'time per polarity, e.g. "30 min"')
    cycles = t.get("cycles_per_step", _positive_int, 1)
    fraction, min_volt = 0.2, 1e-3
    short = t.table("short")
    if short is not None:
        fraction = short.get("voltage_fraction", _fraction_0_1, fraction)
        min_volt = short.get("voltage_below", _positive(units.parse_voltage), min_volt)
        short.finish(("voltage_fraction", "voltage_below"))
        if short.failed:
            t.failed = True
    if None in (start, step, maximum, half, cycles, fraction, min_volt):
        return None
    return {
        "start_ampere": start,
        "step_ampere": step,
        "max_ampere": maximum,
        "half_cycle_second": half,
        "short_voltage_fraction": fraction,
        "short_min_voltage_volt": min_volt,
        "area_cm2": ctx.cell.area_cm2 if ctx.cell else None,
        "cycles_per_step": cycles,
    }


def _build_temperature(ctx: _Context, t: _Table, in_loop: bool) -> dict[str, Any] | None:
    setpoint = t.need("setpoint", units.parse_temperature, 'e.g. "60 degC"')
    hi = ctx.safety.temperature_max_celsius
    if setpoint is not None and hi is not None and setpoint >= hi:
        ctx.error(
            (*t.path, "setpoint"),
            f"{setpoint:g} °C is not below the safety temperature_max ({hi:g} °C)",
        )
    tolerance = t.get("tolerance", _positive(units.parse_temperature_difference), 1.0)
    stable = t.get("stable_for", _duration, 0.0)
    soak = t.get("soak", _duration, 0.0)
    timeout = t.get("timeout", _positive_duration, 6 * 3600.0)
    if timeout is not None and stable is not None and soak is not None and timeout <= stable:
        ctx.error((*t.path, "timeout"), f"must be longer than stable_for ({_t(stable)})")
    if None in (setpoint, tolerance, stable, soak, timeout):
        return None
    return {
        "setpoint_celsius": setpoint,
        "tolerance_celsius": tolerance,
        "stable_second": stable,
        "timeout_second": timeout,
        "soak_second": soak,
    }


def _build_loop(ctx: _Context, t: _Table, in_loop: bool) -> dict[str, Any] | None:
    repeat = t.get("repeat", _positive_int)
    until_t = t.table("until")
    until = None
    if until_t is not None:
        fraction = ah = None
        if until_t.has("discharge_capacity_below"):
            q = until_t.get("discharge_capacity_below", units.parse_quantity)
            if q is not None and q.dimension == units.DIMENSIONLESS:
                fraction = _fraction_0_1(q.value_si)
            elif q is not None and q.dimension == units.CAPACITY:
                ah = q.value_si / 3600.0
            elif q is not None:
                ctx.error(
                    (*until_t.path, "discharge_capacity_below"),
                    'must be a fraction of the first cycle\'s ("80 %") or a capacity ("1.6 mAh")',
                )
        until = LoopUntil(
            discharge_capacity_below_fraction=fraction,
            discharge_capacity_below_ampere_hour=ah,
            time_second=until_t.get("time", _positive_duration),
        )
        until_t.finish(("discharge_capacity_below", "time"))
        if until.is_empty() and not until_t.failed:
            ctx.error(until_t.path, "needs discharge_capacity_below or time")
    max_repeat = t.get("max_repeat", _positive_int)
    if "repeat" not in t.data and "until" not in t.data:
        ctx.error(t.path, "needs repeat = N or until = { ... } with max_repeat")
        t.failed = True
    if until is not None and max_repeat is None and repeat is None and "max_repeat" not in t.data:
        ctx.error(t.path, "a loop with 'until' needs max_repeat (a bound on the iterations)")
        t.failed = True
    if repeat is not None and max_repeat is not None:
        ctx.error((*t.path, "max_repeat"), "give repeat or max_repeat, not both")
    raw = t.data.get("steps")
    t.used.add("steps")
    body: tuple[Step, ...] = ()
    if raw is None:
        ctx.error(t.path, "needs steps = [ {...}, ... ] (or [[step.steps]] tables)")
        t.failed = True
    elif not isinstance(raw, list) or not raw:
        ctx.error((*t.path, "steps"), "must be a non-empty list of step tables")
        t.failed = True
    else:
        n_problems = len(ctx.problems)
        body = _steps(ctx, raw, (*t.path, "steps"), in_loop=True)
        if len(ctx.problems) > n_problems:
            t.failed = True
    by_capacity = until is not None and (
        until.discharge_capacity_below_fraction is not None
        or until.discharge_capacity_below_ampere_hour is not None
    )
    if by_capacity and not t.failed and not _has_discharge(body):
        ctx.error(
            (*t.path, "until", "discharge_capacity_below"),
            "the loop has no discharging step (negative current) to measure",
        )
    if t.failed:
        return None
    bound = repeat if repeat is not None else max_repeat
    return {"steps": body, "repeat": repeat, "until": until, "max_repeat": bound}


def _has_discharge(steps: tuple[Step, ...]) -> bool:
    for s in steps:
        if isinstance(s, Loop) and _has_discharge(s.steps):
            return True
        current = getattr(s, "current_ampere", None)
        if current is not None and math.copysign(1.0, current) < 0:
            return True
        if isinstance(s, GITT | Pulse) and s.current_ampere < 0:
            return True
    return False


_BUILDERS: dict[
    str, tuple[Callable[[_Context, _Table, bool], dict[str, Any] | None], tuple[str, ...]]
] = {
    "rest": (_build_rest, ("duration",)),
    "ocv": (_build_rest, ("duration",)),
    "cc": (_build_cc, ("current", "until", "voltage_limit")),
    "cv": (_build_cv, ("voltage", "current_limit", "until")),
    "cccv": (_build_cccv, ("current", "voltage", "until")),
    "eis": (_build_eis, ("start", "stop", "points_per_decade", "amplitude", "dc_bias", "every")),
    "pulse": (_build_pulse, ("current", "pulse", "rest", "count", "charge_current", "until")),
    "hppc": (_build_pulse, ("current", "pulse", "rest", "count", "charge_current", "until")),
    "gitt": (_build_gitt, ("current", "pulse", "rest", "count", "until")),
    "ccd": (_build_ccd, ("start", "step", "max", "half_cycle", "cycles_per_step", "short")),
    "temperature": (
        _build_temperature,
        ("setpoint", "tolerance", "stable_for", "soak", "timeout"),
    ),
    "loop": (_build_loop, ("repeat", "until", "max_repeat", "steps")),
}


# -- display helpers -------------------------------------------------------------------------------


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
