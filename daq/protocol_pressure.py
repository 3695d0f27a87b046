"""The ``pressure`` step of a protocol file: a stack-pressure set point for a motorised press.

Kept beside :mod:`cellbench.daq.protocol_loader` (which registers it in its step builders) so
that the loader stays one readable module. The file format::

    [[step]]
    type = "pressure"
    setpoint = "10 MPa"       # required; inside the [safety] pressure_min..pressure_max window
    tolerance = "0.2 MPa"     # |p - setpoint| that counts as there (default 0.2 MPa)
    stable_for = "30 s"       # how long it must stay there (default 0 s)
    soak = "10 min"           # then wait this long (default 0 s)
    timeout = "10 min"        # not settled by then: the run aborts (default 10 min)
    rate = "0.5 MPa/s"        # how fast the press changes the load (default: the press's own)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from cellbench.core import units
from cellbench.daq.protocol_model import _t
from cellbench.daq.toml_check import Invalid

if TYPE_CHECKING:
    from cellbench.daq.toml_check import Checker, Table

PRESSURE_KEYS = ("setpoint", "tolerance", "stable_for", "soak", "timeout", "rate")


def _positive_pressure(value: Any) -> float:
    x = units.parse_pressure(value)
    if not (math.isfinite(x) and x > 0):
        raise Invalid(f"must be a positive pressure, got {value!r}")
    return x


def _duration(value: Any) -> float:
    x = units.parse_duration(value)
    if x < 0:
        raise Invalid(f"must not be negative, got {value!r}")
    return x


def _positive_duration(value: Any) -> float:
    x = _duration(value)
    if x <= 0:
        raise Invalid(f"must be positive, got {value!r}")
    return x


def _rate(value: Any) -> float:
    """``"0.5 MPa/s"`` or ``"30 MPa/min"`` -> MPa/s."""
    if not isinstance(value, str) or "/" not in value:
        raise Invalid(f'expected a pressure per time such as "0.5 MPa/s", got {value!r}')
    pressure, _, per = value.rpartition("/")
    rate = _positive_pressure(pressure.strip()) / _positive_duration("1 " + per.strip())
    return rate


def build_pressure(ctx: Checker, t: Table, in_loop: bool) -> dict[str, Any] | None:
    """The fields of a :class:`~cellbench.daq.protocol_model.Pressure` step (None on errors,
    each reported on ``ctx`` with its line)."""
    setpoint = t.need("setpoint", _positive_pressure, 'e.g. "10 MPa"')
    safety = ctx.safety  # type: ignore[attr-defined]
    lo, hi = safety.pressure_min_megapascal, safety.pressure_max_megapascal
    where = (*t.path, "setpoint")
    if setpoint is not None and hi is not None and setpoint >= hi:
        ctx.error(where, f"{setpoint:g} MPa is not below the safety pressure_max ({hi:g} MPa)")
    if setpoint is not None and lo is not None and setpoint <= lo:
        ctx.error(where, f"{setpoint:g} MPa is not above the safety pressure_min ({lo:g} MPa)")
    tolerance = t.get("tolerance", _positive_pressure, 0.2)
    stable = t.get("stable_for", _duration, 0.0)
    soak = t.get("soak", _duration, 0.0)
    timeout = t.get("timeout", _positive_duration, 600.0)
    rate = t.get("rate", _rate)
    if timeout is not None and stable is not None and timeout <= stable:
        ctx.error((*t.path, "timeout"), f"must be longer than stable_for ({_t(stable)})")
    if None in (setpoint, tolerance, stable, soak, timeout):
        return None
    return {
        "setpoint_megapascal": setpoint,
        "tolerance_megapascal": tolerance,
        "stable_second": stable,
        "timeout_second": timeout,
        "soak_second": soak,
        "rate_megapascal_per_second": rate,
    }
