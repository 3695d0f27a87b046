"""An ``eis`` step that waits for equilibrium: the sweep is repeated until the impedance stops
changing (and, optionally, the temperature too), and each comparison is recorded.

Kept beside :mod:`cellbench.daq.protocol_loader` and :mod:`cellbench.daq.steps` (which call it)
so that those stay one readable module each. The keys of an ``eis`` step::

    [[step]]
    type = "eis"
    start = "1 MHz"
    stop = "100 Hz"
    amplitude = "20 mV"
    drift_max = "1 %"               # repeat until consecutive sweeps differ by less than this
    max_sweeps = 6                  # at most this many sweeps (default 5); then go on, warned
    temperature_drift_max = "0.2 K" # and the temperature moved less than this between them
    sweep_wait = "5 min"            # hold (output off) this long before each repeat (default 0)

The drift is :func:`cellbench.analysis.eis_drift.spectrum_drift` (RMS relative complex change
over frequency). After every repeat the run records a ``note`` event whose ``data`` holds
``equilibrium`` (True once both criteria hold), ``drift_fraction``, ``drift_max_fraction``,
``temperature_celsius``, ``temperature_change_kelvin``, ``sweep_index``,
``previous_sweep_index`` and ``sweeps``. A step that reaches ``max_sweeps`` without
equilibrium records a ``warning`` event and the protocol goes on (the data are kept and
flagged; a conductivity point from it should be read with that in mind).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from cellbench.analysis.eis_drift import spectrum_drift
from cellbench.core import units
from cellbench.daq.protocol_model import Ends
from cellbench.daq.toml_check import Invalid, positive_int

if TYPE_CHECKING:
    from cellbench.daq.protocol_model import EIS
    from cellbench.daq.runner import ChannelRunner
    from cellbench.daq.toml_check import Checker, Table

EQUILIBRIUM_KEYS = ("drift_max", "max_sweeps", "temperature_drift_max", "sweep_wait")
DEFAULT_MAX_SWEEPS = 5


def _drift(value: Any) -> float:
    x = units.parse_fraction(value)
    if not 0 < x < 1:
        raise Invalid(f'must be a fraction between 0 and 1, e.g. "1 %", got {value!r}')
    return x


def _kelvin(value: Any) -> float:
    x = units.parse_temperature_difference(value)
    if not (math.isfinite(x) and x > 0):
        raise Invalid(f"must be a positive temperature difference, got {value!r}")
    return x


def _wait(value: Any) -> float:
    x = units.parse_duration(value)
    if x < 0:
        raise Invalid(f"must not be negative, got {value!r}")
    return x


def equilibrium_fields(ctx: Checker, t: Table) -> dict[str, Any]:
    """The equilibrium fields of an :class:`~cellbench.daq.protocol_model.EIS` step from its
    table (empty when none of the keys is given); problems go to ``ctx`` with their line."""
    drift = t.get("drift_max", _drift)
    max_sweeps = t.get("max_sweeps", positive_int)
    t_drift = t.get("temperature_drift_max", _kelvin)
    wait = t.get("sweep_wait", _wait, 0.0)
    given = [k for k in EQUILIBRIUM_KEYS if k in t.data]
    if not given:
        return {}
    if drift is None and "drift_max" not in t.data:
        ctx.error((*t.path, given[0]), 'repeats need drift_max (e.g. drift_max = "1 %")')
        return {}
    if max_sweeps is not None and max_sweeps < 2:
        ctx.error(
            (*t.path, "max_sweeps"), f"must be at least 2 to compare sweeps, got {max_sweeps}"
        )
        return {}
    if drift is None or wait is None or ("temperature_drift_max" in t.data and t_drift is None):
        return {}
    return {
        "drift_max_fraction": drift,
        "max_sweeps": max_sweeps if max_sweeps is not None else DEFAULT_MAX_SWEEPS,
        "temperature_drift_max_kelvin": t_drift,
        "sweep_wait_second": wait,
    }


def summary(step: EIS) -> str:
    """The words the step's one-line summary gets (empty without repeats)."""
    if step.drift_max_fraction is None:
        return ""
    out = f", repeated until drift < {100 * step.drift_max_fraction:g} %"
    if step.temperature_drift_max_kelvin is not None:
        out += f" and ΔT < {step.temperature_drift_max_kelvin:g} K"
    out += f" (at most {step.max_sweeps} sweeps"
    if step.sweep_wait_second:
        out += f", {step.sweep_wait_second:g} s apart"
    return out + ")"


