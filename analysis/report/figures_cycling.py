"""Figures of time series and cycling: V/I/T against time, capacity and efficiency, fade, dQ/dV,
and the critical-current-density staircase.

Each function is pure: it takes frames or analysis results and returns a new
:class:`matplotlib.figure.Figure`; nothing is shown or saved here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from .style import (
    BLUE,
    DARK,
    GREEN,
    ORANGE,
    TALL,
    VERMILION,
    WIDE,
    ReportError,
    envelope,
    label,
    new_figure,
    shade_spans,
    si_unit,
    styled,
    time_unit,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from cellbench.analysis.ccd import CCDResult
    from cellbench.analysis.fade import FadeReport

TIME = "test_time_second"
VOLTAGE = "voltage_volt"
CURRENT = "current_ampere"
TEMPERATURE = "temperature_celsius"
CYCLE = "cycle_count"
STEP = "step_count"
#: Cycle numbers are counts: the axis has no unit.
CYCLE_LABEL = "Cycle number"
#: The capacity figure extends its cycle axis to the end-of-life projection only when that lies
#: within this multiple of the last measured cycle.
PROJECTION_SPAN = 1.5


def _need(df: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ReportError(f"{what} needs columns {missing}; the frame has {df.columns}")
    if df.height == 0:
        raise ReportError(f"{what}: the frame has no rows")


def _spans(df: pl.DataFrame, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) times of each run of equal ``key`` values, in time order."""
    g = (
        df.select(TIME, key)
        .drop_nulls()
        .with_columns((pl.col(key) != pl.col(key).shift(1)).fill_null(True).cum_sum().alias("_r"))
        .group_by("_r", maintain_order=True)
        .agg(pl.col(TIME).min().alias("a"), pl.col(TIME).max().alias("b"))
    )
    return g["a"].to_numpy(), g["b"].to_numpy()


@styled
def plot_time_series(samples: pl.DataFrame, *, title: str | None = None) -> Figure:
    """Voltage, current and (when recorded) temperature against time, sharing the time axis.

    ``samples``: one channel of a ``samples`` frame (``test_time_second`` / s, ``voltage_volt``
    / V, ``current_ampere`` / A; optional ``temperature_celsius`` / degC). Cycles (or, without
    ``cycle_count``, steps) are shaded alternately. Long runs are thinned to a min/max envelope
    so spikes stay visible.
    """
    _need(samples, (TIME, VOLTAGE, CURRENT), "the V/I/T figure")
    df = samples.sort(TIME)
    has_t = TEMPERATURE in df.columns and df[TEMPERATURE].drop_nulls().drop_nans().len() > 0
    t = df[TIME].to_numpy()
    t_div, t_unit = time_unit(float(t[-1] - t[0]) if t.size else 0.0)
    i_div, i_unit = si_unit(df[CURRENT].to_numpy(), "A")
    rows = 3 if has_t else 2
    fig = new_figure((7.0, 5.6) if has_t else WIDE)
    axes = fig.subplots(rows, 1, sharex=True, height_ratios=[1.4, 1, 0.8][:rows])
    traces = [
        (VOLTAGE, 1.0, label("Voltage", "V"), BLUE),
        (CURRENT, i_div, label("Current", i_unit), VERMILION),
    ]
    if has_t:
        traces.append((TEMPERATURE, 1.0, label("Temperature", "°C"), GREEN))
    for ax, (col, div, ylabel, color) in zip(axes, traces, strict=True):
        y = df[col].cast(pl.Float64).to_numpy()
        x, y = envelope(t, y)
        ax.plot(x / t_div, y / div, color=color, linewidth=0.9)
        ax.set_ylabel(ylabel)
    key = CYCLE if CYCLE in df.columns else STEP if STEP in df.columns else None
    if key is not None:
        a, b = _spans(df, key)
        if a.size < 2:
            key = None  # one cycle: nothing to tell apart
        for ax in axes:
            shade_spans(ax, a / t_div, b / t_div)
    axes[-1].set_xlabel(label("Time", t_unit))
    axes[0].set_xlim(t[0] / t_div, t[-1] / t_div)
    if key is not None:
        kind = "cycles" if key == CYCLE else "steps"
        axes[0].set_title(f"{title + ': ' if title else ''}alternate {kind} shaded", loc="left")
    elif title:
        axes[0].set_title(title, loc="left")
    return fig


