"""How each protocol step runs on a channel, and what the engine reads from protocols and stations.

One executor per step type of :mod:`cellbench.daq.protocol`; each drives the channel's source
through :class:`~cellbench.daq.runner.ChannelRunner` primitives (``output_off``,
``source_current``, ``source_voltage``, ``hold``, ``sweep``) and returns why the step ended.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from cellbench.core.errors import CellbenchError
from cellbench.daq.eis_equilibrium import run_eis_until_stable
from cellbench.daq.protocol import (
    CC,
    CCCV,
    CCD,
    CV,
    EIS,
    GITT,
    Ends,
    Loop,
    Ocv,
    Pressure,
    Protocol,
    Pulse,
    Rest,
    Step,
    Temperature,
)

if TYPE_CHECKING:
    from cellbench.daq.runner import ChannelRunner


class EngineConfigError(CellbenchError):
    """The protocol cannot run on this station as configured (names the step or instrument)."""


# ------------------------------------------------------------------------ reading a protocol


def walk(protocol: Protocol) -> Iterator[Step]:
    for step, _depth in protocol.walk():
        yield step


def describe(step: Step) -> str:
    return step.name or step.summary()


def time_limit(step: Step) -> float | None:
    """The step's duration when known in advance (for 'remaining' displays), else None."""
    if isinstance(step, Rest | Ocv):
        return step.duration_second
    if isinstance(step, CC | CV):
        return step.ends.time_second
    if isinstance(step, CCCV):
        return step.max_duration_second
    if isinstance(step, Pulse):
        per = step.pulse_second + step.rest_second
        return step.count * per * (2 if step.charge_current_ampere is not None else 1)
    if isinstance(step, GITT) and step.count is not None:
        return step.count * (step.pulse_second + step.rest_second)
    if isinstance(step, CCD):
        return len(step.levels_ampere()) * step.cycles_per_step * 2 * step.half_cycle_second
    return None


def ends_reached(ends: Ends, elapsed_s: float, v: float, i: float, q_ah: float) -> str | None:
    """The first end condition met by a sample, as text; None if none."""
    if ends.voltage_above_volt is not None and v >= ends.voltage_above_volt:
        return f"voltage {v:.4g} V >= {ends.voltage_above_volt:g} V"
    if ends.voltage_below_volt is not None and v <= ends.voltage_below_volt:
        return f"voltage {v:.4g} V <= {ends.voltage_below_volt:g} V"
    if ends.current_below_ampere is not None and abs(i) <= ends.current_below_ampere:
        return f"|current| {abs(i):.4g} A <= {ends.current_below_ampere:g} A"
    if ends.capacity_ampere_hour is not None and abs(q_ah) >= ends.capacity_ampere_hour:
        return f"capacity {abs(q_ah) * 1e3:.4g} mAh reached"
    if ends.time_second is not None and elapsed_s >= ends.time_second - 1e-9:
        return f"time {ends.time_second:g} s"
    return None


def compliance_volt(protocol: Protocol, current_ampere: float, bound_volt: float | None) -> float:
    """The |V| compliance to give a source for ``current_ampere``.

    Source-measure units limit |V| symmetrically, so a compliance can only stop a *charge* at an
    upper voltage. On charge: ``bound_volt`` (the step's voltage limit or end voltage), else the
    safety ``voltage_max``. On discharge a lower bound cannot be a compliance (a 4 V cell would be
    "in compliance" at once); the end conditions and the safety window stop it, and the compliance
    is the largest |V| the safety window allows, so the source never clamps a healthy cell.
    """
    safety = protocol.safety
    if current_ampere > 0:
        bound = bound_volt if bound_volt is not None else safety.voltage_max_volt
        if bound is None or bound <= 0:
            raise EngineConfigError(
                f"protocol {protocol.name!r}: a charging current needs a positive voltage limit "
                "(the step's voltage_limit/end voltage or [safety] voltage_max)"
            )
        return bound
    window = [abs(x) for x in (safety.voltage_max_volt, safety.voltage_min_volt) if x is not None]
    if bound_volt is not None:
        window.append(abs(bound_volt))
    if not window or max(window) <= 0:
        raise EngineConfigError(
            f"protocol {protocol.name!r}: a discharging current needs a [safety] voltage window"
        )
    return max(window)


