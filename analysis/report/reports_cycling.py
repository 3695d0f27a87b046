"""Cycling reports: V/I/T, the per-cycle summary, capacity fade with end of life, dQ/dV, and the
critical-current-density staircase (the figures are in :mod:`.figures_cycling`).

Each ``*_sections`` function adds its figures, tables and fits to a :class:`Report`; each
``report_*`` function makes a one-kind report and writes it to a folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from cellbench.core.errors import CellbenchError

from .document import Report, ReportFiles
from .figures_cycling import plot_capacity, plot_ccd, plot_dqdv, plot_fade, plot_time_series
from .reports_common import _fmt_pm, _suffix, _write
from .reports_pressure import (
    pressure_time_sections,
    pulse_pressure_sections,
    with_pressure_per_cycle,
)
from .style import ReportError, require_matplotlib

if TYPE_CHECKING:
    from cellbench.analysis.ccd import CCDResult
    from cellbench.analysis.fade import FadeReport

#: Most cycles drawn in a dQ/dV figure (evenly spread over the run).
DQDV_CYCLES = 5
#: Samples below this fraction of the largest |current| count as rest for dQ/dV.
REST_FRACTION = 1e-3
#: Width of the dQ/dV smoothing window in median voltage steps between samples.
DQDV_WINDOW_SAMPLES = 10
#: Smallest dQ/dV peak prominence reported, as a fraction of the curve's largest value.
PEAK_PROMINENCE = 0.15


def retention_series(summary: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, float]:
    """(cycles, retention fraction, reference capacity / Ah) from a cycle summary: retention is
    relative to the first complete cycle with a discharge."""
    from cellbench.analysis.fade import retention_from_summary

    ret = retention_from_summary(summary).filter(pl.col("capacity_retention") > 0)
    if ret.height == 0:
        raise ReportError("no complete cycle with a discharge capacity")
    first = ret.row(0, named=True)
    ref = first["discharge_capacity_ampere_hour"] / first["capacity_retention"]
    return (
        ret["cycle_count"].cast(pl.Float64).to_numpy(),
        ret["capacity_retention"].cast(pl.Float64).to_numpy(),
        float(ref),
    )


def _pick_cycles(cycles: Sequence[int], n: int = DQDV_CYCLES) -> list[int]:
    cycles = sorted(set(cycles))
    if len(cycles) <= n:
        return cycles
    idx = np.unique(np.round(np.linspace(0, len(cycles) - 1, n)).astype(int))
    return [cycles[i] for i in idx]


def dqdv_with_peaks(
    samples: pl.DataFrame,
    cycles: Sequence[int] | None = None,
    *,
    direction: str = "discharge",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """dQ/dV curves of ``cycles`` (default: up to five spread over the run) and their peaks
    (``cycle_count``, ``position`` / V, ``height`` / Ah V-1, ``area`` / Ah, ...)."""
    from cellbench.analysis.dqdv import Curve, DqdvError, dqdv_by_cycle, find_peaks

    # Rest rows carry the instrument's zero-current noise (nA), which half-cycle detection would
    # count as a tiny charge or discharge at constant voltage: a spike in dQ/dV. Drop them.
    i_abs = samples["current_ampere"].abs()
    i_max = float(i_abs.max() or 0.0)
    if i_max <= 0:
        raise ReportError("no current flows in the samples")
    active = samples.filter(i_abs >= REST_FRACTION * i_max)
    if cycles is None:
        cycles = _pick_cycles(
            [c for c in active["cycle_count"].unique().to_list() if c is not None]
        )
    # The filter window follows the sampling: DQDV_WINDOW_SAMPLES voltage steps wide (a
    # coarsely or irregularly sampled curve needs more of them), never under 10 mV.
    dv = np.abs(np.diff(active["voltage_volt"].to_numpy()))
    dv = dv[dv > 0]
    window = max(0.01, DQDV_WINDOW_SAMPLES * float(np.median(dv))) if dv.size else 0.01
    curves = dqdv_by_cycle(active, direction=direction, cycles=list(cycles), window_volt=window)
    peaks = []
    for (c,), part in curves.group_by(["cycle_count"], maintain_order=True):
        curve = Curve(
            part["voltage_volt"].to_numpy(),
            part["dqdv_ampere_hour_per_volt"].to_numpy(),
            "voltage_volt",
            "dqdv_ampere_hour_per_volt",
        )
        try:
            # Noise in a short or coarsely sampled half-cycle makes many small maxima: only
            # features above 15 % of the curve's height, three filter windows apart, count.
            prominence = PEAK_PROMINENCE * float(np.nanmax(np.abs(curve.y)))
            pk = find_peaks(curve, prominence=prominence, min_separation=3 * window)
        except DqdvError:
            continue
        if pk.height:
            peaks.append(pk.with_columns(pl.lit(c, dtype=pl.Int32).alias("cycle_count")))
    peak_frame = (
        pl.concat(peaks).select("cycle_count", pl.exclude("cycle_count"))
        if peaks
        else pl.DataFrame(
            schema={"cycle_count": pl.Int32, "position": pl.Float64, "height": pl.Float64}
        )
    )
    return curves, peak_frame


def time_series_sections(rep: Report, samples: pl.DataFrame, *, tag: str = "") -> None:
    """Voltage, current and (when recorded) temperature against time; the stack pressure
    beside them where the samples log it."""
    rep.section("Voltage, current and temperature" + (f" ({tag})" if tag else ""))
    rep.figure(
        f"voltage_current_temperature{_suffix(tag)}",
        plot_time_series(samples),
        "Cell voltage, current (positive on charge) and temperature against test time.",
    )
    pressure_time_sections(rep, samples, tag=tag)


def cycling_sections(
    rep: Report,
    samples: pl.DataFrame,
    *,
    summary: pl.DataFrame | None = None,
    fade: FadeReport | None = None,
    efficiency: str = "discharge/charge",
    active_mass_g: float | None = None,
    threshold: float = 0.8,
    dqdv_cycles: Sequence[int] | None = None,
    area_cm2: float | None = None,
    tag: str = "",
) -> None:
    """V/I/T against time, the per-cycle summary, capacity and efficiency with the fade fit and
    end-of-life projection, and dQ/dV. Parts the data cannot support become notes. Where the
    samples log stack pressure: pressure against time, pressure per cycle in the summary, and
    (pulses at several pressures) pulse resistance against pressure with its power-law fit
    (:mod:`.reports_pressure`; ``area_cm2`` / cm² gives the interface ASR)."""
    from cellbench.analysis.cycling import cycle_summary

    sfx = _suffix(tag)
    where = f" ({tag})" if tag else ""
    time_series_sections(rep, samples, tag=tag)
    if "cycle_count" not in samples.columns:
        rep.note("No cycle numbers in the samples: no per-cycle analysis.")
        pulse_pressure_sections(rep, samples, area_cm2=area_cm2, tag=tag)
        return
    rep.section(f"Cycling{where}")
    if summary is None:
        summary = cycle_summary(samples, efficiency=efficiency, active_mass_g=active_mass_g)  # type: ignore[arg-type]
    summary = with_pressure_per_cycle(summary, samples)
    rep.table(
        f"cycles{sfx}",
        summary,
        "Per-cycle summary"
        + (" (stack pressure / MPa per cycle)" if "pressure_median_megapascal" in summary else ""),
    )
    if summary.height < 2:
        rep.note("One cycle only: no capacity, efficiency or fade trend.")
    else:
        _capacity_and_fade(rep, summary, fade, threshold, sfx)
    try:
        curves, peaks = dqdv_with_peaks(samples, dqdv_cycles)
    except CellbenchError as exc:
        rep.note(f"No dQ/dV: {exc}")
    else:
        rep.figure(
            f"dqdv{sfx}",
            plot_dqdv(curves, peaks=peaks),
            "Differential capacity of the discharges of the cycles shown, peaks marked.",
        )
        rep.table(
            f"dqdv_peaks{sfx}", peaks, "dQ/dV peaks (position / V, height / Ah V⁻¹, area / Ah)"
        )
    pulse_pressure_sections(rep, samples, area_cm2=area_cm2, tag=tag)


def _capacity_and_fade(
    rep: Report, summary: pl.DataFrame, fade: FadeReport | None, threshold: float, sfx: str
) -> None:
    from cellbench.analysis.fade import analyze_fade

    ref = None
    if fade is None:
        try:
            x, y, ref = retention_series(summary)
            fade = analyze_fade(x, y, threshold=threshold)
        except CellbenchError as exc:
            rep.note(f"No capacity-fade fit: {exc}")
    else:
        try:
            ref = retention_series(summary)[2]
        except CellbenchError:
            fade = None
    if fade is not None:
        rep.fit(f"fade{sfx}", fade.to_dict(), "Capacity fade and end of life", _fade_summary(fade))
    rep.figure(
        f"capacity{sfx}",
        plot_capacity(summary, fade=fade, reference_capacity_ampere_hour=ref),
        "Charge and discharge capacity and coulombic efficiency against cycle"
        + (", with the fade fit and the end-of-life projection." if fade else "."),
    )
    if fade is not None:
        x, y, _ = retention_series(summary)
        rep.figure(
            f"retention{sfx}",
            plot_fade(x, y, fade),
            "Capacity retention against cycle with the chosen fit, the end-of-life "
            "threshold and the projected end of life with its prediction interval.",
        )


def _fade_summary(fade: FadeReport) -> dict[str, str]:
    eol = fade.end_of_life
    out = {
        "model": f"{fade.best.model} (best by {fade.criterion.upper()})",
        "cycles fitted": str(fade.best.n_points),
    }
    for k, v in fade.best.parameters.items():
        out[k] = _fmt_pm(v, fade.best.stderr.get(k))
    thr = f"{100 * eol.threshold:g} % retention"
    if eol.cycles is None:
        out[thr] = "not reached within the search horizon"
    else:
        pi = eol.prediction_interval
        text = f"cycle {eol.cycles:.0f}"
        if pi:
            text += f" ({100 * eol.confidence:g} % PI {pi[0]:.0f}–{pi[1]:.0f})"
        out[thr] = text + (" — extrapolated" if eol.extrapolated else "")
    if fade.knee is not None:
        sig = "significant" if fade.knee.significant else "not significant"
        out["knee"] = f"cycle {fade.knee.cycle:.0f} ± {fade.knee.stderr:.2g} ({sig})"
    return out


def fade_sections(
    rep: Report,
    cycles: Sequence[float] | np.ndarray,
    retention: Sequence[float] | np.ndarray,
    fade: FadeReport | None = None,
    *,
    threshold: float = 0.8,
    tag: str = "",
) -> FadeReport:
    """Retention against cycle with the fade fit and end-of-life projection, and the fit."""
    from cellbench.analysis.fade import analyze_fade

    sfx = _suffix(tag)
    if fade is None:
        fade = analyze_fade(cycles, retention, threshold=threshold)
    rep.section("Capacity fade" + (f" ({tag})" if tag else ""))
    rep.figure(
        f"retention{sfx}",
        plot_fade(cycles, retention, fade),
        "Capacity retention against cycle with the chosen fit, the end-of-life threshold "
        "and the projected end of life with its prediction interval.",
    )
    rep.table(
        f"retention{sfx}",
        pl.DataFrame(
            {
                "cycle_count": np.asarray(cycles, dtype=float),
                "capacity_retention": np.asarray(retention, dtype=float),
            }
        ),
        "Retention (fraction) per cycle",
    )
    rep.fit(f"fade{sfx}", fade.to_dict(), "Fade fit and end of life", _fade_summary(fade))
    return fade


def ccd_sections(
    rep: Report,
    samples: pl.DataFrame,
    area_cm2: float,
    *,
    result: CCDResult | None = None,
    tag: str = "",
) -> CCDResult:
    """The current-density staircase and voltage with the short marked; the step table."""
    from cellbench.analysis.ccd import critical_current_density

    sfx = _suffix(tag)
    if result is None:
        result = critical_current_density(samples, area_cm2)
    rep.section("Critical current density" + (f" ({tag})" if tag else ""))
    ccd = result.ccd_milliampere_per_square_centimeter
    verdict = (
        f"short at {result.short_current_density_milliampere_per_square_centimeter:.3g} "
        f"mA cm⁻² ({result.mechanism})"
        if result.shorted
        else "no short"
    )
    rep.figure(
        f"ccd{sfx}",
        plot_ccd(samples, result),
        f"Current-density staircase and cell voltage; {verdict}.",
    )
    rep.table(f"ccd_steps{sfx}", result.steps, "Staircase steps")
    data = result.to_dict()
    data.pop("steps")
    rep.fit(
        f"ccd{sfx}",
        data,
        "Critical current density",
        {
            "CCD": ("–" if ccd is None else f"{'' if result.shorted else '≥ '}{ccd:.4g} mA/cm²"),
            "short": verdict,
            "area": f"{result.area_cm2:g} cm²",
        },
    )
    return result


def report_cycling(
    samples: pl.DataFrame, out_dir: Path | str, *, title: str = "Cycling report", **options: Any
) -> ReportFiles:
    """V/I/T, per-cycle summary, capacity/efficiency with fade and end of life, dQ/dV.
    ``options`` go to :func:`cycling_sections`."""
    require_matplotlib()
    rep = Report(title)
    cycling_sections(rep, samples, **options)
    return _write(rep, out_dir)


def report_fade(
    cycles: Sequence[float] | np.ndarray,
    retention: Sequence[float] | np.ndarray,
    out_dir: Path | str,
    *,
    fade: FadeReport | None = None,
    threshold: float = 0.8,
    title: str = "Capacity fade report",
) -> ReportFiles:
    """Retention with the fade fit and the end-of-life projection (``retention`` a fraction)."""
    require_matplotlib()
    rep = Report(title)
    fade_sections(rep, cycles, retention, fade, threshold=threshold)
    return _write(rep, out_dir)


def report_ccd(
    samples: pl.DataFrame,
    area_cm2: float,
    out_dir: Path | str,
    *,
    result: CCDResult | None = None,
    title: str = "Critical current density report",
) -> ReportFiles:
    """The CCD staircase with the short marked, its steps and the result."""
    require_matplotlib()
    rep = Report(title)
    ccd_sections(rep, samples, area_cm2, result=result)
    return _write(rep, out_dir)