def _fade_overlay(
    ax: Axes, report: FadeReport, scale: float, x_max: float, horizon: float | None = None
) -> float:
    """Draw the fitted fade curve (scaled to ``ax``'s units), the end-of-life threshold and the
    projected cycle with its interval; returns the x extent needed to show them (at most
    ``horizon`` when given: the projection is then stated in the legend only)."""
    eol = report.end_of_life
    target = x_max
    if eol.cycles is not None and math.isfinite(eol.cycles):
        hi = eol.prediction_interval[1] if eol.prediction_interval else eol.cycles
        target = max(x_max, min(float(hi), 4 * max(eol.cycles, x_max)))
    if horizon is not None:
        target = min(target, horizon)
    x = np.linspace(1.0, max(target * 1.05 if horizon is None else target, x_max), 400)
    y = report.best.predict(x) * scale
    fit_label = f"{report.best.model} fit ({report.criterion.upper()})"
    ax.plot(x, y, color=VERMILION, linewidth=1.2, label=fit_label, zorder=3)
    beyond = eol.cycles is None or not math.isfinite(eol.cycles) or eol.cycles > x[-1]
    if horizon is not None and beyond:  # the threshold line would only squash the data
        ax.plot([], [], color="none", label=_eol_text(report) + ", beyond this axis")
        return float(x[-1])
    ax.axhline(eol.threshold * scale, color="0.35", linestyle="--", linewidth=0.9, zorder=2)
    ax.annotate(
        f"end of life: {100 * eol.threshold:g} %",
        xy=(0.0, eol.threshold * scale),
        xycoords=("axes fraction", "data"),
        xytext=(4, 3),
        textcoords="offset points",
        fontsize=7.5,
        color="0.3",
    )
    if eol.cycles is not None and math.isfinite(eol.cycles):
        interval = eol.prediction_interval or eol.confidence_interval
        if interval and interval[0] < x[-1]:
            ax.axvspan(
                interval[0], min(interval[1], x[-1]), color=VERMILION, alpha=0.10, lw=0, zorder=1
            )
        text = _eol_text(report)
        if eol.cycles <= x[-1]:
            ax.axvline(eol.cycles, color=VERMILION, linewidth=0.9, linestyle=":", zorder=2)
        else:
            text += ", beyond this axis"
        ax.plot([], [], color=VERMILION, linestyle=":", label=text)
    else:
        ax.plot([], [], color="none", label=_eol_text(report))
    knee = report.knee
    if knee is not None and knee.significant:
        ax.axvline(knee.cycle, color=ORANGE, linewidth=0.9, linestyle="-.", zorder=2)
        ax.plot([], [], color=ORANGE, linestyle="-.", label=f"knee ≈ cycle {knee.cycle:.0f}")
    return float(x[-1])


def _eol_text(report: FadeReport) -> str:
    eol = report.end_of_life
    pct = f"{100 * eol.threshold:g} %"
    if eol.cycles is None or not math.isfinite(eol.cycles):
        return f"{pct} retention not reached within the search horizon"
    text = f"{pct} retention ≈ cycle {eol.cycles:.0f}"
    interval = eol.prediction_interval or eol.confidence_interval
    if interval:
        kind = "PI" if eol.prediction_interval else "CI"
        text += f" ({100 * eol.confidence:g} % {kind} {interval[0]:.0f}–{interval[1]:.0f})"
    return text


