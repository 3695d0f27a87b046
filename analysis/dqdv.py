"""Differential capacity dQ/dV and differential voltage dV/dQ, with peak finding.

Raw differences of logged data are noise: a 1 mV voltage resolution makes ``dQ/dV`` jump between
zero and infinity. The curves here are computed by

1. resampling onto a uniform grid: capacity as a function of voltage (samples sorted by
   voltage, equal voltages averaged, linear interpolation) for dQ/dV; voltage as a function of
   capacity for dV/dQ;
2. differentiating with a symmetric smoothing filter, Savitzky-Golay (a local polynomial, degree
   ``polyorder``, over ``window`` volts or Ah) or a Gaussian derivative. A symmetric filter does
   not shift a symmetric peak, and a Savitzky-Golay filter of degree 2 or more keeps its height
   far better than a moving average of the same width. The window should be narrower than the
   narrowest peak worth resolving (its full width at half height); the default 10 mV suits
   intercalation peaks of 20 to 50 mV width.

Capacity in Ah, voltage in V, dQ/dV in Ah/V, dV/dQ in V/Ah.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
from scipy import signal
from scipy.ndimage import gaussian_filter1d

from cellbench.core.errors import CellbenchError

Smoothing = Literal["savgol", "gaussian", "none"]


class DqdvError(CellbenchError):
    """The curve cannot be differentiated (too few points, no voltage span, bad window)."""


@dataclass(frozen=True)
class Curve:
    """A differential curve on a uniform grid: ``x`` (V or Ah) and the derivative ``y``."""

    x: np.ndarray
    y: np.ndarray
    x_name: str
    y_name: str

    def to_frame(self) -> pl.DataFrame:
        return pl.DataFrame({self.x_name: self.x, self.y_name: self.y})


def _resample(x: np.ndarray, y: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """y(x) on a uniform x grid of spacing ``step``: sort by x, average equal x, interpolate."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3:
        raise DqdvError(f"need at least 3 finite points, got {x.size}")
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    ux, inv = np.unique(xs, return_inverse=True)
    uy = np.bincount(inv, weights=ys) / np.bincount(inv)
    span = ux[-1] - ux[0]
    if not span > 0:
        raise DqdvError("the curve spans no range of the grid variable")
    if not step > 0:
        raise DqdvError(f"grid step must be positive, got {step!r}")
    n = int(np.floor(span / step)) + 1
    if n < 5:
        raise DqdvError(f"grid step {step} leaves only {n} points over a span of {span:.4g}")
    grid = ux[0] + step * np.arange(n)
    return grid, np.interp(grid, ux, uy)


def _derivative(
    y: np.ndarray, step: float, smoothing: Smoothing, window: float, polyorder: int
) -> np.ndarray:
    if smoothing == "none":
        return np.gradient(y, step)
    points = window / step
    if smoothing == "savgol":
        n = round(float(points)) | 1  # odd
        n = max(n, polyorder + 2 + (polyorder % 2 == 0))
        if n > y.size:
            raise DqdvError(f"smoothing window of {n} points exceeds the {y.size}-point curve")
        return signal.savgol_filter(y, n, polyorder, deriv=1, delta=step, mode="interp")
    if smoothing == "gaussian":
        # ``window`` is the full width at half maximum of the kernel.
        sigma = points / 2.3548
        return gaussian_filter1d(y, sigma, order=1, mode="nearest") / step
    raise DqdvError(f"smoothing must be 'savgol', 'gaussian' or 'none', got {smoothing!r}")


