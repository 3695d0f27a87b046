"""Drift between consecutive impedance sweeps: whether a sample has reached equilibrium.

After a temperature step the pellet lags the chamber, and a fresh interface keeps changing; a
conductivity point is only meaningful once consecutive sweeps agree. The drift of sweep ``b``
against the sweep before it, ``a``, is the root mean square over frequency of the relative
complex change::

    drift = sqrt( mean_f( |Z_b(f) - Z_a(f)|^2 / |Z_a(f)|^2 ) )

(0.01 = 1 %). It is model-free, so it needs no fit during the run, and it weighs every decade
alike. Where the two sweeps do not share frequencies, ``Z_b`` is interpolated (real and imaginary
parts, on log f) onto the frequencies of ``a`` inside their common range.

:func:`equilibrium_table` computes it for every sweep of a recorded ``spectra`` frame against
the previous sweep of the same channel and protocol step.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from cellbench.core.errors import CellbenchError


class DriftError(CellbenchError, ValueError):
    """Sweeps that cannot be compared (no common frequencies)."""


def spectrum_drift(
    frequency_a_hz: np.ndarray,
    z_a: np.ndarray,
    frequency_b_hz: np.ndarray,
    z_b: np.ndarray,
) -> float:
    """RMS relative change from sweep ``a`` to sweep ``b`` (module doc); a fraction."""
    fa = np.asarray(frequency_a_hz, dtype=float)
    fb = np.asarray(frequency_b_hz, dtype=float)
    za = np.asarray(z_a, dtype=complex)
    zb = np.asarray(z_b, dtype=complex)
    ok_a = np.isfinite(fa) & (fa > 0) & np.isfinite(za) & (np.abs(za) > 0)
    ok_b = np.isfinite(fb) & (fb > 0) & np.isfinite(zb)
    fa, za, fb, zb = fa[ok_a], za[ok_a], fb[ok_b], zb[ok_b]
    if fa.size == 0 or fb.size == 0:
        raise DriftError("a sweep has no finite points")
    same = fa.size == fb.size and np.allclose(np.sort(fa), np.sort(fb), rtol=1e-6)
    if same:
        zb_on_a = zb[np.argsort(fb)][np.argsort(np.argsort(fa))]
    else:
        order = np.argsort(fb)
        lb, zbs = np.log(fb[order]), zb[order]
        la = np.log(fa)
        inside = (la >= lb[0]) & (la <= lb[-1])
        if inside.sum() < 2:
            raise DriftError("the sweeps share no frequency range")
        fa, za, la = fa[inside], za[inside], la[inside]
        zb_on_a = np.interp(la, lb, zbs.real) + 1j * np.interp(la, lb, zbs.imag)
    rel = np.abs(zb_on_a - za) / np.abs(za)
    return float(math.sqrt(float(np.mean(rel**2))))


def equilibrium_table(spectra: pl.DataFrame) -> pl.DataFrame:
    """One row per sweep: ``channel``, ``sweep_index``, ``step_index``, ``temperature_celsius``
    (mean over the sweep), ``drift_fraction`` and ``temperature_change_kelvin`` against the
    previous sweep of the same channel and step (null for the first sweep of a step)."""
    need = ("sweep_index", "frequency_hertz", "z_real_ohm", "z_imag_ohm")
    missing = [c for c in need if c not in spectra.columns]
    if missing:
        raise DriftError(f"spectra: missing column(s) {missing}")
    df = spectra
    if "channel" not in df.columns:
        df = df.with_columns(pl.lit("").alias("channel"))
    if "step_index" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.Int32).alias("step_index"))
    if "temperature_celsius" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.Float64).alias("temperature_celsius"))
    rows = []
    previous: dict[tuple, tuple[np.ndarray, np.ndarray, float]] = {}
    for (channel, sweep), part in df.group_by(["channel", "sweep_index"], maintain_order=True):
        step = part["step_index"][0]
        temp = part["temperature_celsius"].mean()
        temp = math.nan if temp is None else float(temp)
        f = part["frequency_hertz"].to_numpy()
        z = part["z_real_ohm"].to_numpy() + 1j * part["z_imag_ohm"].to_numpy()
        key = (channel, step)
        drift = d_temp = None
        if key in previous:
            fa, za, ta = previous[key]
            try:
                drift = spectrum_drift(fa, za, f, z)
            except DriftError:
                drift = None
            d_temp = abs(temp - ta) if math.isfinite(temp) and math.isfinite(ta) else None
        previous[key] = (f, z, temp)
        rows.append(
            {
                "channel": channel,
                "sweep_index": int(sweep),
                "step_index": step,
                "temperature_celsius": temp if math.isfinite(temp) else None,
                "drift_fraction": drift,
                "temperature_change_kelvin": d_temp,
            }
        )
    schema = {
        "channel": pl.String,
        "sweep_index": pl.Int32,
        "step_index": pl.Int32,
        "temperature_celsius": pl.Float64,
        "drift_fraction": pl.Float64,
        "temperature_change_kelvin": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def arrhenius_sweeps(table: pl.DataFrame, *, isothermal_k: float = 2.0) -> np.ndarray:
    """Which sweeps (rows of a per-sweep table, in sweep order) give the Arrhenius points: the
    first sweep at each temperature (later ones, during cycling or after ageing, would mix the
    cell's evolution into its temperature dependence), except that a step that repeated its
    sweep until equilibrium (same ``step_index`` and ``cycle_count`` in consecutive rows) counts
    once, with its last sweep. Temperatures within ``isothermal_k`` are one temperature."""
    t = table["temperature_celsius"].cast(pl.Float64).to_numpy()
    repeated = np.zeros(t.size, dtype=bool)
    if {"step_index", "cycle_count"} <= set(table.columns) and t.size > 1:
        s = table["step_index"].to_numpy()
        c = table["cycle_count"].to_numpy()
        repeated[:-1] = (s[:-1] == s[1:]) & (c[:-1] == c[1:])  # a later sweep of it follows
    first = np.zeros(t.size, dtype=bool)
    seen: list[float] = []
    for k, tk in enumerate(t):
        if repeated[k] or not np.isfinite(tk):
            continue
        if all(abs(tk - x) > isothermal_k for x in seen):
            seen.append(float(tk))
            first[k] = True
    return first
