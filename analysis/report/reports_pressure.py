"""Stack pressure in the reports: pressure against time, pressure per cycle in the cycle table,
and resistance against pressure with the power-law fits of :mod:`cellbench.analysis.pressure`
(figures in :mod:`.figures_pressure`).

Everything here is added only where the samples log ``pressure_megapascal``; the resistance
fits only where the run is a pressure series (the highest pressure at a pulse or sweep is at
least :data:`SERIES_RATIO` times the lowest), so a run at one constant pressure gets the
pressure figure and the per-cycle column and nothing else.

- **Pulses** (:func:`pulse_pressure_sections`): each current pulse's ohmic resistance
  (:func:`cellbench.analysis.pulses.find_pulses`, at the pressure logged before its edge) and
  ``R = R_0 + R_1 p^-m`` (:func:`cellbench.analysis.pressure.fit_resistance_pressure`): the
  pulse's R includes the pressure-independent series and bulk part ``R_0``.
- **Impedance** (:func:`eis_pressure_sections`): each arc resistance of the circuit fits (every
  resistance but the series one) as an ASR (R x cell area) at the pressure logged at the start
  of its sweep, and ``ASR = ASR_1 p^-m`` per arc
  (:func:`cellbench.analysis.pressure.fit_asr_pressure`, weighted by the fits' standard errors).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from cellbench.core.errors import CellbenchError

from .document import Report
from .figures_pressure import plot_asr_pressure, plot_pressure_time, plot_resistance_pressure
from .reports_common import _fmt_pm, _suffix

if TYPE_CHECKING:
    from cellbench.analysis.pressure import OffsetPowerLawFit, PowerLawFit

    from .reports_eis import EisAnalysis

PRESSURE = "pressure_megapascal"
TIME = "test_time_second"
#: A run is a pressure series (resistance against pressure is fitted) when the highest pressure
#: at its pulses or sweeps is at least this multiple of the lowest.
SERIES_RATIO = 1.2
#: The series resistance of the impedance circuits (pressure-independent: not fitted).
SERIES_RESISTANCE = "R0"
#: The columns added to the cycle summary by :func:`with_pressure_per_cycle`.
PER_CYCLE = ("pressure_median_megapascal", "pressure_min_megapascal", "pressure_max_megapascal")


def has_pressure(samples: pl.DataFrame | None) -> bool:
    """True when ``samples`` hold at least one stack-pressure reading."""
    if samples is None or PRESSURE not in samples.columns or samples.height == 0:
        return False
    return samples[PRESSURE].cast(pl.Float64).fill_nan(None).drop_nulls().len() > 0


def _is_series(pressure_megapascal: np.ndarray) -> bool:
    p = pressure_megapascal[np.isfinite(pressure_megapascal) & (pressure_megapascal > 0)]
    return p.size >= 2 and float(p.max()) >= SERIES_RATIO * float(p.min())


def pressure_time_sections(rep: Report, samples: pl.DataFrame, *, tag: str = "") -> bool:
    """The stack pressure against time, in the current section (beside V/I/T), when logged.
    True when the figure was added."""
    if not has_pressure(samples):
        return False
    p = samples[PRESSURE].cast(pl.Float64).fill_nan(None).drop_nulls()
    rep.figure(
        f"pressure{_suffix(tag)}",
        plot_pressure_time(samples),
        f"Stack pressure against test time ({float(p.min()):.3g}–{float(p.max()):.3g} MPa).",
    )
    return True


def with_pressure_per_cycle(summary: pl.DataFrame, samples: pl.DataFrame) -> pl.DataFrame:
    """``summary`` (a cycle summary) with each cycle's median, minimum and maximum stack
    pressure / MPa (:func:`cellbench.analysis.pressure.pressure_by_cycle`); unchanged when the
    samples log no pressure."""
    from cellbench.analysis.pressure import pressure_by_cycle

    if not has_pressure(samples) or "cycle_count" not in summary.columns:
        return summary
    per = pressure_by_cycle(samples)
    keys = [k for k in ("channel", "cycle_count") if k in summary.columns and k in per.columns]
    per = per.with_columns(pl.col(k).cast(summary.schema[k]) for k in keys)
    return summary.drop([c for c in PER_CYCLE if c in summary.columns]).join(
        per.select(*keys, *PER_CYCLE), on=keys, how="left"
    )


def pulse_pressure_sections(
    rep: Report, samples: pl.DataFrame, *, area_cm2: float | None = None, tag: str = ""
) -> OffsetPowerLawFit | None:
    """Pulse resistance against stack pressure with ``R = R_0 + R_1 p^-m``, when the samples
    hold current pulses at several pressures (else nothing is added and None returned)."""
    from cellbench.analysis.pressure import fit_resistance_pressure
    from cellbench.analysis.pulses import find_pulses

    if not has_pressure(samples):
        return None
    p_all = samples[PRESSURE].cast(pl.Float64).fill_nan(None).drop_nulls().to_numpy()
    if not _is_series(p_all):
        return None
    try:
        pulses = find_pulses(samples)
    except CellbenchError:
        return None
    rows = [
        {
            "step_index": pu.step_index,
            "cycle_count": pu.cycle_count,
            TIME: pu.test_time_second,
            "current_ampere": pu.current_ampere,
            PRESSURE: pu.pressure_megapascal,
            "r_ohmic_ohm": abs(pu.r_ohmic_ohm),
            "r_end_ohm": abs(pu.r_end_ohm),
        }
        for pu in pulses
        if pu.pressure_megapascal is not None
        and math.isfinite(pu.pressure_megapascal)
        and pu.pressure_megapascal > 0
        and math.isfinite(pu.r_ohmic_ohm)
    ]
    if not rows or not _is_series(np.array([r[PRESSURE] for r in rows])):
        return None
    sfx = _suffix(tag)
    rep.section("Stack pressure: pulse resistance" + (f" ({tag})" if tag else ""))
    points = pl.DataFrame(rows)
    rep.table(
        f"pulse_pressure{sfx}",
        points,
        "Pulses at each stack pressure: ohmic R (first sample after the edge) and R at the "
        "pulse's end, / Ω; pressure logged before the edge, / MPa",
    )
    p, r = points[PRESSURE].to_numpy(), points["r_ohmic_ohm"].to_numpy()
    try:
        fit = fit_resistance_pressure(p, r, area_cm2=area_cm2)
    except CellbenchError as exc:
        rep.note(f"No resistance-pressure fit: {exc}")
        fit = None
    rep.figure(
        f"pulse_resistance_pressure{sfx}",
        plot_resistance_pressure(p, r, fit, what="Ohmic pulse resistance"),
        "Ohmic pulse resistance against stack pressure"
        + (", with R = R₀ + R₁ p⁻ᵐ (R₀: the pressure-independent part)." if fit else "."),
    )
    if fit is not None:
        summary = {
            "model": "R = R_0 + R_1 p^-m (least squares)",
            "pulses": str(fit.n),
            "m": _fmt_pm(fit.exponent, fit.exponent_stderr),
            "R_0": _fmt_pm(fit.r_offset_ohm, fit.r_offset_stderr_ohm, "Ω"),
            "R_1 (at 1 MPa)": _fmt_pm(fit.r_1mpa_ohm, fit.r_1mpa_stderr_ohm, "Ω"),
            "interface ASR at 1 MPa": (
                "– (cell area unknown)"
                if fit.asr_1mpa_ohm_cm2 is None
                else f"{fit.asr_1mpa_ohm_cm2:.4g} Ω cm²"
            ),
            "rms residual": f"{fit.rms_ohm:.3g} Ω",
        }
        rep.fit(
            f"pulse_resistance_pressure{sfx}",
            {"resistance": "r_ohmic_ohm", "points": rows, "fit": fit.to_dict()},
            "Pulse resistance against stack pressure",
            summary,
        )
    return fit


def _sweep_pressures(table: pl.DataFrame, samples: pl.DataFrame) -> np.ndarray:
    """The pressure logged at or before each sweep's start (NaN where none), in table order."""
    if TIME not in table.columns:
        return np.full(table.height, np.nan)
    by = "channel" if "channel" in table.columns and "channel" in samples.columns else None
    left = table.select(
        *([pl.col(by).cast(pl.String)] if by else []),
        pl.col(TIME).cast(pl.Float64),
        pl.int_range(pl.len()).alias("_row"),
    ).sort(TIME)
    right = (
        samples.select(
            *([pl.col(by).cast(pl.String)] if by else []),
            pl.col(TIME).cast(pl.Float64),
            pl.col(PRESSURE).cast(pl.Float64).fill_nan(None),
        )
        .drop_nulls()
        .sort(TIME)
    )
    # both sides sorted by time, hence within each channel too
    joined = left.join_asof(
        right, on=TIME, by=by, strategy="backward", check_sortedness=False
    ).sort("_row")
    return joined[PRESSURE].fill_null(float("nan")).to_numpy().astype(float)