def dqdv(
    voltage_v: np.ndarray,
    capacity_ah: np.ndarray,
    *,
    step_volt: float = 0.001,
    smoothing: Smoothing = "savgol",
    window_volt: float = 0.01,
    polyorder: int = 2,
) -> Curve:
    """dQ/dV (Ah/V) of one half-cycle on a uniform voltage grid.

    Args:
        voltage_v, capacity_ah: samples of one charge or one discharge (capacity counted from
            the start of the half-cycle; its sign does not matter, only its slope).
        step_volt: grid spacing, V.
        smoothing: ``"savgol"``, ``"gaussian"`` or ``"none"``.
        window_volt: filter window (Savitzky-Golay width, or Gaussian FWHM), V.
        polyorder: Savitzky-Golay polynomial degree; 2 (the default) is the most robust to
            noise, 3 keeps sharp peak heights better on clean data at the same window.
    """
    v = np.asarray(voltage_v, dtype=float)
    q = np.asarray(capacity_ah, dtype=float)
    grid, qg = _resample(v, q, step_volt)
    d = _derivative(qg, step_volt, smoothing, window_volt, polyorder)
    return Curve(grid, d, "voltage_volt", "dqdv_ampere_hour_per_volt")


def dvdq(
    voltage_v: np.ndarray,
    capacity_ah: np.ndarray,
    *,
    step_ampere_hour: float | None = None,
    smoothing: Smoothing = "savgol",
    window_ampere_hour: float | None = None,
    polyorder: int = 2,
) -> Curve:
    """dV/dQ (V/Ah) of one half-cycle on a uniform capacity grid.

    Defaults: grid step 1/1000 and window 1/50 of the capacity span.
    """
    v = np.asarray(voltage_v, dtype=float)
    q = np.asarray(capacity_ah, dtype=float)
    span = float(np.nanmax(q) - np.nanmin(q)) if q.size else 0.0
    step = step_ampere_hour or span / 1000 or 1.0
    window = window_ampere_hour or span / 50 or 1.0
    grid, vg = _resample(q, v, step)
    d = _derivative(vg, step, smoothing, window, polyorder)
    return Curve(grid, d, "capacity_ampere_hour", "dvdq_volt_per_ampere_hour")


def find_peaks(
    curve: Curve,
    *,
    prominence: float | None = None,
    sign: Literal[1, -1] = 1,
    min_separation: float | None = None,
) -> pl.DataFrame:
    """Peaks of a differential curve: position, height, area and width.

    Args:
        curve: from :func:`dqdv` or :func:`dvdq`.
        prominence: smallest prominence (units of ``y``); default 5 % of ``max |y|``.
        sign: ``1`` for maxima, ``-1`` for minima (discharge dQ/dV is negative when capacity is
            signed by current; pass ``-1``, or use unsigned capacity).
        min_separation: smallest distance between peaks, in units of ``x``.

    Returns:
        Columns ``position`` (x units), ``height`` (y units, signed as in the curve),
        ``prominence``, ``width`` (full width at half prominence, x units) and ``area`` (the
        integral of ``y`` between the peak's bases: for dQ/dV the charge in the peak, Ah).
    """
    x, y = curve.x, curve.y * sign
    step = float(x[1] - x[0])
    prom = prominence if prominence is not None else 0.05 * float(np.max(np.abs(y)))
    distance = None if min_separation is None else max(1, round(float(min_separation / step)))
    idx, props = signal.find_peaks(y, prominence=prom, distance=distance)
    widths, _, _, _ = signal.peak_widths(y, idx, rel_height=0.5)
    areas = []
    for k, (left, right) in enumerate(zip(props["left_bases"], props["right_bases"], strict=True)):
        # Integrate above the straight baseline joining the peak's limits: its prominence bases,
        # but no further than the valley to the next peak on either side (the bases of the
        # highest peak reach the ends of the curve).
        lo, hi = int(left), int(right)
        if k > 0:
            lo = max(lo, int(idx[k - 1] + np.argmin(y[idx[k - 1] : idx[k] + 1])))
        if k + 1 < idx.size:
            hi = min(hi, int(idx[k] + np.argmin(y[idx[k] : idx[k + 1] + 1])))
        seg_x, seg_y = x[lo : hi + 1], y[lo : hi + 1]
        base = np.interp(seg_x, [x[lo], x[hi]], [y[lo], y[hi]])
        areas.append(float(np.trapezoid(np.clip(seg_y - base, 0, None), seg_x)) if hi > lo else 0.0)
    return pl.DataFrame(
        {
            "position": x[idx],
            "height": curve.y[idx],
            "prominence": props["prominences"] * 1.0,
            "width": widths * step,
            "area": np.array(areas, dtype=float) * sign,
        },
        schema={
            "position": pl.Float64,
            "height": pl.Float64,
            "prominence": pl.Float64,
            "width": pl.Float64,
            "area": pl.Float64,
        },
    )


