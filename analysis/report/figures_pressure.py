"""Figures of stack pressure: pressure against time, and resistance (or interface ASR) against
pressure with the power-law fit of :mod:`cellbench.analysis.pressure`.

Each function is pure: frames or fit results in, a new :class:`matplotlib.figure.Figure` out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from .style import (
    COLORS,
    DARK,
    WIDE,
    ReportError,
    envelope,
    label,
    new_figure,
    shade_spans,
    styled,
    time_unit,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from cellbench.analysis.pressure import OffsetPowerLawFit, PowerLawFit

TIME = "test_time_second"
PRESSURE = "pressure_megapascal"
CYCLE = "cycle_count"
STEP = "step_count"
#: Purple of the Okabe–Ito palette: pressure, apart from V (blue), I (vermilion), T (green).
PRESSURE_COLOR = COLORS[3]


def _plain_log_axes(ax) -> None:
    """Log axes labelled 2, 5, 10, 20 (not 2×10⁰); minor labels thinned over many decades."""
    from matplotlib.ticker import LogFormatter

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1.5, 0.6)))


def _grid(p: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(p)), float(np.max(p))
    return np.geomspace(lo / 1.15, hi * 1.15, 200)


@styled
def plot_pressure_time(samples: pl.DataFrame, *, title: str | None = None) -> Figure:
    """Stack pressure / MPa against test time (same time unit and cycle shading as the V/I/T
    figure). ``samples``: one channel with ``test_time_second`` / s and ``pressure_megapascal``
    / MPa (rows without a reading are left out)."""
    for col in (TIME, PRESSURE):
        if col not in samples.columns:
            raise ReportError(f"the pressure figure needs column {col!r}; have {samples.columns}")
    df = samples.sort(TIME)
    p_all = df[PRESSURE].cast(pl.Float64).fill_nan(None)
    ok = p_all.is_not_null().to_numpy()
    if not ok.any():
        raise ReportError("no stack pressure reading in the samples")
    t_all = df[TIME].to_numpy()
    t_div, t_unit = time_unit(float(t_all[-1] - t_all[0]) if t_all.size else 0.0)
    x, y = envelope(t_all[ok], p_all.to_numpy()[ok].astype(float))
    fig = new_figure((7.0, 2.8))
    ax = fig.subplots(1, 1)
    ax.plot(x / t_div, y, color=PRESSURE_COLOR, linewidth=1.0)
    ax.set_ylabel(label("Stack pressure", "MPa"))
    ax.set_xlabel(label("Time", t_unit))
    ax.set_xlim(t_all[0] / t_div, t_all[-1] / t_div)
    lo, hi = float(np.min(y)), float(np.max(y))
    pad = max(0.05 * (hi - lo), 0.05 * max(abs(hi), 1.0))
    ax.set_ylim(min(0.0, lo - pad), hi + pad)
    key = CYCLE if CYCLE in df.columns else STEP if STEP in df.columns else None
    if key is not None:
        from .figures_cycling import _spans

        a, b = _spans(df, key)
        if a.size >= 2:
            shade_spans(ax, a / t_div, b / t_div)
    if title:
        ax.set_title(title, loc="left")
    return fig


@styled
def plot_resistance_pressure(
    pressure_megapascal: Sequence[float] | np.ndarray,
    resistance_ohm: Sequence[float] | np.ndarray,
    fit: OffsetPowerLawFit | None = None,
    *,
    what: str = "Pulse resistance",
    title: str | None = None,
) -> Figure:
    """Resistances / ohm against stack pressure / MPa on log axes, with ``R = R_0 + R_1 p^-m``
    (:func:`cellbench.analysis.pressure.fit_resistance_pressure`) and its ``R_0`` asymptote."""
    p = np.asarray(pressure_megapascal, dtype=float)
    r = np.asarray(resistance_ohm, dtype=float)
    if p.size == 0 or p.shape != r.shape:
        raise ReportError("the resistance-pressure figure needs pressures and resistances")
    fig = new_figure(WIDE)
    ax = fig.subplots(1, 1)
    ax.plot(p, r, "o", color=DARK, ms=5, label="measured")
    if fit is not None:
        grid = _grid(p)
        text = (
            f"$R = R_0 + R_1 p^{{-m}}$: m = {fit.exponent:.3f} ± {fit.exponent_stderr:.2g}, "
            f"$R_0$ = {fit.r_offset_ohm:.4g} Ω, $R_1$ = {fit.r_1mpa_ohm:.4g} Ω"
        )
        if fit.asr_1mpa_ohm_cm2 is not None:
            text += f"\n(interface ASR at 1 MPa {fit.asr_1mpa_ohm_cm2:.4g} Ω cm²)"
        ax.plot(grid, fit.predict(grid), "-", color=COLORS[0], lw=1.2, label=text)
        if fit.r_offset_ohm > 0:
            ax.axhline(
                fit.r_offset_ohm, color=COLORS[1], ls="--", lw=1.0, label="$R_0$ (pressure-free)"
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_axes(ax)
    ax.set_xlabel(label("Stack pressure", "MPa"))
    ax.set_ylabel(label(what, "Ω"))
    ax.legend(loc="upper right")
    if title:
        ax.set_title(title, loc="left", pad=2)
    return fig


@styled
def plot_asr_pressure(
    points: Mapping[str, tuple[np.ndarray, np.ndarray]],
    fits: Mapping[str, PowerLawFit],
    *,
    title: str | None = None,
) -> Figure:
    """Area-specific resistances / ohm cm^2 against stack pressure / MPa on log axes, one series
    per name (e.g. each arc of an impedance fit: ``{"R1": (p, asr)}``), each with its power law
    ``ASR = ASR_1 p^-m`` (:func:`cellbench.analysis.pressure.fit_asr_pressure`) where fitted."""
    if not points:
        raise ReportError("the ASR-pressure figure needs at least one series")
    fig = new_figure(WIDE)
    ax = fig.subplots(1, 1)
    for k, (name, (p, asr)) in enumerate(points.items()):
        color = COLORS[k % len(COLORS)]
        p = np.asarray(p, dtype=float)
        ax.plot(p, asr, "o", color=color, ms=5, label=f"{name} (measured)")
        fit = fits.get(name)
        if fit is not None:
            lo, hi = fit.exponent_interval
            grid = _grid(p)
            ax.plot(
                grid,
                fit.predict(grid),
                "-",
                color=color,
                lw=1.2,
                label=(
                    f"{name}: m = {fit.exponent:.3f} ({100 * fit.confidence:g} % CI "
                    f"{lo:.3f}–{hi:.3f}), $ASR_1$ = {fit.asr_1mpa_ohm_cm2:.4g} Ω cm²"
                ),
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_axes(ax)
    ax.set_xlabel(label("Stack pressure", "MPa"))
    ax.set_ylabel(label("ASR", "Ω cm²"))
    ax.legend(loc="upper right")
    if title:
        ax.set_title(title, loc="left", pad=2)
    return fig