def eis_pressure_sections(
    rep: Report,
    analysis: EisAnalysis,
    samples: pl.DataFrame | None,
    *,
    area_cm2: float | None = None,
    tag: str = "",
) -> dict[str, PowerLawFit]:
    """Each arc's ASR against stack pressure with ``ASR = ASR_1 p^-m``, when the sweeps were
    taken at several pressures (logged in ``samples``); else nothing is added. Points whose
    resistance is undetermined (standard error not finite or above the value) are left out."""
    from cellbench.analysis.circuits import parse_circuit
    from cellbench.analysis.pressure import fit_asr_pressure

    if samples is None or not has_pressure(samples):
        return {}
    table = analysis.table
    p = _sweep_pressures(table, samples)
    if not _is_series(p):
        return {}
    sfx = _suffix(tag)
    rep.section("Stack pressure: impedance" + (f" ({tag})" if tag else ""))
    if area_cm2 is None:
        rep.note("Sweeps at several stack pressures, but the cell area is unknown: no ASR fit.")
        return {}
    units = parse_circuit(analysis.circuit).param_units
    arcs = [n for n, u in units.items() if u == "ohm" and n != SERIES_RESISTANCE and "." not in n]
    points: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    fits: dict[str, PowerLawFit] = {}
    data: dict[str, dict] = {}
    for name in arcs:
        r = table[name].cast(pl.Float64).to_numpy()
        se_col = f"{name}_stderr"
        se = (
            table[se_col].cast(pl.Float64).to_numpy()
            if se_col in table.columns
            else np.full(r.size, np.nan)
        )
        ok = np.isfinite(p) & (p > 0) & np.isfinite(r) & (r > 0) & np.isfinite(se) & (se < r)
        dropped = int(np.count_nonzero(np.isfinite(p) & (p > 0)) - np.count_nonzero(ok))
        if dropped:
            rep.note(f"{name}: {dropped} sweep(s) left out, the resistance undetermined.")
        if not ok.any():
            continue
        pp, asr = p[ok], r[ok] * area_cm2
        points[name] = (pp, asr)
        weights = se[ok] * area_cm2 if np.all(se[ok] > 0) else None
        try:
            fit = fit_asr_pressure(pp, asr, asr_stderr_ohm_cm2=weights)
        except CellbenchError as exc:
            rep.note(f"{name}: no ASR-pressure fit: {exc}")
            continue
        fits[name] = fit
        data[name] = {
            "points": [
                {PRESSURE: float(a), "asr_ohm_cm2": float(b)} for a, b in zip(pp, asr, strict=True)
            ],
            "fit": fit.to_dict(),
        }
    if not points:
        rep.note("No determined arc resistance to set against the stack pressure.")
        return {}
    rep.figure(
        f"eis_asr_pressure{sfx}",
        plot_asr_pressure(points, fits),
        f"Area-specific resistance of each arc of the {analysis.circuit} fits (R × "
        f"{area_cm2:g} cm²) against the stack pressure at the start of its sweep"
        + (", with ASR = ASR₁ p⁻ᵐ." if fits else "."),
    )
    if fits:
        summary: dict[str, str] = {}
        for name, f in fits.items():
            lo, hi = f.exponent_interval
            summary[f"{name}: m"] = (
                f"{_fmt_pm(f.exponent, f.exponent_stderr)} "
                f"({100 * f.confidence:g} % CI {lo:.3g}–{hi:.3g})"
            )
            summary[f"{name}: ASR at 1 MPa"] = _fmt_pm(
                f.asr_1mpa_ohm_cm2, f.asr_1mpa_stderr_ohm_cm2, "Ω cm²"
            )
            summary[f"{name}: ASR at {f.reference_pressure_megapascal:g} MPa"] = (
                f"{f.asr_at_reference_ohm_cm2:.4g} Ω cm² (R² {f.r2:.4f}, n {f.n})"
            )
        rep.fit(
            f"eis_asr_pressure{sfx}",
            {"circuit": analysis.circuit, "area_cm2": area_cm2, "arcs": data},
            "Interface ASR against stack pressure (ASR = ASR_1 p^-m)",
            summary,
        )
    return fits