def _cycle_axis(ax: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(CYCLE_LABEL)


@styled
def plot_capacity(
    summary: pl.DataFrame,
    *,
    fade: FadeReport | None = None,
    reference_capacity_ampere_hour: float | None = None,
    title: str | None = None,
) -> Figure:
    """Charge and discharge capacity (top) and coulombic efficiency (bottom) against cycle.

    ``summary``: from :func:`cellbench.analysis.cycling.cycle_summary`. With ``fade`` (from
    :func:`cellbench.analysis.fade.analyze_fade` on retention relative to
    ``reference_capacity_ampere_hour``) the fitted curve, the end-of-life threshold and the
    projected end-of-life cycle with its interval are drawn on the capacity axis.
    """
    _need(summary, (CYCLE, "discharge_capacity_ampere_hour"), "the capacity figure")
    df = summary.sort(CYCLE)
    cyc = df[CYCLE].cast(pl.Float64).to_numpy()
    qd = df["discharge_capacity_ampere_hour"].cast(pl.Float64).to_numpy()
    qc = (
        df["charge_capacity_ampere_hour"].cast(pl.Float64).to_numpy()
        if "charge_capacity_ampere_hour" in df.columns
        else None
    )
    q_div, q_unit = si_unit(np.concatenate([qd, qc]) if qc is not None else qd, "Ah")
    has_ce = "coulombic_efficiency" in df.columns and df["coulombic_efficiency"].drop_nulls().len()
    fig = new_figure(TALL if has_ce else WIDE)
    if has_ce:
        ax, ax_ce = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    else:
        ax, ax_ce = fig.subplots(1, 1), None
    if qc is not None:
        ax.plot(cyc, qc / q_div, "o", color=BLUE, mfc="none", ms=3.5, label="charge")
    ax.plot(cyc, qd / q_div, "o", color=DARK, ms=3.5, label="discharge")
    x_end = float(cyc.max()) if cyc.size else 1.0
    if fade is not None:
        ref = reference_capacity_ampere_hour
        if ref is None:
            raise ReportError("a fade overlay needs reference_capacity_ampere_hour")
        # Show the projection on this axis only when it does not squash the measured cycles
        # (plot_fade draws the full projection).
        eol = fade.end_of_life.cycles
        horizon = x_end * PROJECTION_SPAN
        reach = eol is not None and math.isfinite(eol) and eol <= horizon
        x_end = _fade_overlay(ax, fade, ref / q_div, x_end, horizon=None if reach else x_end)
        ax.set_xlim(0, x_end * 1.02)
        top = ax.secondary_yaxis(
            "right", functions=(lambda q: 100 * q * q_div / ref, lambda r: r * ref / q_div / 100)
        )
        top.set_ylabel(label("Retention", "%"))
    ax.set_ylabel(label("Capacity", q_unit))
    ax.legend(loc="best", ncols=2)
    if ax_ce is not None:
        ce = df["coulombic_efficiency"].cast(pl.Float64).to_numpy() * 100
        ax_ce.plot(cyc, ce, "s", color=GREEN, ms=3)
        finite = ce[np.isfinite(ce)]
        if finite.size:  # outliers (a formation cycle) must not flatten the rest
            lo, hi = np.percentile(finite, [5, 100])
            pad = max(0.2, 0.15 * (hi - lo))
            ax_ce.set_ylim(max(lo - pad, float(finite.min()) - pad, 0), min(hi + pad, 200))
        ax_ce.set_ylabel(label("Coulombic eff.", "%"))
        _cycle_axis(ax_ce)
    else:
        _cycle_axis(ax)
    if title:
        ax.set_title(title, loc="left")
    return fig


@styled
def plot_fade(
    cycles: Sequence[float] | np.ndarray,
    retention: Sequence[float] | np.ndarray,
    report: FadeReport,
    *,
    title: str | None = None,
) -> Figure:
    """Capacity retention (%) against cycle with the chosen fit, the end-of-life threshold and
    the projected end-of-life cycle with its interval (and the knee when significant).

    ``retention`` is a fraction; ``report`` from :func:`cellbench.analysis.fade.analyze_fade`.
    """
    x = np.asarray(cycles, dtype=float)
    y = np.asarray(retention, dtype=float)
    if x.size == 0 or x.size != y.size:
        raise ReportError("the fade figure needs as many retention values as cycles (> 0)")
    fig = new_figure(WIDE)
    ax = fig.subplots(1, 1)
    used = report.best.n_points or x.size
    ax.plot(x[:used], 100 * y[:used], "o", color=DARK, ms=3.5, label="measured")
    if used < x.size:
        ax.plot(x[used:], 100 * y[used:], "o", color="0.6", ms=3.5, label="not fitted")
    x_end = _fade_overlay(ax, report, 100.0, float(x.max()))
    ax.set_xlim(0, x_end)
    _cycle_axis(ax)
    ax.set_ylabel(label("Capacity retention", "%"))
    ax.legend(loc="lower left")
    if title:
        ax.set_title(title, loc="left")
    return fig


@styled
def plot_dqdv(
    curves: pl.DataFrame,
    *,
    peaks: pl.DataFrame | None = None,
    direction: str = "discharge",
    title: str | None = None,
) -> Figure:
    """dQ/dV against voltage for several cycles, coloured by cycle number, peaks marked.

    ``curves``: from :func:`cellbench.analysis.dqdv.dqdv_by_cycle` (``cycle_count``,
    ``voltage_volt``, ``dqdv_ampere_hour_per_volt``). ``peaks``: optional ``cycle_count``,
    ``position`` (V) and ``height`` (Ah/V) rows (from :func:`cellbench.analysis.dqdv.find_peaks`).
    """
    _need(curves, (CYCLE, VOLTAGE, "dqdv_ampere_hour_per_volt"), "the dQ/dV figure")
    import matplotlib as mpl

    cycles = sorted(curves[CYCLE].unique().to_list())
    y_div, y_unit = si_unit(curves["dqdv_ampere_hour_per_volt"].to_numpy(), "Ah")
    cmap = mpl.colormaps["viridis"]
    norm = mpl.colors.Normalize(vmin=min(cycles), vmax=max(max(cycles), min(cycles) + 1))
    fig = new_figure(WIDE)
    ax = fig.subplots(1, 1)
    for c in cycles:
        part = curves.filter(pl.col(CYCLE) == c).sort(VOLTAGE)
        color = cmap(norm(c) * 0.9)  # the palest yellow end of viridis is hard to see on white
        ax.plot(part[VOLTAGE], part["dqdv_ampere_hour_per_volt"] / y_div, color=color, lw=1.1)
        if peaks is not None and peaks.height:
            pk = peaks.filter(pl.col(CYCLE) == c)
            ax.plot(
                pk["position"], pk["height"].abs() / y_div, "v", color=color, ms=5, mec="k", mew=0.5
            )
    if peaks is not None and peaks.height:
        ax.plot([], [], "v", color="0.6", mec="k", mew=0.5, label="peaks")
        ax.legend(loc="upper left")
    shown = mpl.colors.ListedColormap(cmap(np.linspace(0, 0.9, 256)))
    sm = mpl.cm.ScalarMappable(norm=norm, cmap=shown)
    cb = fig.colorbar(sm, ax=ax, pad=0.01, aspect=30)
    cb.set_label(CYCLE_LABEL)
    if len(cycles) <= 12:
        cb.set_ticks(cycles)
    ax.set_xlabel(label("Voltage", "V"))
    ax.set_ylabel(label(f"dQ/dV ({direction})", f"{y_unit}/V"))
    if title:
        ax.set_title(title, loc="left")
    return fig


@styled
def plot_ccd(
    samples: pl.DataFrame,
    result: CCDResult,
    *,
    title: str | None = None,
) -> Figure:
    """Critical-current-density staircase: current density (top) and voltage (bottom) against
    time, with the short (time, level, mechanism) marked and the CCD stated.

    ``samples``: the symmetric-cell staircase (``test_time_second``, ``voltage_volt``,
    ``current_ampere``); ``result`` from :func:`cellbench.analysis.ccd.critical_current_density`.
    """
    _need(samples, (TIME, VOLTAGE, CURRENT), "the CCD figure")
    df = samples.sort(TIME)
    t = df[TIME].to_numpy()
    t_div, t_unit = time_unit(float(t[-1] - t[0]))
    j = df[CURRENT].to_numpy() / result.area_cm2 * 1e3  # mA/cm2
    v = df[VOLTAGE].to_numpy()
    v_div, v_unit = si_unit(v, "V")
    fig = new_figure(TALL)
    ax_j, ax_v = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1.3])
    xj, yj = envelope(t, j)
    ax_j.plot(xj / t_div, yj, color=VERMILION, lw=0.9, drawstyle="steps-post")
    ax_j.set_ylabel(label("Current density", "mA cm⁻²"))
    xv, yv = envelope(t, v)
    ax_v.plot(xv / t_div, yv / v_div, color=BLUE, lw=0.9)
    ax_v.set_ylabel(label("Voltage", v_unit))
    ax_v.set_xlabel(label("Time", t_unit))
    steps = result.steps
    if steps.height and "test_time_start_second" in steps.columns:
        a = steps["test_time_start_second"].to_numpy() / t_div
        b = steps["test_time_end_second"].to_numpy() / t_div
        for ax in (ax_j, ax_v):
            shade_spans(ax, a, b)
    if result.ccd_milliampere_per_square_centimeter is not None:
        ccd = result.ccd_milliampere_per_square_centimeter
        prefix = "CCD" if result.shorted else "CCD ≥"
        ax_j.axhline(ccd, color="0.35", ls="--", lw=0.9, label=f"{prefix} {ccd:.3g} mA cm⁻²")
        if not result.shorted:
            ax_j.axhline(-ccd, color="0.35", ls="--", lw=0.9)
    if result.shorted and result.short_time_second is not None:
        ts = result.short_time_second / t_div
        jd = result.short_current_density_milliampere_per_square_centimeter
        for ax in (ax_j, ax_v):
            ax.axvline(ts, color="#B00000", lw=1.1)
        k = int(np.searchsorted(t, result.short_time_second))
        k = min(k, t.size - 1)
        ax_v.plot([ts], [v[k] / v_div], "X", color="#B00000", ms=8, mec="k", mew=0.5, zorder=5)
        ax_v.annotate(
            f"short ({result.mechanism}) at {jd:.3g} mA cm⁻²",
            xy=(ts, v[k] / v_div),
            xytext=(-8, 12),
            textcoords="offset points",
            ha="right",
            fontsize=8,
            color="#B00000",
        )
        ax_j.plot([], [], color="#B00000", label="short")
    ax_j.legend(loc="best")
    ax_j.set_xlim(t[0] / t_div, t[-1] / t_div)
    if title:
        ax_j.set_title(title, loc="left")
    return fig