# ----------------------------------------------------------------------------- executors


def run_rest(r: ChannelRunner, step: Rest | Ocv) -> str:
    r.output_off()
    return r.hold(Ends(time_second=step.duration_second), pausable=True)


def run_cc(r: ChannelRunner, step: CC) -> str:
    """Constant current. Charging towards an end voltage, the source's compliance is that
    voltage (never above the step's voltage limit): the cell cannot overshoot it even if the
    PC stalls, and a source held at its compliance ends the step like the voltage would."""
    current, ends = step.current_ampere, step.ends
    bound = step.voltage_limit_volt
    if current > 0 and ends.voltage_above_volt is not None:
        bound = min(bound, ends.voltage_above_volt)
    r.source_current(current, compliance_volt(r.protocol, current, bound))
    extra = _compliance_end(current) if current > 0 and ends.voltage_above_volt else None
    reason = r.hold(ends, extra=extra)
    r.output_off()  # at once: the next step's set-up must not prolong this one
    return reason


def _compliance_end(current: float) -> Callable[[float, float, float], str | None]:
    """Ends a CC phase once the source limits its voltage (the current sags below the set one)."""

    def in_compliance(elapsed: float, v: float, i: float) -> str | None:
        if elapsed > 0 and abs(i) < 0.95 * abs(current):
            return f"source at its voltage compliance ({v:.4g} V)"
        return None

    return in_compliance


def run_cv(r: ChannelRunner, step: CV) -> str:
    r.source_voltage(step.voltage_volt, step.current_limit_ampere)
    reason = r.hold(step.ends)
    r.output_off()
    return reason


def run_cccv(r: ChannelRunner, step: CCCV) -> str:
    """CC to the voltage (the source's compliance is that voltage, so it cannot overshoot), then
    CV at it until |I| falls below the end current; ``max_duration`` covers both phases."""
    current, volt = step.current_ampere, step.voltage_volt
    charging = current > 0
    clock0 = r.ctx.clock.now()
    r.source_current(current, compliance_volt(r.protocol, current, volt))

    cc_ends = Ends(
        voltage_above_volt=volt if charging else None,
        voltage_below_volt=None if charging else volt,
        time_second=step.max_duration_second,
    )
    # Charging, the source's compliance is `volt`: once the current sags, CV has begun.
    reason = r.hold(cc_ends, extra=_compliance_end(current) if charging else None)
    if reason.startswith("time"):
        r.output_off()
        return reason
    remaining = None
    if step.max_duration_second is not None:
        remaining = max(0.0, step.max_duration_second - (r.ctx.clock.now() - clock0))
    r.source_voltage(volt, abs(current))
    reason = r.hold(Ends(current_below_ampere=step.end_current_ampere, time_second=remaining))
    r.output_off()
    return reason


def run_eis(r: ChannelRunner, step: EIS) -> str:
    if step.drift_max_fraction is not None:
        return run_eis_until_stable(r, step)
    frame = r.sweep(
        step.start_hertz,
        step.stop_hertz,
        step.points_per_decade,
        step.amplitude,
        amplitude_unit=step.amplitude_unit,
        dc_bias_volt=step.dc_bias_volt,
    )
    where = "at OCV" if step.dc_bias_volt is None else f"at {step.dc_bias_volt:g} V"
    return f"sweep {r.state.sweep_index - 1} of {frame.height} points {where}"


def _voltage_ends(ends: Ends) -> Ends:
    return Ends(
        voltage_above_volt=ends.voltage_above_volt, voltage_below_volt=ends.voltage_below_volt
    )


