"""The Arrhenius plot of ionic conductivity, with the fitted model and its activation energy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .style import COLORS, DARK, WIDE, ReportError, label, new_figure, styled

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from cellbench.analysis.conductivity import ConductivityFit

ZERO_CELSIUS_K = 273.15
_MODEL_NAMES = {"arrhenius": "Arrhenius", "arrhenius_t": "Arrhenius (σT)", "vtf": "VTF"}


def _inv_k_to_c(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):  # matplotlib probes the map at 0
        return 1000 / np.asarray(x, dtype=float) - ZERO_CELSIUS_K


def _c_to_inv_k(c: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 1000 / (np.asarray(c, dtype=float) + ZERO_CELSIUS_K)


@styled
def plot_arrhenius(
    fit: ConductivityFit,
    *,
    alternatives: Sequence[ConductivityFit] = (),
    title: str | None = None,
) -> Figure:
    """log10(sigma / S cm-1) against 1000/T with the fit; Ea with its interval in the legend; the
    top axis gives the temperature in degC.

    ``fit`` (and optional ``alternatives``, drawn dashed) from
    :mod:`cellbench.analysis.conductivity`; the points are the ones the fit was made on.
    """
    tk = np.asarray(fit.temperature_kelvin, dtype=float)
    sigma = np.asarray(fit.conductivity_siemens_per_centimeter, dtype=float)
    if tk.size == 0 or tk.size != sigma.size:
        raise ReportError("the Arrhenius figure needs the fit's temperatures and conductivities")
    fig = new_figure(WIDE)
    ax = fig.subplots(1, 1)
    ax.plot(1000 / tk, np.log10(sigma), "o", color=DARK, ms=5, label="measured")
    span = tk.max() - tk.min()
    grid = np.linspace(tk.min() - 0.05 * span, tk.max() + 0.05 * span, 200)
    for k, f in enumerate([fit, *alternatives]):
        lo, hi = f.activation_energy_ev_ci
        pct = f"{100 * f.confidence:g} %"
        name = _MODEL_NAMES.get(f.model, f.model)
        text = (
            f"{name}: $E_a$ = {f.activation_energy_ev:.3f} eV "
            f"({pct} CI {lo:.3f}–{hi:.3f}; {f.activation_energy_kj_per_mol:.1f} kJ mol⁻¹)"
        )
        if k == 0:
            text += f"\nσ(25 °C) = {f.conductivity_25c_siemens_per_centimeter:.3g} S cm⁻¹"
        ax.plot(
            1000 / grid,
            np.log10(f.predict(grid)),
            "-" if k == 0 else "--",
            color=COLORS[(k + 1) % len(COLORS)],
            lw=1.2,
            label=text,
        )
    ax.set_xlabel(label("1000/T", "K⁻¹"))
    ax.set_ylabel("log₁₀(σ / S cm⁻¹)")
    top = ax.secondary_xaxis("top", functions=(_inv_k_to_c, _c_to_inv_k))
    top.set_xlabel(label("Temperature", "°C"))
    ax.legend(loc="lower left")
    if title:
        ax.set_title(title, loc="left", pad=2)
    return fig