def _sweep(r: ChannelRunner, step: EIS) -> tuple[np.ndarray, np.ndarray, float, int]:
    frame = r.sweep(
        step.start_hertz,
        step.stop_hertz,
        step.points_per_decade,
        step.amplitude,
        amplitude_unit=step.amplitude_unit,
        dc_bias_volt=step.dc_bias_volt,
    )
    f = frame["frequency_hertz"].to_numpy()
    z = frame["z_real_ohm"].to_numpy() + 1j * frame["z_imag_ohm"].to_numpy()
    temp = frame["temperature_celsius"][0] if frame.height else None
    return f, z, math.nan if temp is None else float(temp), r.state.sweep_index - 1


def run_eis_until_stable(r: ChannelRunner, step: EIS) -> str:
    """Sweep, then repeat (after ``sweep_wait``) until the drift against the sweep before is
    below ``drift_max`` (and the temperature change below ``temperature_drift_max``), at most
    ``max_sweeps`` sweeps. Returns why the step ended."""
    t_max = step.temperature_drift_max_kelvin
    if t_max is not None and r.io.temperature is None:
        from cellbench.daq.steps import EngineConfigError

        raise EngineConfigError(
            f"channel {r.channel}: step {step.index} limits the temperature drift but the "
            "channel has no temperature instrument"
        )
    prev = _sweep(r, step)
    drift = math.nan
    for n in range(2, step.max_sweeps + 1):
        if step.sweep_wait_second > 0:
            r.hold(Ends(time_second=step.sweep_wait_second))
        cur = _sweep(r, step)
        drift = spectrum_drift(prev[0], prev[1], cur[0], cur[1])
        d_temp = abs(cur[2] - prev[2]) if math.isfinite(cur[2] + prev[2]) else math.nan
        ok = drift <= step.drift_max_fraction and (t_max is None or d_temp <= t_max)
        temp_text = f", ΔT {d_temp:.3g} K" if math.isfinite(d_temp) else ""
        r.event_now(
            "note",
            f"eis sweep {cur[3]}: drift {100 * drift:.3g} % against sweep {prev[3]}{temp_text}"
            + ("; equilibrium" if ok else ""),
            data={
                "equilibrium": ok,
                "drift_fraction": drift,
                "drift_max_fraction": step.drift_max_fraction,
                "temperature_celsius": cur[2] if math.isfinite(cur[2]) else None,
                "temperature_change_kelvin": d_temp if math.isfinite(d_temp) else None,
                "temperature_drift_max_kelvin": t_max,
                "sweep_index": cur[3],
                "previous_sweep_index": prev[3],
                "sweeps": n,
            },
        )
        if ok:
            return f"equilibrium after {n} sweeps (drift {100 * drift:.3g} %), last sweep {cur[3]}"
        prev = cur
    r.event_now(
        "note",
        f"eis step {step.index}: no equilibrium after {step.max_sweeps} sweeps "
        f"(last drift {100 * drift:.3g} %, limit {100 * step.drift_max_fraction:g} %)",
        severity="warning",
        data={"equilibrium": False, "drift_fraction": drift, "sweeps": step.max_sweeps},
    )
    return f"no equilibrium after {step.max_sweeps} sweeps (drift {100 * drift:.3g} %)"
