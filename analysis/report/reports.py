"""Reports per analysis kind (cycling, EIS, fade, conductivity, CCD) and for a whole run.

Each ``*_sections`` function adds its figures, tables and fits to a :class:`Report`; each
``report_*`` function makes a one-kind report and writes it to a folder. :func:`report_run` puts
together everything a run's data supports. The inputs are frames and analysis results (never
paths): loading run folders and vendor files is the caller's job
(:func:`cellbench.cli.report.report_path` does it for the command line).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from cellbench.core.errors import CellbenchError

from .document import Report, ReportFiles
from .figures_conductivity import plot_arrhenius
from .figures_cycling import plot_capacity, plot_ccd, plot_dqdv, plot_fade, plot_time_series
from .figures_eis import EisCurve, plot_bode, plot_drt, plot_eis_parameters, plot_nyquist
from .style import ReportError, require_matplotlib

if TYPE_CHECKING:
    from cellbench.analysis.ccd import CCDResult
    from cellbench.analysis.conductivity import ConductivityFit
    from cellbench.analysis.eis_fit import FitResult
    from cellbench.analysis.fade import FadeReport
    from cellbench.core.schema import RunMeta

#: Circuits tried (lowest BIC wins) when a spectrum comes without one: a bulk/series resistance
#: with one or two arcs, ending in a blocking CPE or a diffusion element.
CANDIDATE_CIRCUITS: tuple[str, ...] = (
    "R0-p(R1,CPE1)",
    "R0-p(R1,CPE1)-CPE2",
    "R0-p(R1,CPE1)-W1",
    "R0-p(R1,CPE1)-Ws1",
    "R0-p(R1,CPE1)-p(R2,CPE2)",
    "R0-p(R1,CPE1)-p(R2,CPE2)-CPE3",
)
#: Event kinds listed in a run report (the rest, step starts and ends, are routine).
NOTABLE_EVENTS = ("alarm", "fault", "gap", "reconnect")
#: Fewest distinct cycles for a growth-law fit of a resistance against cycle.
MIN_GROWTH_CYCLES = 4
#: Sweeps within this many kelvin of each other count as one temperature.
ISOTHERMAL_K = 2.0
#: Most cycles drawn in a dQ/dV figure (evenly spread over the run).
DQDV_CYCLES = 5
#: Samples below this fraction of the largest |current| count as rest for dQ/dV.
REST_FRACTION = 1e-3
#: Width of the dQ/dV smoothing window in median voltage steps between samples.
DQDV_WINDOW_SAMPLES = 10
#: Smallest dQ/dV peak prominence reported, as a fraction of the curve's largest value.
PEAK_PROMINENCE = 0.15


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-.") or "x"


def _suffix(tag: str) -> str:
    return f"_{_safe(tag)}" if tag else ""


def _fmt_pm(v: float | None, s: float | None, unit: str = "") -> str:
    if v is None or not math.isfinite(v):
        return "–"
    text = f"{v:.4g}"
    if s is not None and math.isfinite(s):
        text += f" ± {s:.2g}"
    return f"{text} {unit}".rstrip()


# ------------------------------------------------------------------------------------ cycling


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
    """Voltage, current and (when recorded) temperature against time."""
    rep.section("Voltage, current and temperature" + (f" ({tag})" if tag else ""))
    rep.figure(
        f"voltage_current_temperature{_suffix(tag)}",
        plot_time_series(samples),
        "Cell voltage, current (positive on charge) and temperature against test time.",
    )


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
    tag: str = "",
) -> None:
    """V/I/T against time, the per-cycle summary, capacity and efficiency with the fade fit and
    end-of-life projection, and dQ/dV. Parts the data cannot support become notes."""
    from cellbench.analysis.cycling import cycle_summary

    sfx = _suffix(tag)
    where = f" ({tag})" if tag else ""
    time_series_sections(rep, samples, tag=tag)
    if "cycle_count" not in samples.columns:
        rep.note("No cycle numbers in the samples: no per-cycle analysis.")
        return
    rep.section(f"Cycling{where}")
    if summary is None:
        summary = cycle_summary(samples, efficiency=efficiency, active_mass_g=active_mass_g)  # type: ignore[arg-type]
    rep.table(f"cycles{sfx}", summary, "Per-cycle summary")
    if summary.height < 2:
        rep.note("One cycle only: no capacity, efficiency or fade trend.")
    else:
        _capacity_and_fade(rep, summary, fade, threshold, sfx)
    try:
        curves, peaks = dqdv_with_peaks(samples, dqdv_cycles)
    except CellbenchError as exc:
        rep.note(f"No dQ/dV: {exc}")
        return
    rep.figure(
        f"dqdv{sfx}",
        plot_dqdv(curves, peaks=peaks),
        "Differential capacity of the discharges of the cycles shown, peaks marked.",
    )
    rep.table(f"dqdv_peaks{sfx}", peaks, "dQ/dV peaks (position / V, height / Ah V⁻¹, area / Ah)")


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


# ---------------------------------------------------------------------------------------- EIS


def choose_circuit(
    frequency_hz: np.ndarray, z: np.ndarray, candidates: Sequence[str] = CANDIDATE_CIRCUITS
) -> FitResult:
    """The lowest-BIC fit among ``candidates`` whose parameters the data determine (an
    inductance L0 is added when Z'' > 0 at the highest frequencies); when every candidate has
    a poorly determined parameter, the lowest BIC overall.

    A circuit with an element the spectrum does not show can win on BIC by a hair while its
    series resistance becomes unidentifiable, which would ruin everything derived from it
    (conductivity, growth of R against cycle)."""
    from cellbench.analysis.eis_fit import FitError, fit_circuit

    inductive = bool(np.any(z[np.argsort(-frequency_hz)[:3]].imag > 0))
    fits = []
    for cand in candidates:
        circuit = f"L0-{cand}" if inductive else cand
        try:
            with np.errstate(all="ignore"):
                fits.append(fit_circuit(circuit, frequency_hz, z))
        except FitError:
            continue
    if not fits:
        raise ReportError("no candidate circuit can be fitted to the first spectrum")
    determined = [f for f in fits if not f.poorly_determined and math.isfinite(f.bic)]
    return min(determined or fits, key=lambda f: f.bic)


@dataclass(frozen=True)
class EisAnalysis:
    """Fits of every sweep: the table (one row per sweep), the fit objects in the same order,
    and the circuit."""

    circuit: str
    table: pl.DataFrame
    fits: list[FitResult]


def analysis_from_fits(spectra: pl.DataFrame, fits: Sequence[FitResult]) -> EisAnalysis:
    """An :class:`EisAnalysis` of fits already made, one per sweep of ``spectra`` in sweep order
    (as :func:`cellbench.analysis.eis_batch.iter_sweeps` yields them), with the same table
    columns as :func:`fit_sweeps`."""
    from cellbench.analysis.eis_batch import iter_sweeps

    infos = [info for info, _, _ in iter_sweeps(spectra)]
    if len(infos) != len(fits) or not fits:
        raise ReportError(f"{len(fits)} fits for {len(infos)} sweeps: one fit per sweep needed")
    circuits = {f.circuit for f in fits}
    if len(circuits) > 1:
        raise ReportError(f"the sweeps were fitted with different circuits {sorted(circuits)}")
    rows = []
    for info, res in zip(infos, fits, strict=True):
        row = dict(info)
        for name, value in res.values.items():
            row[name] = value
            row[f"{name}_stderr"] = res.stderr[name]
        row.update(
            chi2=res.chi2,
            reduced_chi2=res.reduced_chi2,
            n_points=res.n_points,
            success=res.success,
            poorly_determined=list(res.poorly_determined),
        )
        rows.append(row)
    table = pl.DataFrame(
        rows, schema_overrides={"poorly_determined": pl.List(pl.String)}, infer_schema_length=None
    )
    return EisAnalysis(fits[0].circuit, table, list(fits))


def fit_sweeps(spectra: pl.DataFrame, circuit: str | None = None) -> EisAnalysis:
    """Fit every sweep (warm-started in sweep order); without ``circuit`` choose one on the first
    sweep by BIC among :data:`CANDIDATE_CIRCUITS`."""
    from cellbench.analysis.eis_batch import fit_spectra, iter_sweeps

    if circuit is None:
        _, f, z = next(iter_sweeps(spectra))
        circuit = choose_circuit(f, z).circuit
    fits: list[FitResult] = []
    with np.errstate(all="ignore"):
        table = fit_spectra(spectra, circuit, results=fits)
    return EisAnalysis(circuit, table, fits)


def _temperatures(table: pl.DataFrame) -> np.ndarray | None:
    if "temperature_celsius" not in table.columns:
        return None
    t = table["temperature_celsius"].cast(pl.Float64).to_numpy()
    return t if np.isfinite(t).any() else None


def _isothermal(table: pl.DataFrame) -> tuple[np.ndarray, float | None]:
    """Row indices of the sweeps at the most common temperature (all rows when unknown)."""
    t = _temperatures(table)
    n = table.height
    if t is None or np.nanmax(t) - np.nanmin(t) <= ISOTHERMAL_K:
        return np.arange(n), None if t is None else float(np.nanmedian(t))
    counts = [np.sum(np.abs(t - ti) <= ISOTHERMAL_K) for ti in t]
    ref = float(t[int(np.argmax(counts))])
    return np.flatnonzero(np.abs(t - ref) <= ISOTHERMAL_K), ref


def _sweep_label(row: Mapping[str, Any]) -> str:
    parts = [f"sweep {row.get('sweep_index', '?')}"]
    if row.get("cycle_count") is not None:
        parts.append(f"cycle {row['cycle_count']}")
    t = row.get("temperature_celsius")
    if t is not None and math.isfinite(t):
        parts.append(f"{t:.0f} °C")
    return ", ".join(parts)


def eis_sections(
    rep: Report,
    spectra: pl.DataFrame,
    *,
    circuit: str | None = None,
    analysis: EisAnalysis | None = None,
    thickness_cm: float | None = None,
    area_cm2: float | None = None,
    electrolyte_resistance: str = "R0",
    drt: bool = True,
    tag: str = "",
) -> EisAnalysis:
    """Equivalent-circuit fits of every sweep: Nyquist of the first and last sweep, Bode with
    residuals, fitted parameters against cycle, DRT; and, when the sweeps span several
    temperatures and the pellet geometry is known, the Arrhenius plot of the conductivity from
    ``electrolyte_resistance``."""
    from cellbench.analysis.circuits import parse_circuit

    sfx = _suffix(tag)
    where = f" ({tag})" if tag else ""
    if analysis is None:
        analysis = fit_sweeps(spectra, circuit)
    table, fits = analysis.table, analysis.fits
    units = parse_circuit(analysis.circuit).param_units
    rows = table.to_dicts()
    iso, t_ref = _isothermal(table)
    first, last = int(iso[0]), int(iso[-1])
    rep.section(f"Impedance{where}")
    shown = [first] if first == last else [first, last]
    curves = [EisCurve.from_fit(fits[k], _sweep_label(rows[k])) for k in shown]
    at = f" at {t_ref:.0f} °C" if t_ref is not None and len(iso) < table.height else ""
    which = "the sweep" if len(shown) == 1 else f"the first and last sweep{at}"
    rep.figure(
        f"nyquist{sfx}",
        plot_nyquist(curves),
        f"Nyquist plot of {which} (points) with the {analysis.circuit} fit (lines).",
    )
    rep.figure(
        f"bode{sfx}",
        plot_bode(curves),
        f"Bode plot of {which} with the fit and its residuals (Z − Z_fit)/|Z|.",
    )
    rep.table(
        f"eis_fits{sfx}",
        table,
        f"Fitted {analysis.circuit} parameters per sweep "
        f"({', '.join(f'{k} / {v}' for k, v in units.items())})",
    )
    rep.fit(
        f"eis_fits{sfx}",
        {
            "circuit": analysis.circuit,
            "sweeps": [dict(_ctx(r), **f.to_dict()) for r, f in zip(rows, fits, strict=True)],
        },
        f"{analysis.circuit} fits",
        _eis_summary(analysis, last),
    )
    if len(iso) > 1 and "cycle_count" in table.columns and table[iso]["cycle_count"].n_unique() > 1:
        sub = table[iso]
        growth = _growth(sub, units, series_resistance="R0")
        if growth:
            rep.fit(
                f"resistance_growth{sfx}",
                {n: f.to_dict() for n, f in growth.items()},
                f"Growth of the interface resistances against cycle{at}",
                {
                    n: f"{f.model}: "
                    + ", ".join(
                        f"{k} = {_fmt_pm(v, f.stderr.get(k))}" for k, v in f.parameters.items()
                    )
                    for n, f in growth.items()
                },
            )
        rep.figure(
            f"eis_parameters{sfx}",
            plot_eis_parameters(sub, units, growth=growth),
            f"Fitted resistances (± standard error) against cycle{at}"
            + (
                ", with the growth law of the interface resistance (lowest AICc)."
                if growth
                else "."
            ),
        )
    if drt:
        _drt_section(rep, [fits[k] for k in shown], [_sweep_label(rows[k]) for k in shown], sfx)
    t = _temperatures(table)
    if t is not None and np.nanmax(t) - np.nanmin(t) > 3 * ISOTHERMAL_K:
        _conductivity_from_sweeps(rep, table, electrolyte_resistance, thickness_cm, area_cm2, sfx)
    return analysis


def _growth(
    table: pl.DataFrame, units: Mapping[str, str], *, series_resistance: str
) -> dict[str, Any]:
    """Growth-law fits (best by AICc) of each arc resistance against cycle, where at least four
    distinct cycles carry it; the series resistance is left out (it tracks the electrolyte)."""
    from cellbench.analysis.fade import fit_growth

    out: dict[str, Any] = {}
    x = table["cycle_count"].cast(pl.Float64).to_numpy()
    if np.unique(x[np.isfinite(x)]).size < MIN_GROWTH_CYCLES:
        return out
    for name, unit in units.items():
        if unit != "ohm" or not name.startswith("R") or name == series_resistance:
            continue
        if name not in table.columns:
            continue
        err = table.get_column(f"{name}_stderr", default=None)
        try:
            fits = fit_growth(
                x,
                table[name].cast(pl.Float64).to_numpy(),
                None if err is None else err.cast(pl.Float64).to_numpy(),
            )
        except CellbenchError:
            continue
        if fits:
            out[name] = fits[0]
    return out


def _ctx(row: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("channel", "sweep_index", "cycle_count", "test_time_second", "temperature_celsius")
    return {k: row[k] for k in keys if k in row}


def _eis_summary(analysis: EisAnalysis, k: int) -> dict[str, str]:
    fit = analysis.fits[k]
    from cellbench.analysis.circuits import parse_circuit

    table = analysis.table
    index = table["sweep_index"][k] if "sweep_index" in table.columns else k
    out = {
        "circuit": analysis.circuit,
        "sweeps fitted": str(len(analysis.fits)),
        "parameters of": f"sweep {index}",
    }
    pu = parse_circuit(analysis.circuit).param_units
    for n in fit.values:
        out[n] = _fmt_pm(fit.values[n], fit.stderr.get(n), pu.get(n, ""))
    out["reduced χ²"] = f"{fit.reduced_chi2:.3g}"
    return out


def _drt_section(rep: Report, fits: list[FitResult], labels: list[str], sfx: str) -> None:
    from cellbench.analysis.drt import DRTError, drt

    results, names = [], []
    for fit, name in zip(fits, labels, strict=True):
        try:
            with np.errstate(all="ignore"):
                results.append(drt(fit.frequency_hz, fit.z_data))
            names.append(name)
        except DRTError as exc:
            rep.note(f"No DRT of {name}: {exc}")
    if not results:
        return
    rep.figure(
        f"drt{sfx}",
        plot_drt(results, labels=names),
        "Distribution of relaxation times (Tikhonov, λ by GCV); peaks marked with their "
        "resistance.",
    )
    rep.fit(
        f"drt{sfx}",
        {"spectra": [dict(label=n, **r.to_dict()) for n, r in zip(names, results, strict=True)]},
        "DRT peaks",
        {
            f"{n}": ", ".join(f"{p.r_ohm:.3g} Ω at {p.frequency_hz:.3g} Hz" for p in r.peaks)
            or "none"
            for n, r in zip(names, results, strict=True)
        },
    )


def _conductivity_from_sweeps(
    rep: Report,
    table: pl.DataFrame,
    resistance: str,
    thickness_cm: float | None,
    area_cm2: float | None,
    sfx: str,
) -> None:
    from cellbench.analysis.conductivity import conductivity_from_resistance

    if resistance not in table.columns:
        rep.note(
            f"Sweeps at several temperatures, but the circuit has no {resistance}: "
            "no Arrhenius plot."
        )
        return
    if thickness_cm is None or area_cm2 is None:
        rep.note(
            "Sweeps at several temperatures, but the cell's thickness and area are unknown: "
            "no conductivity."
        )
        return
    t = table["temperature_celsius"].cast(pl.Float64).to_numpy()
    r = table[resistance].cast(pl.Float64).to_numpy()
    # The first sweep at each temperature: later ones (during cycling, after ageing) would mix
    # the cell's evolution into its temperature dependence.
    first = np.zeros(t.size, dtype=bool)
    seen: list[float] = []
    for k, tk in enumerate(t):
        if np.isfinite(tk) and all(abs(tk - s) > ISOTHERMAL_K for s in seen):
            seen.append(float(tk))
            first[k] = True
    ok = first & np.isfinite(r) & (r > 0)
    sigma = conductivity_from_resistance(r[ok], thickness_cm, area_cm2)
    conductivity_sections(
        rep,
        t[ok],
        sigma,
        tag=sfx.lstrip("_"),
        source=f"σ = L/(R·A) from {resistance} of the first sweep at each temperature, "
        f"L = {thickness_cm:g} cm, A = {area_cm2:g} cm²",
    )


# ------------------------------------------------------------------------------- conductivity


def conductivity_sections(
    rep: Report,
    temperature_celsius: Sequence[float] | np.ndarray,
    conductivity_s_per_cm: Sequence[float] | np.ndarray,
    *,
    fit: ConductivityFit | None = None,
    alternatives: Sequence[ConductivityFit] = (),
    source: str = "",
    tag: str = "",
) -> ConductivityFit | None:
    """Arrhenius plot with the chosen model (by AICc, simpler wins ties) and the fits as JSON."""
    from cellbench.analysis.conductivity import choose_model, fit_all

    sfx = _suffix(tag)
    rep.section("Ionic conductivity" + (f" ({tag})" if tag else ""))
    t = np.asarray(temperature_celsius, dtype=float)
    s = np.asarray(conductivity_s_per_cm, dtype=float)
    if fit is None:
        try:
            fits = fit_all(t, s)
        except CellbenchError as exc:
            rep.note(f"No temperature-dependence fit: {exc}")
            return None
        fit = choose_model(fits)
        alternatives = [f for f in fits if f is not fit and f.model != "arrhenius_t"]
    rep.figure(
        f"arrhenius{sfx}",
        plot_arrhenius(fit, alternatives=alternatives),
        "Arrhenius plot of the ionic conductivity"
        + (f" ({source})" if source else "")
        + " with the fitted model.",
    )
    rep.table(
        f"conductivity{sfx}",
        pl.DataFrame({"temperature_celsius": t, "conductivity_siemens_per_centimeter": s}),
        "Conductivity per temperature (S cm⁻¹)",
    )
    lo, hi = fit.activation_energy_ev_ci
    slo, shi = fit.conductivity_25c_ci
    pct = f"{100 * fit.confidence:g} %"
    rep.fit(
        f"conductivity_fit{sfx}",
        {"chosen": fit.to_dict(), "alternatives": [a.to_dict() for a in alternatives]},
        "Temperature-dependence fit",
        {
            "model": fit.model,
            "points": str(fit.n_points),
            "Ea": f"{fit.activation_energy_ev:.4f} eV ({pct} CI {lo:.4f}–{hi:.4f}) = "
            f"{fit.activation_energy_kj_per_mol:.2f} kJ/mol",
            "σ(25 °C)": f"{fit.conductivity_25c_siemens_per_centimeter:.4g} S/cm "
            f"({slo:.3g}–{shi:.3g})",
        },
    )
    return fit


# ---------------------------------------------------------------------------------------- CCD


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


# -------------------------------------------------------------------------------- one-kind reports


def _write(rep: Report, out_dir: Path | str) -> ReportFiles:
    return rep.write(out_dir)


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


def report_eis(
    spectra: pl.DataFrame, out_dir: Path | str, *, title: str = "Impedance report", **options: Any
) -> ReportFiles:
    """Circuit fits per sweep, Nyquist, Bode with residuals, parameters, DRT (and Arrhenius
    when the sweeps span temperatures). ``options`` go to :func:`eis_sections`."""
    require_matplotlib()
    rep = Report(title)
    eis_sections(rep, spectra, **options)
    return _write(rep, out_dir)


def report_conductivity(
    temperature_celsius: Sequence[float] | np.ndarray,
    conductivity_s_per_cm: Sequence[float] | np.ndarray,
    out_dir: Path | str,
    *,
    title: str = "Ionic conductivity report",
    **options: Any,
) -> ReportFiles:
    """Arrhenius plot with Ea and its interval. ``options`` go to :func:`conductivity_sections`."""
    require_matplotlib()
    rep = Report(title)
    conductivity_sections(rep, temperature_celsius, conductivity_s_per_cm, **options)
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


# ------------------------------------------------------------------------------------ whole run


@dataclass
class RunData:
    """What a run holds, as frames: any of them may be None or empty."""

    samples: pl.DataFrame | None = None
    spectra: pl.DataFrame | None = None
    events: pl.DataFrame | None = None
    meta: RunMeta | None = None
    source: str = ""  # the folder or file it came from, for the report's header
    notes: list[str] = field(default_factory=list)  # e.g. the reader's warnings, shown first


def _has_ccd_step(meta: RunMeta | None) -> bool:
    text = (meta.protocol or {}).get("text", "") if meta is not None else ""
    return bool(re.search(r'type\s*=\s*"ccd"', text or ""))


def _facts(data: RunData) -> dict[str, str]:
    out: dict[str, str] = {}
    if data.source:
        out["source"] = data.source
    m = data.meta
    if m is not None:
        out["run"] = m.run_id
        if m.protocol.get("name"):
            out["protocol"] = str(m.protocol["name"])
        out["status"] = m.status
        out["started"] = m.start_time + (f", ended {m.end_time}" if m.end_time else "")
        cell = m.cell
        geo = [
            f"{k} {v:g} {unit}"
            for k, v, unit in (
                ("area", cell.area_cm2, "cm²"),
                ("thickness", cell.thickness_cm, "cm"),
                ("active mass", cell.active_mass_g, "g"),
                ("nominal capacity", cell.nominal_capacity_ah, "Ah"),
            )
            if v is not None
        ]
        out["cell"] = ", ".join([x for x in (cell.name, cell.chemistry) if x] + geo) or "–"
        if m.software_version:
            out["software"] = f"cellbench {m.software_version}"
    for name, df in (("samples", data.samples), ("spectra", data.spectra)):
        if df is not None and df.height:
            out[name] = f"{df.height} rows"
    return out


def _channels(df: pl.DataFrame | None) -> list[tuple[str, pl.DataFrame]]:
    if df is None or df.height == 0:
        return []
    if "channel" not in df.columns or df["channel"].n_unique() == 1:
        return [("", df)]
    return [
        (str(c), df.filter(pl.col("channel") == c))
        for c in df["channel"].unique(maintain_order=True).to_list()
    ]


def report_run(
    data: RunData,
    out_dir: Path | str,
    *,
    title: str | None = None,
    circuit: str | None = None,
    threshold: float = 0.8,
    dqdv_cycles: Sequence[int] | None = None,
    efficiency: str = "discharge/charge",
    ccd: bool | None = None,
) -> ReportFiles:
    """Everything the run's data supports, per channel: samples give V/I/T, the cycle summary,
    fade and end of life, dQ/dV (or, when the protocol has a ``ccd`` step or ``ccd=True``,
    V/I/T and the CCD staircase); spectra give circuit fits per sweep, Nyquist and Bode of the
    first and last, parameters against cycle, DRT, and the Arrhenius plot when they span
    temperatures. A part that fails becomes a note in the report instead of stopping it."""
    require_matplotlib()
    meta = data.meta
    cell = meta.cell if meta is not None else None
    if title is None:
        title = f"Run report: {meta.run_id}" if meta is not None else "Report"
    rep = Report(title, _facts(data))
    samples, spectra = _channels(data.samples), _channels(data.spectra)
    if data.notes or (not samples and not spectra):
        rep.section("Data")
        for text in data.notes:
            rep.note(text)
        if not samples and not spectra:
            rep.note("The run holds no samples and no spectra.")
    want_ccd = _has_ccd_step(meta) if ccd is None else ccd
    for tag, df in samples:
        if want_ccd:  # a symmetric cell's staircase: capacity, fade and dQ/dV mean nothing
            _guard(
                rep, "time series", lambda df=df, tag=tag: time_series_sections(rep, df, tag=tag)
            )
        else:
            _guard(
                rep,
                f"cycling{' ' + tag if tag else ''}",
                lambda df=df, tag=tag: cycling_sections(
                    rep,
                    df,
                    efficiency=efficiency,
                    threshold=threshold,
                    dqdv_cycles=dqdv_cycles,
                    active_mass_g=cell.active_mass_g if cell else None,
                    tag=tag,
                ),
            )
        if want_ccd:
            if cell is None or cell.area_cm2 is None:
                rep.note("CCD step in the protocol, but the cell area is unknown: no CCD.")
            else:
                _guard(
                    rep, "CCD", lambda df=df, tag=tag: ccd_sections(rep, df, cell.area_cm2, tag=tag)
                )
    events = data.events
    if events is not None and events.height and "kind" in events.columns:
        notable = events.filter(pl.col("kind").is_in(NOTABLE_EVENTS))
        if notable.height:
            rep.section("Events")
            keep = [
                c
                for c in (
                    "channel",
                    "test_time_second",
                    "kind",
                    "severity",
                    "message",
                    "step_index",
                    "cycle_count",
                    "duration_second",
                )
                if c in notable.columns
            ]
            rep.table(
                "events",
                notable.select(keep),
                "Alarms, faults, gaps and reconnections during the run",
            )
    if meta is not None and meta.ground_truth:
        # A simulated run knows the true parameters: put them beside what the fits found.
        rep.section("Simulated cell: ground truth")
        truth = meta.ground_truth
        rep.fit(
            "ground_truth",
            truth,
            "Parameters of the simulated cell (run.json)",
            _scalars(truth),
        )
    for tag, df in spectra:
        _guard(
            rep,
            f"impedance{' ' + tag if tag else ''}",
            lambda df=df, tag=tag: eis_sections(
                rep,
                df,
                circuit=circuit,
                tag=tag,
                thickness_cm=cell.thickness_cm if cell else None,
                area_cm2=cell.area_cm2 if cell else None,
            ),
        )
    return _write(rep, out_dir)


def _scalars(d: Mapping[str, Any]) -> dict[str, str]:
    """The scalar entries of a (one level nested) mapping, as text: lists are left out."""
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_scalars(v))
        elif isinstance(v, float):
            out[k] = f"{v:.4g}"
        elif isinstance(v, int | str | bool):
            out[k] = str(v)
    return out


def _guard(rep: Report, what: str, build: Any) -> None:
    """Run one part of a run report; a user-fixable failure becomes a note, not a lost report."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            build()
    except CellbenchError as exc:
        rep.section(f"{what[0].upper()}{what[1:]}: not analysed")
        rep.note(f"{what}: {exc}")
