"""Safety limits: the run-wide window every sample must stay in, tightened by a step's own limits.

The limits themselves are :class:`cellbench.daq.protocol.Limits` (``[safety]`` of the protocol,
``limits`` of a step, combined with ``Limits.merged``). A breach is reported, not acted on, here:
the engine puts every output of the run in its safe state, records an alarm event and marks the
run ``aborted``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from cellbench.daq.protocol import Limits


@dataclass(frozen=True)
class Breach:
    """Which limit, the value seen and the bound."""

    quantity: str  # "voltage", "current", "temperature", "pressure"
    value: float
    bound: float
    limit: str  # name of the Limits field

    @property
    def message(self) -> str:
        unit = {"voltage": "V", "current": "A", "temperature": "degC", "pressure": "MPa"}
        u = unit.get(self.quantity, "")
        side = "below" if "_min_" in self.limit else "above"
        return f"{self.quantity} {self.value:.6g} {u} {side} limit {self.bound:.6g} {u}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "quantity": self.quantity,
            "value": self.value,
            "bound": self.bound,
            "limit": self.limit,
        }


def check(
    limits: Limits,
    *,
    voltage_volt: float | None = None,
    current_ampere: float | None = None,
    temperature_celsius: float | None = None,
    pressure_megapascal: float | None = None,
) -> Breach | None:
    """The first breached limit, or None. A non-finite reading of a bounded quantity is a breach:
    a NaN voltage cannot be shown to be inside the window."""
    v, i, t, p = voltage_volt, current_ampere, temperature_celsius, pressure_megapascal
    lim = limits
    if v is not None:
        if lim.voltage_max_volt is not None and not v <= lim.voltage_max_volt:
            return Breach("voltage", v, lim.voltage_max_volt, "voltage_max_volt")
        if lim.voltage_min_volt is not None and not v >= lim.voltage_min_volt:
            return Breach("voltage", v, lim.voltage_min_volt, "voltage_min_volt")
    if (
        i is not None
        and lim.current_max_ampere is not None
        and not abs(i) <= lim.current_max_ampere
    ):
        return Breach("current", i, lim.current_max_ampere, "current_max_ampere")
    if (
        t is not None
        and not math.isnan(t)
        and lim.temperature_max_celsius is not None
        and t > lim.temperature_max_celsius
    ):
        return Breach("temperature", t, lim.temperature_max_celsius, "temperature_max_celsius")
    if (
        p is not None
        and not math.isnan(p)
        and lim.pressure_max_megapascal is not None
        and p > lim.pressure_max_megapascal
    ):
        return Breach("pressure", p, lim.pressure_max_megapascal, "pressure_max_megapascal")
    return None


def describe(limits: Limits) -> str:
    """``voltage_min_volt=2.5, ...`` for the bounds that are set."""
    parts = [
        f"{f.name}={getattr(limits, f.name):g}"
        for f in fields(limits)
        if getattr(limits, f.name) is not None
    ]
    return ", ".join(parts) or "none"
