"""Replicate reports: per-cycle mean ± SD bands across cells (n shown), and per-cell values of a
scalar (CCD, conductivity, ...) with each group's mean ± SD, as figures and tables
(statistics from :mod:`cellbench.analysis.replicates`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from cellbench.analysis.replicates import Stat, stats_frame

from .document import Report
from .reports_common import _safe
from .style import COLORS, DARK, label, new_figure, si_unit, styled

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: quantity -> (axis label, unit for si_unit or a literal unit, scale)
_AXES: dict[str, tuple[str, str, float]] = {
    "discharge_capacity_ampere_hour": ("Discharge capacity", "Ah", 1.0),
    "charge_capacity_ampere_hour": ("Charge capacity", "Ah", 1.0),
    "coulombic_efficiency": ("Coulombic efficiency", "%", 100.0),
    "area_specific_resistance_ohm_square_centimeter": ("DC ASR", "Ω cm²", 1.0),
}

#: short panel titles of the per-cell quantities
_TITLES: dict[str, str] = {
    "initial_discharge_capacity_ampere_hour": "initial discharge capacity",
    "initial_coulombic_efficiency": "initial CE",
    "mean_coulombic_efficiency": "mean CE after the first cycle",
    "initial_area_specific_resistance_ohm_square_centimeter": "initial DC ASR",
    "capacity_retention_last_common_cycle": "retention, last common cycle",
    "ccd_milliampere_per_square_centimeter": "CCD",
    "cumulative_areal_capacity_milliampere_hour_per_square_centimeter": "capacity to failure",
    "conductivity_25c_siemens_per_centimeter": "σ(25 °C)",
    "activation_energy_ev": "Ea",
}


@styled
def plot_cycle_bands(
    bands: Mapping[str, pl.DataFrame], quantities: Sequence[str], *, title: str | None = None
) -> Figure:
    """One panel per quantity against cycle: each group's mean as a line, ± 1 SD shaded; the
    number of cells behind each cycle's mean in the bottom panel (where cells drop out)."""
    fig = new_figure((7.0, 2.0 + 1.8 * len(quantities)))
    axes = fig.subplots(
        len(quantities) + 1, 1, sharex=True, height_ratios=[3] * len(quantities) + [1.2]
    )
    for ax, quantity in zip(axes[:-1], quantities, strict=True):
        name, unit, scale = _AXES.get(quantity, (quantity, "", 1.0))
        means = [
            b[f"{quantity}_mean"].to_numpy() for b in bands.values() if f"{quantity}_mean" in b
        ]
        div, shown = (1.0, unit)
        if unit == "Ah" and means:
            div, shown = si_unit(np.concatenate(means), unit)
        for k, (group, b) in enumerate(bands.items()):
            if f"{quantity}_mean" not in b.columns:
                continue
            color = COLORS[k % len(COLORS)]
            cyc = b["cycle_count"].to_numpy()
            m = b[f"{quantity}_mean"].cast(pl.Float64).fill_null(np.nan).to_numpy() * scale / div
            sd = b[f"{quantity}_sd"].cast(pl.Float64).fill_null(np.nan).to_numpy() * scale / div
            n_max = int(b[f"{quantity}_n"].max() or 0)
            ax.plot(cyc, m, "-", color=color, label=f"{group} (n = {n_max})")
            ax.fill_between(cyc, m - sd, m + sd, color=color, alpha=0.2, lw=0)
        ax.set_ylabel(label(name, shown))
    axes[0].legend(loc="best")
    q0 = quantities[0]
    for k, b in enumerate(bands.values()):
        if f"{q0}_n" in b.columns:
            axes[-1].step(
                b["cycle_count"].to_numpy(),
                b[f"{q0}_n"].to_numpy(),
                where="mid",
                color=COLORS[k % len(COLORS)],
            )
    axes[-1].set_ylabel("cells (n)")
    axes[-1].set_xlabel("Cycle")
    axes[-1].yaxis.get_major_locator().set_params(integer=True)
    if title:
        axes[0].set_title(title, loc="left")
    return fig


