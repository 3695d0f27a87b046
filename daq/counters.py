"""Cycle capacity and energy counters: trapezoidal integration of one sample.

Shared by the engine's own sampling (:meth:`cellbench.daq.runner.ChannelRunner.sample`) and by
runs that follow a vendor cycler's schedule (:mod:`cellbench.daq.cycler_runs`), so both count
charge and energy the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cellbench.daq.runner import ChannelState

_HOUR = 3600.0


def integrate_sample(
    s: ChannelState,
    prev: tuple[float, float, float] | None,
    t: float,
    v: float,
    i: float,
) -> tuple[float, float, float]:
    """Add the interval from ``prev`` to this sample to the cycle and step counters of ``s``.

    ``prev`` is (test time s, V, A) of the last sample or None (no integration: first sample or
    after a gap); ``t`` is test time in s, ``v`` in V, ``i`` in A (positive charges). The
    trapezoidal charge (Ah) and energy (Wh) of the interval go to the charging counters when
    the charge is positive and to the discharging counters (as magnitudes) when negative; the
    step capacity takes the signed charge. Nothing is added unless ``t`` is after ``prev``'s
    time. Returns ``(t, v, i)``, the caller's next ``prev``.
    """
    if prev is not None and t > prev[0]:
        dt = t - prev[0]
        dq = (i + prev[2]) * 0.5 * dt / _HOUR
        de = (i * v + prev[2] * prev[1]) * 0.5 * dt / _HOUR
        if dq > 0:
            s.charging_capacity_ampere_hour += dq
            s.charging_energy_watt_hour += de
        elif dq < 0:
            s.discharging_capacity_ampere_hour -= dq
            s.discharging_energy_watt_hour -= de
        s.step_capacity_ampere_hour += dq
    return (t, v, i)
