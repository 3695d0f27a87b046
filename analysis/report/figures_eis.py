"""Impedance figures: Nyquist, Bode with fit residuals, DRT, and fitted parameters against cycle.

Each function is pure: it takes spectra or analysis results and returns a new
:class:`matplotlib.figure.Figure`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from .style import (
    COLORS,
    SQUARE,
    WIDE,
    ReportError,
    label,
    new_figure,
    si_text,
    si_unit,
    styled,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from cellbench.analysis.drt import DRTResult
    from cellbench.analysis.eis_fit import FitResult
    from cellbench.analysis.fade import CurveFit


#: Most DRT peaks labelled with their resistance (the largest ones), per spectrum.
DRT_LABELS = 5


@dataclass(frozen=True)
class EisCurve:
    """One spectrum to draw: frequency / Hz, complex Z / ohm (Z'' < 0 capacitive), and
    optionally the fitted Z at the same frequencies."""

    frequency_hz: np.ndarray
    z: np.ndarray
    z_fit: np.ndarray | None = None
    label: str = ""

    @classmethod
    def from_fit(cls, fit: FitResult, label: str = "") -> EisCurve:
        """The measured and fitted spectrum of an equivalent-circuit fit."""
        return cls(
            np.asarray(fit.frequency_hz), np.asarray(fit.z_data), np.asarray(fit.z_fit), label
        )

    def __post_init__(self) -> None:
        f = np.asarray(self.frequency_hz, dtype=float)
        z = np.asarray(self.z, dtype=complex)
        if f.ndim != 1 or f.shape != z.shape or f.size == 0:
            raise ReportError(
                f"a spectrum needs equal-length 1-D frequency and impedance arrays, got "
                f"{f.shape} and {z.shape}"
            )
        if self.z_fit is not None and np.shape(self.z_fit) != z.shape:
            raise ReportError(f"z_fit has shape {np.shape(self.z_fit)}, the data {z.shape}")


def _curves(curves: EisCurve | Sequence[EisCurve]) -> list[EisCurve]:
    out = [curves] if isinstance(curves, EisCurve) else list(curves)
    if not out:
        raise ReportError("no spectrum to plot")
    return out


def _smooth_fit(c: EisCurve) -> tuple[np.ndarray, np.ndarray] | None:
    """The fit at the measured frequencies, ordered by frequency (a line through them)."""
    if c.z_fit is None:
        return None
    order = np.argsort(c.frequency_hz)
    return np.asarray(c.frequency_hz)[order], np.asarray(c.z_fit)[order]


@styled
def plot_nyquist(
    curves: EisCurve | Sequence[EisCurve],
    *,
    title: str | None = None,
    decade_labels: bool = True,
) -> Figure:
    """Nyquist plot (-Z'' against Z', equal aspect) of one or more spectra with their fits.

    Points are the data, lines the fits; frequency decades of the first spectrum are labelled.
    """
    items = _curves(curves)
    allz = np.concatenate([c.z for c in items])
    div, unit = si_unit(np.concatenate([allz.real, allz.imag]), "Ω")
    zs = allz / div
    x_span = float(np.ptp(zs.real)) or 1.0
    y_span = float(max(-zs.imag.min(), 0.0) - min(-zs.imag.max(), 0.0)) or x_span
    # Equal aspect: size the figure to the data so a flat arc does not float in white space.
    height = round(float(np.clip(1.3 + 4.2 * y_span / x_span, 2.6, SQUARE[1] + 0.8)), 1)
    fig = new_figure((SQUARE[0] + 0.6, height))
    ax = fig.subplots(1, 1)
    for k, c in enumerate(items):
        color = COLORS[k % len(COLORS)]
        z = np.asarray(c.z) / div
        ax.plot(z.real, -z.imag, "o", ms=3.5, mfc="none", color=color, label=c.label or None)
        fit = _smooth_fit(c)
        if fit is not None:
            ax.plot(fit[1].real / div, -fit[1].imag / div, "-", color=color, lw=1.0)
    if any(c.z_fit is not None for c in items):
        ax.plot([], [], "-", color="0.4", label="fit")
    if decade_labels:
        c = items[0]
        f = np.asarray(c.frequency_hz)
        placed: list[complex] = []
        for d in range(int(np.floor(np.log10(f.min()))), int(np.ceil(np.log10(f.max()))) + 1):
            k = int(np.argmin(np.abs(np.log10(f) - d)))
            zk = c.z[k] / div
            crowded = any(abs(zk - p) < 0.04 * max(x_span, y_span) for p in placed)
            if abs(np.log10(f[k]) - d) < 0.1 and not crowded:
                placed.append(zk)
                ax.annotate(
                    _hz(10.0**d),
                    (zk.real, -zk.imag),
                    xytext=(3, -9),
                    textcoords="offset points",
                    fontsize=7,
                    color="0.35",
                )
    ax.set_aspect("equal", adjustable="datalim")
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set_xlabel(label("Z′", unit))
    ax.set_ylabel(label("−Z″", unit))
    if any(c.label for c in items) or any(c.z_fit is not None for c in items):
        ax.legend(loc="upper left")
    if title:
        ax.set_title(title, loc="left")
    return fig


_UNIT_TEXT = {"ohm": "Ω", "ohm s^-1/2": "Ω s⁻¹ᐟ²", "F s^(n-1)": "F sⁿ⁻¹", "": "1"}


def pretty_unit(unit: str) -> str:
    """A circuit parameter's unit as printed on an axis (``ohm`` -> ``Ω``; exponents: ``1``)."""
    return _UNIT_TEXT.get(unit, unit)


def _hz(f: float) -> str:
    for scale, prefix in ((1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m")):
        if f >= scale * 0.999:
            return f"{f / scale:g} {prefix}Hz"
    return f"{f:g} Hz"


@styled
def plot_bode(
    curves: EisCurve | Sequence[EisCurve],
    *,
    title: str | None = None,
) -> Figure:
    """Bode plot: |Z| and phase against frequency, and (when a fit is given) the fit residuals
    (Z - Z_fit) / |Z| in % of the real and imaginary parts."""
    items = _curves(curves)
    has_fit = any(c.z_fit is not None for c in items)
    fig = new_figure((7.0, 6.0) if has_fit else WIDE)
    n = 3 if has_fit else 2
    axes = fig.subplots(n, 1, sharex=True, height_ratios=[1.3, 1, 0.8][:n])
    ax_m, ax_p = axes[0], axes[1]
    allz = np.concatenate([c.z for c in items])
    div, unit = si_unit(np.abs(allz), "Ω")
    for k, c in enumerate(items):
        color = COLORS[k % len(COLORS)]
        f = np.asarray(c.frequency_hz)
        z = np.asarray(c.z)
        ax_m.loglog(f, np.abs(z) / div, "o", ms=3.5, mfc="none", color=color, label=c.label or None)
        ax_p.semilogx(f, -np.degrees(np.angle(z)), "s", ms=3, mfc="none", color=color)
        fit = _smooth_fit(c)
        if fit is not None:
            ax_m.loglog(fit[0], np.abs(fit[1]) / div, "-", color=color, lw=1.0)
            ax_p.semilogx(fit[0], -np.degrees(np.angle(fit[1])), "-", color=color, lw=1.0)
            r = (z - c.z_fit) / np.abs(z) * 100
            order = np.argsort(f)
            axes[2].semilogx(
                f[order],
                r.real[order],
                "o-",
                ms=3,
                lw=0.7,
                color=color,
                label="real" if k == 0 else None,
            )
            axes[2].semilogx(
                f[order],
                r.imag[order],
                "^--",
                ms=3,
                lw=0.7,
                color=color,
                mfc="none",
                label="imaginary" if k == 0 else None,
            )
    if has_fit:
        ax_m.plot([], [], "-", color="0.4", label="fit")
        axes[2].axhline(0, color="0.5", lw=0.6)
        axes[2].set_ylabel(label("Residual", "%"))
        lim = max(1.0, float(np.nanmax(np.abs(axes[2].get_ylim()))))
        axes[2].set_ylim(-lim, lim)
        axes[2].legend(loc="upper left", ncols=2)
    _plain_log_ticks(ax_m)
    ax_m.set_ylabel(label("|Z|", unit))
    ax_p.set_ylabel(label("−Phase", "°"))
    axes[-1].set_xlabel(label("Frequency", "Hz"))
    if any(c.label for c in items) or has_fit:
        ax_m.legend(loc="upper right")
    if title:
        ax_m.set_title(title, loc="left")
    return fig


def _tau_to_f(x: np.ndarray) -> np.ndarray:
    """f = 1/(2 pi tau), and back (the same map); matplotlib probes it at 0 too."""
    with np.errstate(divide="ignore"):
        return 1 / (2 * np.pi * np.asarray(x, dtype=float))


def _plain_log_ticks(ax) -> None:
    """Plain numbers (80, 90) instead of 8 x 10^1 on a log axis spanning less than a decade."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo < 10:
        ax.yaxis.set_major_locator(LogLocator(subs=tuple(range(1, 10))))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())


@styled
def plot_drt(
    results: DRTResult | Sequence[DRTResult],
    *,
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Distribution of relaxation times: gamma / ohm against tau / s (log), peaks marked with
    their resistance; the top axis gives the matching frequency f = 1 / (2 pi tau)."""
    items = [results] if hasattr(results, "tau_s") else list(results)  # type: ignore[arg-type]
    if not items:
        raise ReportError("no DRT to plot")
    names = list(labels) if labels is not None else [""] * len(items)
    if len(names) != len(items):
        raise ReportError(f"{len(names)} labels for {len(items)} DRT results")
    div, unit = si_unit(np.concatenate([np.asarray(r.gamma_ohm) for r in items]), "Ω")
    fig = new_figure(WIDE)
    ax = fig.subplots(1, 1)
    for k, (r, name) in enumerate(zip(items, names, strict=True)):
        color = COLORS[k % len(COLORS)]
        tau = np.asarray(r.tau_s)
        g = np.asarray(r.gamma_ohm) / div
        ax.semilogx(tau, g, "-", color=color, lw=1.2, label=name or None)
        ax.fill_between(tau, g, color=color, alpha=0.08, lw=0)
        # Label the largest peaks only: a noisy DRT has many small ones that would bury them.
        big = sorted(r.peaks, key=lambda p: -p.r_ohm)[:DRT_LABELS]
        for p in big:
            gk = float(np.interp(np.log(p.tau_s), np.log(tau), g))
            ax.plot([p.tau_s], [gk], "v", color=color, mec="k", mew=0.5, ms=5)
            ax.annotate(
                si_text(p.r_ohm, "Ω"),
                (p.tau_s, gk),
                xytext=(0, 5),
                textcoords="offset points",
                ha="center",
                fontsize=7,
                color=color,
                bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
            )
    ax.set_ylim(bottom=0)
    top = ax.secondary_xaxis("top", functions=(_tau_to_f, _tau_to_f))
    top.set_xlabel(label("Frequency 1/(2πτ)", "Hz"))
    ax.set_xlabel(label("Relaxation time τ", "s"))
    ax.set_ylabel(label("γ(ln τ)", unit))
    if any(names):
        ax.legend(loc="upper left")
    if title:
        ax.set_title(title, loc="left", pad=2)
    return fig


@styled
def plot_eis_parameters(
    table: pl.DataFrame,
    units: Mapping[str, str],
    *,
    x: str = "cycle_count",
    parameters: Sequence[str] | None = None,
    growth: Mapping[str, CurveFit] | None = None,
    title: str | None = None,
) -> Figure:
    """Fitted circuit parameters against ``x`` (cycle or time), one panel each, with standard
    errors as error bars, and growth-law fits where given.

    ``table``: from :func:`cellbench.analysis.eis_batch.fit_spectra` (parameter columns and
    ``<name>_stderr``); ``units``: parameter name -> unit (``Circuit.param_units``). By default
    the resistances are shown. ``growth``: parameter name -> fit from
    :func:`cellbench.analysis.fade.fit_growth`, drawn as a line.
    """
    if x not in table.columns:
        raise ReportError(f"the parameter figure needs column {x!r}; the table has {table.columns}")
    names = (
        list(parameters)
        if parameters is not None
        else [n for n in units if n.startswith("R") and n in table.columns]
    )
    names = [n for n in names if n in table.columns]
    if not names:
        raise ReportError(f"no parameters to plot among {table.columns}")
    fig = new_figure((7.0, min(1.6 + 1.3 * len(names), 8.0)))
    axes = np.atleast_1d(fig.subplots(len(names), 1, sharex=True))
    xs = table[x].cast(pl.Float64).to_numpy()
    x_label = {
        "cycle_count": "Cycle number",
        "test_time_second": label("Time", "s"),
        "sweep_index": "Sweep number",
    }.get(x, x)
    for k, (ax, n) in enumerate(zip(axes, names, strict=True)):
        y = table[n].cast(pl.Float64).to_numpy()
        err_col = f"{n}_stderr"
        err = table[err_col].cast(pl.Float64).to_numpy() if err_col in table.columns else None
        if err is not None:
            err = np.where(np.isfinite(err), err, np.nan)
        color = COLORS[k % len(COLORS)]
        fit = (growth or {}).get(n)
        ax.errorbar(
            xs, y, yerr=err, fmt="o" if fit else "o-", ms=3.5, lw=0.8, capsize=2, color=color
        )
        if fit is not None:
            grid = np.linspace(np.nanmin(xs), np.nanmax(xs), 200)
            terms = ", ".join(f"{k} = {v:.3g}" for k, v in fit.parameters.items())
            ax.plot(
                grid,
                fit.predict(grid),
                "-",
                color="0.3",
                lw=1.0,
                label=f"{fit.model} growth: {terms}",
            )
            ax.legend(loc="best")
        ax.set_ylabel(label(n, pretty_unit(units.get(n, ""))))
    if x in ("cycle_count", "sweep_index"):
        from matplotlib.ticker import MaxNLocator

        axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel(x_label)
    if title:
        axes[0].set_title(title, loc="left")
    return fig
