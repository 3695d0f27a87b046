"""Voltage of an electrode with planar diffusion, exact, for GITT and ICI tests with known D.

A film of thickness ``L`` (cm), blocking at its back, takes up the current at its surface. For a
current step ``I`` at ``t = 0`` the surface concentration (series solution, Crank eq. 4.54)
moves the voltage by ``dE/dQ I [t + L^2/D (1/3 - 2/pi^2 sum_n exp(-n^2 pi^2 D t / L^2) / n^2)]``
(``dE/dQ``: the OCV's slope against charge, V/C); a piecewise-constant current is the
superposition of its steps. Plus an ohmic ``I R``.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def step_response(t: np.ndarray, d_cm2_s: float, length_cm: float, terms: int = 600) -> np.ndarray:
    """Surface response (in s: multiply by dE/dQ I) to a unit current step at t = 0."""
    t = np.asarray(t, dtype=float)
    out = np.zeros_like(t)
    on = t > 0
    tl = t[on] * d_cm2_s / length_cm**2
    n = np.arange(1, terms + 1, dtype=float)[:, None]
    series = np.sum(np.exp(-(n**2) * np.pi**2 * tl[None, :]) / n**2, axis=0)
    out[on] = t[on] + length_cm**2 / d_cm2_s * (1.0 / 3.0 - 2.0 / np.pi**2 * series)
    return out


def diffusion_voltage(
    segments: list[tuple[float, float]],
    *,
    d_cm2_s: float,
    length_cm: float,
    de_dq_v_per_c: float,
    r_ohm: float,
    dt: float = 1.0,
    e0_volt: float = 3.5,
) -> pl.DataFrame:
    """Samples every ``dt`` s of ``segments`` [(current A, duration s), ...]; each segment's first
    sample is at its edge. Columns test_time_second, voltage_volt, current_ampere, step_index,
    cycle_count."""
    starts = np.concatenate([[0.0], np.cumsum([d for _, d in segments])])
    t = np.arange(0.0, starts[-1], dt)
    seg = np.searchsorted(starts, t, side="right") - 1
    current = np.array([c for c, _ in segments])[seg]
    v = e0_volt + current * r_ohm
    previous = 0.0
    for (c, _), t0 in zip(segments, starts[:-1], strict=True):
        if c != previous:
            v = v + de_dq_v_per_c * (c - previous) * step_response(t - t0, d_cm2_s, length_cm)
        previous = c
    return pl.DataFrame(
        {
            "test_time_second": t,
            "voltage_volt": v,
            "current_ampere": current,
            "step_index": seg.astype(np.int32),
            "cycle_count": np.ones(t.size, dtype=np.int32),
        }
    )
