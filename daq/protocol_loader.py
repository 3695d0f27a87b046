"""Test protocols, the loader: read the TOML a technician writes and check all of it.

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
raises one :class:`ProtocolError` listing every problem with its file, line and key (through the
shared checker, :mod:`cellbench.daq.toml_check`). It builds the model of
:mod:`cellbench.daq.protocol_model`: one builder per step type returns that type's fields, or
None after reporting its problems; the checks that need the whole file (a target voltage inside
the safety window, a current under the safety ``current_max``) run as the steps are read.

Why one module of about 770 lines: the twelve step builders are the bulk of it, and each reads
the same context (safety window, sample interval, the cell that resolves C-rates, step numbering)
and the same value parsers; split, each part would import all of the other's internals.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from cellbench.core import units
from cellbench.core.schema import Cell
from cellbench.core.units import UnitError
from cellbench.daq.eis_equilibrium import EQUILIBRIUM_KEYS, equilibrium_fields
from cellbench.daq.protocol_model import (
    GITT,
    STEP_TYPES,
    Ends,
    Limits,
    Loop,
    LoopUntil,
    Protocol,
    Pulse,
    Step,
    Unresolved,
    _a,
    _t,
    _v,
)
from cellbench.daq.protocol_pressure import PRESSURE_KEYS, build_pressure
from cellbench.daq.toml_check import (
    Checker,
    Invalid,
    Problem,
    Table,
    TomlFileError,
    did_you_mean,
    parse_toml,
    positive_int,
    read_toml_file,
    text_value,
)
from cellbench.daq.toml_lines import KeyLines, format_path

__all__ = ["Problem", "ProtocolError", "load_protocol", "parse_protocol"]


class ProtocolError(TomlFileError):
    """A protocol (or a protocol with its station) that cannot run; ``problems`` lists them all."""


def load_protocol(path: Path | str, *, cell: Cell | None = None) -> Protocol:
    """Read and check a protocol file; ``cell`` resolves C-rates and current densities.

    Raises :class:`ProtocolError` listing every problem (file, line, key, message). Nothing here
    touches an instrument.
    """
    path = Path(path)
    text = read_toml_file(path, what="protocol", error=ProtocolError)
    return parse_protocol(text, source=str(path), cell=cell, path=path)


def parse_protocol(
    text: str,
    *,
    source: str = "<string>",
    cell: Cell | None = None,
    path: Path | None = None,
) -> Protocol:
    """Check protocol TOML text and build the :class:`Protocol` (see :func:`load_protocol`)."""
    data = parse_toml(text, source, error=ProtocolError)
    ctx = _Context(source, text, cell)
    protocol = _build_protocol(ctx, data, text, path)
    ctx.raise_if_any(ProtocolError)
    assert protocol is not None
    return protocol


class _Context(Checker):
    """The checker of one protocol file; also resolves currents and numbers the steps."""

    def __init__(self, source: str, lines: KeyLines | str, cell: Cell | None):
        super().__init__(source, lines)
        self.cell = cell
        self.unresolved: list[Unresolved] = []
        self.next_index = 0
        self.step_index = -1  # index of the step being read, for Unresolved
        self.safety = Limits()
        self.sample_interval_second = 1.0


# -- value parsers ---------------------------------------------------------------------------------


def _positive(parse: Callable[[Any], float], what: str = "") -> Callable[[Any], float]:
    def wrapped(value: Any) -> float:
        x = parse(value)
        if not math.isnan(x) and x <= 0:
            raise Invalid(f"must be positive{what}, got {value!r}")
        return x

    return wrapped


def _duration(value: Any) -> float:
    return units.parse_duration(value)


_positive_duration = _positive(units.parse_duration)


def _fraction_0_1(value: Any) -> float:
    x = units.parse_fraction(value)
    if not 0 < x < 1:
        raise Invalid(f"must be a fraction between 0 and 1 (or 0 % and 100 %), got {value!r}")
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
                raise Invalid(f"{value!r} is {what}, but the station's [cell] has no {needs}")
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
                raise Invalid(
                    f"{value!r} is a fraction of the nominal capacity, "
                    "but the station's [cell] has no nominal_capacity_ah"
                )
            return q.value_si * ctx.cell.nominal_capacity_ah
        ah = units.parse_capacity(value)
        if ah <= 0:
            raise Invalid(f"must be positive, got {value!r}")
        return ah

    return parse


# -- protocol --------------------------------------------------------------------------------------

_TOP_KEYS = ("name", "description", "sample_interval", "safety", "step")
_COMMON_KEYS = ("type", "name", "limits", "record_every", "record_dv")


def _build_protocol(
    ctx: _Context, data: dict[str, Any], text: str, path: Path | None
) -> Protocol | None:
    top = Table(ctx, data, ())
    name = top.get("name", text_value)
    if name is None and "name" not in data:
        name = path.stem if path else "protocol"
    description = top.get("description", text_value, "") or ""
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


_LIMIT_KEYS = (
    "voltage_min",
    "voltage_max",
    "current_max",
    "temperature_max",
    "pressure_max",
    "pressure_min",
)


def _limits(ctx: _Context, t: Table) -> Limits | None:
    lim = Limits(
        voltage_min_volt=t.get("voltage_min", units.parse_voltage),
        voltage_max_volt=t.get("voltage_max", units.parse_voltage),
        current_max_ampere=t.get(
            "current_max", _abs(_current_parser(ctx, (*t.path, "current_max")))
        ),
        temperature_max_celsius=t.get("temperature_max", units.parse_temperature),
        pressure_max_megapascal=t.get("pressure_max", _positive(units.parse_pressure)),
        pressure_min_megapascal=t.get("pressure_min", _positive(units.parse_pressure)),
    )
    t.finish(_LIMIT_KEYS)
    p_lo, p_hi = lim.pressure_min_megapascal, lim.pressure_max_megapascal
    if p_lo is not None and p_hi is not None and p_lo >= p_hi:
        ctx.error(
            (*t.path, "pressure_max"),
            f"must be above pressure_min ({p_lo:g} MPa), got {p_hi:g} MPa",
        )
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
    t = Table(ctx, data, path)
    kind = t.need("type", text_value, "one of " + ", ".join(STEP_TYPES))
    if kind is None:
        t.finish(tuple(data))  # nothing more can be said about its keys
        return None
    if kind not in STEP_TYPES:
        ctx.error((*path, "type"), f"unknown step type {kind!r}; {did_you_mean(kind, STEP_TYPES)}")
        return None
    saved_index, ctx.step_index = ctx.step_index, index
    common: dict[str, Any] = {"index": index, "kind": kind, "line": ctx.lines.line(path)}
    name = t.get("name", text_value, "")
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


def _ends(ctx: _Context, t: Table | None, allowed: tuple[str, ...]) -> Ends:
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


def _compliance_voltage(ctx: _Context, t: Table, current: float | None) -> float | None:
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


def _build_rest(ctx: _Context, t: Table, in_loop: bool) -> dict[str, Any] | None:
    d = t.need("duration", _positive_duration, 'e.g. duration = "10 min"')
    return None if d is None else {"duration_second": d}


def _build_cc(ctx: _Context, t: Table, in_loop: bool) -> dict[str, Any] | None:
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


def _build_cv(ctx: _Context, t: Table, in_loop: bool) -> dict[str, Any] | None:
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


def _build_cccv(ctx: _Context, t: Table, in_loop: bool) -> dict[str, Any] | None:
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


def _build_eis(ctx: _Context, t: Table, in_loop: bool) -> dict[str, Any] | None:
    start = t.need("start", units.parse_frequency, 'e.g. start = "1 MHz"')
    stop = t.need("stop", units.parse_frequency, 'e.g. stop = "100 mHz"')
    if start is not None and stop is not None and start == stop:
        ctx.error((*t.path, "stop"), "must differ from start")
    ppd = t.get("points_per_decade", positive_int, 10)
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
    every = t.get("every", positive_int)
    if every is not None and not in_loop:
        ctx.error((*t.path, "every"), "'every' counts loop iterations: use it inside a loop")
    repeats = equilibrium_fields(ctx, t)
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
        **repeats,
    }


def _bias(value: Any) -> float | None:
    if isinstance(value, str) and value.strip().lower() in ("ocv", "ocp", "open circuit"):
        return None
    try:
        return units.parse_voltage(value)
    except UnitError as exc:
        raise Invalid(f'must be a voltage or "ocv" (open circuit): {exc}') from None


def _build_pulse(ctx: _Context, t: Table, in_loop: bool) -> dict[str, Any] | None:
    current = t.need("current", _current_parser(ctx, (*t.path, "current")), 'e.g. "-1C"')
    _check_current(ctx, (*t.path, "current"), current)
    pulse = t.need("pulse", _positive_duration, 'the pulse length, e.g. "10 s"')
    rest = t.get("rest", _duration, 0.0)
    count = t.get("count", positive_int, 1)
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


def _build_gitt(ctx: _Context, t: Table, in_loop: bool) -> dict[str, Any] | None:
    current = t.need("current", _current_parser(ctx, (*t.path, "current")), 'e.g. "C/20"')
    _check_current(ctx, (*t.path, "current"), current)
    pulse = t.need("pulse", _positive_duration, 'e.g. "10 min"')
    rest = t.need("rest", _positive_duration, 'e.g. "1 h"')
    count = t.get("count", positive_int)
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


def _build_ccd(ctx: _Context, t: Table, in_loop: bool) -> dict[str, Any] | None:
    def current(key: str) -> float | None:
        return t.need(key, _positive(_current_parser(ctx, (*t.path, key))), 'e.g. "0.1 mA/cm2"')

    start, step, maximum = current("start"), current("step"), current("max")
    if start is not None and maximum is not None and maximum < start:
        ctx.error((*t.path, "max"), "must not be below start")
    _check_current(ctx, (*t.path, "max"), maximum)
    half = t.need("half_cycle", _positive_duration, 'time per polarity, e.g. "30 min"')
    cycles = t.get("cycles_per_step", positive_int, 1)
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


def _build_temperature(ctx: _Context, t: Table, in_loop: bool) -> dict[str, Any] | None:
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


def _build_loop(ctx: _Context, t: Table, in_loop: bool) -> dict[str, Any] | None:
    repeat = t.get("repeat", positive_int)
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
    max_repeat = t.get("max_repeat", positive_int)
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
    str, tuple[Callable[[_Context, Table, bool], dict[str, Any] | None], tuple[str, ...]]
] = {
    "rest": (_build_rest, ("duration",)),
    "ocv": (_build_rest, ("duration",)),
    "cc": (_build_cc, ("current", "until", "voltage_limit")),
    "cv": (_build_cv, ("voltage", "current_limit", "until")),
    "cccv": (_build_cccv, ("current", "voltage", "until")),
    "eis": (
        _build_eis,
        ("start", "stop", "points_per_decade", "amplitude", "dc_bias", "every", *EQUILIBRIUM_KEYS),
    ),
    "pulse": (_build_pulse, ("current", "pulse", "rest", "count", "charge_current", "until")),
    "hppc": (_build_pulse, ("current", "pulse", "rest", "count", "charge_current", "until")),
    "gitt": (_build_gitt, ("current", "pulse", "rest", "count", "until")),
    "ccd": (_build_ccd, ("start", "step", "max", "half_cycle", "cycles_per_step", "short")),
    "temperature": (
        _build_temperature,
        ("setpoint", "tolerance", "stable_for", "soak", "timeout"),
    ),
    "pressure": (build_pressure, PRESSURE_KEYS),
    "loop": (_build_loop, ("repeat", "until", "max_repeat", "steps")),
}
