"""Ionic-conductivity reports: the Arrhenius plot with the chosen temperature-dependence model and
its activation energy (the figure is in :mod:`.figures_conductivity`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from cellbench.core.errors import CellbenchError

from .document import Report, ReportFiles
from .figures_conductivity import plot_arrhenius
from .reports_common import _suffix, _write
from .style import require_matplotlib

if TYPE_CHECKING:
    from cellbench.analysis.conductivity import ConductivityFit


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