def run_pulse(r: ChannelRunner, step: Pulse) -> str:
    vends = _voltage_ends(step.ends)
    currents = [step.current_ampere]
    if step.charge_current_ampere is not None:
        currents.append(step.charge_current_ampere)
    for k in range(step.count):
        for current in currents:
            bound = step.ends.voltage_above_volt if current > 0 else step.ends.voltage_below_volt
            r.source_current(current, compliance_volt(r.protocol, current, bound))
            reason = r.hold(
                Ends(
                    vends.voltage_above_volt,
                    vends.voltage_below_volt,
                    time_second=step.pulse_second,
                )
            )
            if not reason.startswith("time"):
                r.output_off()
                return f"pulse {k + 1}: {reason}"
            if step.rest_second > 0:
                r.output_off()
                r.hold(Ends(time_second=step.rest_second))
    r.output_off()
    return f"{step.count} pulse(s) done"


def run_gitt(r: ChannelRunner, step: GITT) -> str:
    """Pulse, rest, until a voltage end (checked during pulses and after rests), the total time,
    the total charge, or ``count`` pulses."""
    ends = step.ends
    vends = _voltage_ends(ends)
    clock0 = r.ctx.clock.now()
    k = 0
    bound = ends.voltage_above_volt if step.current_ampere > 0 else ends.voltage_below_volt
    compliance = compliance_volt(r.protocol, step.current_ampere, bound)
    while step.count is None or k < step.count:
        r.source_current(step.current_ampere, compliance)
        reason = r.hold(
            Ends(vends.voltage_above_volt, vends.voltage_below_volt, time_second=step.pulse_second)
        )
        k += 1
        if not reason.startswith("time"):
            r.output_off()
            return f"pulse {k}: {reason}"
        r.output_off()
        r.hold(Ends(time_second=step.rest_second))
        total = r.state.step_capacity_ampere_hour
        if ends.capacity_ampere_hour is not None and abs(total) >= ends.capacity_ampere_hour:
            return f"after pulse {k}: capacity {abs(total) * 1e3:.4g} mAh reached"
        if ends.time_second is not None and r.ctx.clock.now() - clock0 >= ends.time_second:
            return f"after pulse {k}: time {ends.time_second:g} s"
    return f"{k} pulse(s) done"


def run_ccd(r: ChannelRunner, step: CCD) -> str:
    """The staircase; a short (voltage collapse while current flows) ends the step with a note.

    A half-cycle is judged only after its polarisation has built up (a tenth of the half-cycle
    and three samples), since |V| starts near 0 V on a symmetric cell at every reversal.
    """
    levels = step.levels_ampere()
    settle_s = max(0.1 * step.half_cycle_second, 3 * r.interval_s)
    for level in levels:
        for c in range(step.cycles_per_step):
            for sign in (1.0, -1.0):
                current = sign * level
                r.source_current(current, compliance_volt(r.protocol, current, None))
                reason = r.hold(
                    Ends(time_second=step.half_cycle_second),
                    extra=_short_detector(r, step, level, settle_s),
                )
                if reason.startswith("no current"):
                    r.output_off()
                    r.abort(f"CCD half-cycle at {current * 1e3:.4g} mA: {reason}")
                if reason.startswith("short"):
                    r.output_off()
                    density = (
                        f" = {level / step.area_cm2 * 1e3:.4g} mA/cm2" if step.area_cm2 else ""
                    )
                    r.event_now(
                        "note",
                        f"critical current density reached: {reason} at {level * 1e3:.4g} mA"
                        f"{density} (cycle {c + 1} of the level)",
                        severity="warning",
                        data={
                            "ccd_ampere": level,
                            "ccd_ampere_per_cm2": level / step.area_cm2 if step.area_cm2 else None,
                            "polarity": sign,
                            "level_cycle": c + 1,
                        },
                    )
                    return reason
    r.output_off()
    return f"no short up to {levels[-1] * 1e3:.4g} mA" if levels else "no current levels"


# Consecutive collapsed samples that confirm a short: one glitch does not end a staircase, and
# the record then holds the collapse that ``cellbench analyze ccd`` (min_points=3) looks for.
SHORT_CONFIRM_SAMPLES = 3