@styled
def plot_scalar_replicates(
    per_group: Mapping[str, Mapping[str, Mapping[str, float | None]]],
    stats_by_group: Mapping[str, Mapping[str, Stat]],
    units: Mapping[str, str],
) -> Figure:
    """One panel per quantity: every cell's value as an open circle, each group's mean ± SD as a
    bar beside it (n labelled). ``per_group``: quantity -> group -> cell -> value;
    ``stats_by_group``: quantity -> group -> Stat."""
    quantities = list(per_group)
    cols = min(3, len(quantities))
    rows = -(-len(quantities) // cols)
    fig = new_figure((7.0, 2.8 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, q in zip(axes, quantities, strict=False):
        groups = list(per_group[q])
        for k, g in enumerate(groups):
            vals = np.array(
                [v for v in per_group[q][g].values() if v is not None and np.isfinite(v)]
            )
            jitter = np.linspace(-0.12, 0.12, vals.size) if vals.size > 1 else np.zeros(vals.size)
            ax.plot(k - 0.15 + jitter, vals, "o", color=DARK, ms=4, mfc="none")
            s = stats_by_group[q][g]
            if s.n:
                err = s.sd if np.isfinite(s.sd) else 0.0
                ax.errorbar(k + 0.15, s.mean, yerr=err, fmt="s", color=COLORS[0], capsize=4)
                ax.annotate(
                    f"n={s.n}",
                    (k + 0.15, s.mean),
                    xytext=(6, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=7,
                )
        ax.set_xticks(range(len(groups)), groups)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        if "conductivity" in q:
            ax.set_yscale("log")
        ax.set_title(_TITLES.get(q, q.replace("_", " ")), loc="left", fontsize=8)
        if units.get(q):
            ax.set_ylabel(units[q])
    for ax in axes[len(quantities) :]:
        ax.set_visible(False)
    return fig


def replicate_sections(
    rep: Report,
    *,
    stats_by_group: Mapping[str, Sequence[Stat]],
    per_cell: Mapping[str, Mapping[str, float | None]],
    groups: Mapping[str, Sequence[str]],
    bands: Mapping[str, pl.DataFrame] | None = None,
    units: Mapping[str, str] | None = None,
    figures: bool = True,
) -> None:
    """Tables of mean ± SD (n) per group and quantity, the per-cell values, per-cycle bands
    (``bands``: group -> :func:`cellbench.analysis.replicates.cycle_bands`) and their figures."""
    units = dict(units or {})
    rep.section("Replicates")
    frames = [stats_frame(s, group=g) for g, s in stats_by_group.items()]
    rep.table(
        "replicate_statistics",
        pl.concat(frames, how="diagonal_relaxed"),
        "Mean, sample SD (ddof = 1), n, 95 % interval of the mean, per group and quantity",
    )
    cell_rows = [
        {"group": g, "cell": c, **{q: per_cell[c].get(q) for q in per_cell[c]}}
        for g, cells in groups.items()
        for c in cells
    ]
    rep.table("replicate_cells", pl.DataFrame(cell_rows, strict=False), "Per-cell values")
    if bands:
        for g, b in bands.items():
            rep.table(f"cycle_bands_{_safe(g)}", b, f"Per-cycle mean, SD and n, group {g}")
        shown = [q for q in _AXES if any(f"{q}_mean" in b.columns for b in bands.values())]
        if figures and shown:
            rep.figure(
                "cycle_bands",
                plot_cycle_bands(bands, shown),
                "Mean ± 1 SD across the cells of each group per cycle; n per cycle below",
            )
    if figures:
        per_q: dict[str, dict[str, dict[str, float | None]]] = {}
        stat_q: dict[str, dict[str, Stat]] = {}
        for s in next(iter(stats_by_group.values())):
            q = s.quantity
            by_group = {g: {c: per_cell[c].get(q) for c in cells} for g, cells in groups.items()}
            if any(v is not None for d in by_group.values() for v in d.values()):
                per_q[q] = by_group
                stat_q[q] = {
                    g: next(x for x in stats_by_group[g] if x.quantity == q) for g in groups
                }
        if per_q:
            rep.figure(
                "replicate_cells",
                plot_scalar_replicates(per_q, stat_q, units),
                "Every cell (open circles) and each group's mean ± SD, per quantity",
            )
