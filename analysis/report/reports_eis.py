"""Impedance reports: circuit fits of every sweep, Nyquist and Bode with residuals, parameters
against cycle with their growth law, DRT, and the Arrhenius plot when the sweeps span
temperatures (the figures are in :mod:`.figures_eis`).

The fits and their table come from :mod:`cellbench.analysis.eis_batch` (warm-started sweep by
sweep, one row per sweep); a circuit, when none is given, is chosen there too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from cellbench.core.errors import CellbenchError

from .document import Report, ReportFiles
from .figures_eis import EisCurve, plot_bode, plot_drt, plot_eis_parameters, plot_nyquist
from .reports_common import _fmt_pm, _suffix, _write
from .reports_conductivity import conductivity_sections
from .style import ReportError, require_matplotlib

if TYPE_CHECKING:
    from cellbench.analysis.eis_fit import FitResult

#: Fewest distinct cycles for a growth-law fit of a resistance against cycle.
MIN_GROWTH_CYCLES = 4
#: Sweeps within this many kelvin of each other count as one temperature.
ISOTHERMAL_K = 2.0


def choose_circuit(
    frequency_hz: np.ndarray, z: np.ndarray, candidates: Sequence[str] | None = None
) -> FitResult:
    """The fit of the circuit :func:`cellbench.analysis.eis_batch.choose_circuit` picks for one
    spectrum (lowest BIC among the candidates whose values the data determine; an inductance
    L0 competes when Z'' > 0 at the highest frequencies).

    A circuit with an element the spectrum does not show can win on BIC by a hair while its
    series resistance becomes unidentifiable, which would ruin everything derived from it
    (conductivity, growth of R against cycle). ``candidates``: default
    :data:`cellbench.analysis.eis_batch.CANDIDATES`."""
    from cellbench.analysis.eis_batch import CANDIDATES
    from cellbench.analysis.eis_batch import choose_circuit as batch_choose_circuit

    with np.errstate(all="ignore"):
        fit, _ = batch_choose_circuit(frequency_hz, z, candidates=candidates or CANDIDATES)
    if fit is None:
        raise ReportError("no candidate circuit can be fitted to the first spectrum")
    return fit


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
    from cellbench.analysis.eis_batch import iter_sweeps, parameters_frame

    infos = [info for info, _, _ in iter_sweeps(spectra)]
    if len(infos) != len(fits) or not fits:
        raise ReportError(f"{len(fits)} fits for {len(infos)} sweeps: one fit per sweep needed")
    circuits = {f.circuit for f in fits}
    if len(circuits) > 1:
        raise ReportError(f"the sweeps were fitted with different circuits {sorted(circuits)}")
    table = parameters_frame(infos, fits, fits[0].circuit)
    return EisAnalysis(fits[0].circuit, table, list(fits))


def fit_sweeps(spectra: pl.DataFrame, circuit: str | None = None) -> EisAnalysis:
    """Fit every sweep (warm-started in sweep order); without ``circuit`` one circuit chosen on
    all sweeps together (:func:`cellbench.analysis.eis_batch.choose_circuit_for_sweeps`, as
    ``cellbench analyze eis --one-circuit`` does), so that a later sweep that the first one's
    circuit does not fit is not forced into it."""
    from cellbench.analysis.eis_batch import choose_circuit_for_sweeps, fit_spectra, iter_sweeps

    if circuit is None:
        sweeps = list(iter_sweeps(spectra))
        with np.errstate(all="ignore"):
            chosen, _ = choose_circuit_for_sweeps([(f, z) for _, f, z in sweeps])
        if chosen is None:
            raise ReportError("no candidate circuit can be fitted to every spectrum")
        return analysis_from_fits(spectra, chosen)
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
    from cellbench.analysis.eis_drift import arrhenius_sweeps

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
    # the first sweep at each temperature; the last of a step's equilibrium repeats
    first = arrhenius_sweeps(table, isothermal_k=ISOTHERMAL_K)
    ok = first & np.isfinite(r) & (r > 0)
    sigma = conductivity_from_resistance(r[ok], thickness_cm, area_cm2)
    conductivity_sections(
        rep,
        t[ok],
        sigma,
        tag=sfx.lstrip("_"),
        source=f"σ = L/(R·A) from {resistance} of the first sweep at each temperature (the "
        "last of a step's equilibrium repeats), "
        f"L = {thickness_cm:g} cm, A = {area_cm2:g} cm²",
    )


def report_eis(
    spectra: pl.DataFrame, out_dir: Path | str, *, title: str = "Impedance report", **options: Any
) -> ReportFiles:
    """Circuit fits per sweep, Nyquist, Bode with residuals, parameters, DRT (and Arrhenius
    when the sweeps span temperatures). ``options`` go to :func:`eis_sections`."""
    require_matplotlib()
    rep = Report(title)
    eis_sections(rep, spectra, **options)
    return _write(rep, out_dir)