def _short_detector(
    r: ChannelRunner, step: CCD, level: float, settle_s: float
) -> Callable[[float, float, float], str | None]:
    """End condition of one CCD half-cycle: the voltage collapses while current flows for
    :data:`SHORT_CONFIRM_SAMPLES` samples in a row — or the source no longer delivers the level
    (its compliance or script ended the output), which would otherwise read as a healthy open
    cell for the rest of the staircase.

    Every suspect sample is recorded even where ``record_dv`` would thin it out: a collapsed
    voltage is flat, so a thinned record would hold a single point of the event it ends on.
    """
    peak = 0.0
    suspect = 0

    def short(elapsed: float, v: float, i: float) -> str | None:
        nonlocal peak, suspect
        peak = max(peak, abs(v))
        if elapsed < settle_s:
            return None
        if abs(i) < 0.5 * level:
            return (
                f"no current: the source delivers {abs(i) * 1e3:.4g} mA of "
                f"{level * 1e3:.4g} mA ({v:.4g} V); it stopped sourcing"
            )
        why = None
        if abs(v) < step.short_min_voltage_volt:
            why = f"short: |V| {abs(v) * 1e3:.3g} mV below {step.short_min_voltage_volt * 1e3:g} mV"
        elif abs(v) < step.short_voltage_fraction * peak:
            why = (
                f"short: |V| {abs(v) * 1e3:.3g} mV fell below "
                f"{step.short_voltage_fraction:.0%} of the peak {peak * 1e3:.3g} mV"
            )
        if why is None:
            suspect = 0
            return None
        suspect += 1
        r.keep_last_sample()
        return why if suspect >= SHORT_CONFIRM_SAMPLES else None

    return short


def run_temperature(r: ChannelRunner, step: Temperature) -> str:
    """Set the chamber; wait until within tolerance for ``stable_second``; then soak. A timeout
    aborts the run (the test would otherwise run at the wrong temperature)."""
    ctrl = r.io.temperature_control
    sampler = r.io.temperature
    if ctrl is None or sampler is None:
        raise EngineConfigError(
            f"channel {r.channel}: temperature step but no temperature instrument"
        )
    r.output_off()
    ctrl.call(ctrl.driver.set_temperature_celsius, step.setpoint_celsius)
    return _settle(
        r,
        sampler.value,
        step.setpoint_celsius,
        step.tolerance_celsius,
        step,
        reached="stable at {:.2f} degC",
        failed=(
            f"temperature did not settle at {step.setpoint_celsius:g} degC "
            f"+/- {step.tolerance_celsius:g} K within {step.timeout_second:g} s "
            "(last {:.2f} degC)"
        ),
    )


def _settle(
    r: ChannelRunner,
    read: Callable[[], float],
    setpoint: float,
    tolerance: float,
    step: Temperature | Pressure,
    *,
    reached: str,
    failed: str,
) -> str:
    """Hold at open circuit until ``read()`` stays within ``tolerance`` of ``setpoint`` for the
    step's ``stable_second``, then soak ``soak_second``; abort after ``timeout_second``.
    ``reached`` and ``failed`` take the last reading as their one ``{}`` field."""
    stable_since: list[float | None] = [None]

    def stable(elapsed: float, v: float, i: float) -> str | None:
        x = read()
        if math.isnan(x) or abs(x - setpoint) > tolerance:
            stable_since[0] = None
            return None
        if stable_since[0] is None:
            stable_since[0] = elapsed
        if elapsed - stable_since[0] >= step.stable_second:
            return reached.format(x) + f" for {step.stable_second:g} s"
        return None

    reason = r.hold(Ends(time_second=step.timeout_second), extra=stable)
    if not reason.startswith("stable"):
        r.abort(failed.format(read()))
    if step.soak_second > 0:
        r.hold(Ends(time_second=step.soak_second))
        reason += f", soaked {step.soak_second:g} s"
    return reason