def half_cycles(samples: pl.DataFrame, *, rest_current_ampere: float = 1e-9) -> pl.DataFrame:
    """Per-sample capacity counted from the start of each half-cycle, for dQ/dV by cycle.

    Adds ``direction`` (``"charge"``/``"discharge"``; rest rows are dropped) and
    ``half_cycle_capacity_ampere_hour`` (unsigned, trapezoidal, from zero at the first sample
    of that direction in the cycle). Needs ``test_time_second``, ``voltage_volt``,
    ``current_ampere``, ``cycle_count`` (and groups by ``channel`` when present).
    """
    needed = ("test_time_second", "voltage_volt", "current_ampere", "cycle_count")
    missing = [c for c in needed if c not in samples.columns]
    if missing:
        raise DqdvError(f"dQ/dV: missing column(s) {missing}; have {samples.columns}")
    keys = ["channel", "cycle_count"] if "channel" in samples.columns else ["cycle_count"]
    i = pl.col("current_ampere")
    df = samples.filter(i.abs() >= rest_current_ampere).with_columns(
        pl.when(i > 0).then(pl.lit("charge")).otherwise(pl.lit("discharge")).alias("direction")
    )
    by = [*keys, "direction"]
    a = i.abs()
    dq = ((a + a.shift(1).over(by)) * pl.col("test_time_second").diff().over(by) / 7200.0).alias(
        "_dq"
    )
    return (
        df.with_columns(dq.fill_null(0.0))
        .with_columns(pl.col("_dq").cum_sum().over(by).alias("half_cycle_capacity_ampere_hour"))
        .drop("_dq")
    )


def dqdv_by_cycle(
    samples: pl.DataFrame,
    *,
    direction: Literal["charge", "discharge"] = "discharge",
    cycles: list[int] | None = None,
    **kwargs: float | str | int,
) -> pl.DataFrame:
    """dQ/dV of each cycle's charge or discharge, stacked: ``cycle_count``, ``voltage_volt``,
    ``dqdv_ampere_hour_per_volt`` (discharge curves sign-flipped, so their peaks are positive
    too).

    ``kwargs`` go to :func:`dqdv` (``step_volt``, ``smoothing``, ``window_volt``, ...).
    """
    hc = half_cycles(samples).filter(pl.col("direction") == direction)
    if cycles is not None:
        hc = hc.filter(pl.col("cycle_count").is_in(cycles))
    frames = []
    for (cyc,), part in hc.group_by(["cycle_count"], maintain_order=True):
        if part.height < 5:
            continue
        try:
            curve = dqdv(
                part["voltage_volt"].to_numpy(),
                part["half_cycle_capacity_ampere_hour"].to_numpy(),
                **kwargs,  # type: ignore[arg-type]
            )
        except DqdvError:
            continue  # a cycle cut short: no curve rather than no result at all
        frame = curve.to_frame()
        if direction == "discharge":  # voltage falls as capacity grows: flip, peaks positive
            frame = frame.with_columns(-pl.col("dqdv_ampere_hour_per_volt"))
        frames.append(frame.with_columns(pl.lit(cyc, dtype=pl.Int32).alias("cycle_count")))
    if not frames:
        raise DqdvError(f"no cycle has a {direction} long enough for dQ/dV")
    return pl.concat(frames).select("cycle_count", "voltage_volt", "dqdv_ampere_hour_per_volt")