def run_pressure(r: ChannelRunner, step: Pressure) -> str:
    """Set the press; wait until its load cell reads the set point within tolerance for
    ``stable_second``; then soak. A timeout aborts the run (the test would otherwise run at the
    wrong stack pressure). The cell is at open circuit meanwhile, as in a temperature step."""
    press = r.io.press
    sampler = r.io.pressure
    if press is None or sampler is None:
        raise EngineConfigError(f"channel {r.channel}: pressure step but no press instrument")
    r.output_off()
    if step.rate_megapascal_per_second is not None:
        area = getattr(press.driver, "area_cm2", None) or 0.0
        if area > 0:
            press.call(
                press.driver.set_rate_newton_per_second,
                step.rate_megapascal_per_second * area * 100,
            )
    press.call(press.driver.set_pressure_megapascal, step.setpoint_megapascal)
    return _settle(
        r,
        sampler.value,
        step.setpoint_megapascal,
        step.tolerance_megapascal,
        step,
        reached="stable at {:.4g} MPa",
        failed=(
            f"stack pressure did not settle at {step.setpoint_megapascal:g} MPa "
            f"+/- {step.tolerance_megapascal:g} MPa within {step.timeout_second:g} s "
            "(last {:.4g} MPa)"
        ),
    )


EXECUTORS: dict[type, Callable[[Any, Any], str]] = {
    Rest: run_rest,
    Ocv: run_rest,
    CC: run_cc,
    CV: run_cv,
    CCCV: run_cccv,
    EIS: run_eis,
    Pulse: run_pulse,
    GITT: run_gitt,
    CCD: run_ccd,
    Temperature: run_temperature,
    Pressure: run_pressure,
}

# Steps that can be restarted from their beginning after a crash (see cellbench resume).
RESTARTABLE: tuple[type, ...] = (Rest, Ocv, CC, CV, CCCV, EIS, Temperature, Pressure)


def executor(step: Step) -> Callable[[Any, Any], str]:
    try:
        return EXECUTORS[type(step)]
    except KeyError:
        raise EngineConfigError(
            f"step {step.index}: no executor for {type(step).__name__}"
        ) from None


# ------------------------------------------------------------------------------- loops


def loop_count(loop: Loop, cap: int | None = None) -> int:
    n = loop.repeat if loop.repeat is not None else loop.max_repeat
    return min(n, cap) if cap is not None else n


# ------------------------------------------------------------------------ protocol + station


def needs(protocol: Protocol) -> set[str]:
    """Roles a protocol needs besides ``source``."""
    out = set()
    for step in walk(protocol):
        if isinstance(step, EIS):
            out.add("impedance")
        if isinstance(step, Temperature):
            out.add("temperature")
        if isinstance(step, Pressure):
            out.update(("press", "pressure"))
    return out


def check_engine_fit(protocol: Protocol, channels: dict[str, set[str]]) -> list[str]:
    """What keeps this protocol from running on these channels (channel → roles serving it)."""
    problems = []
    if protocol.unresolved:
        for u in protocol.unresolved:
            problems.append(
                f"step {u.step_index} (line {u.line}) {u.key} = {u.text!r} "
                f"needs the cell's {u.needs}"
            )
    for role in sorted(needs(protocol)):
        for channel, roles in channels.items():
            if role not in roles:
                problems.append(f"channel {channel}: the protocol needs a {role} instrument")
    for step in walk(protocol):
        for current, bound in _currents_without_compliance(step):
            try:
                compliance_volt(protocol, current, bound)
            except EngineConfigError as exc:
                problems.append(f"step {step.index} ({step.kind}): {exc}")
    return problems


def _currents_without_compliance(step: Step) -> list[tuple[float, float | None]]:
    """(current, bound) pairs whose compliance comes from the protocol's safety window."""
    if isinstance(step, Pulse | GITT):
        currents = [step.current_ampere]
        if isinstance(step, Pulse) and step.charge_current_ampere is not None:
            currents.append(step.charge_current_ampere)
        return [
            (c, step.ends.voltage_above_volt if c > 0 else step.ends.voltage_below_volt)
            for c in currents
        ]
    if isinstance(step, CCD):
        return [(step.start_ampere, None), (-step.start_ampere, None)]
    if isinstance(step, CC):
        return [(step.current_ampere, step.voltage_limit_volt)]
    if isinstance(step, CCCV):
        return [(step.current_ampere, step.voltage_volt)]
    return []
