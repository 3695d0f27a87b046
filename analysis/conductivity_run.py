"""Conductivity against temperature straight from impedance sweeps (a temperature-stepped run
or an EIS file): one point per temperature, each from an equivalent-circuit fit.

The sweeps are chosen by :func:`cellbench.analysis.eis_drift.arrhenius_sweeps` (the first time
each temperature is reached; the last sweep of a step that repeated until equilibrium). Each is
fitted and the resistance split by what the arcs' capacitances say:

* ``electrodes="blocking"``: the blocking-electrode templates of
  :mod:`cellbench.analysis.blocking` (bulk, grain boundary, the electrode spike);
* ``electrodes="any"`` (also non-blocking, e.g. Li | SE | Li): the circuit chosen per sweep by
  :func:`cellbench.analysis.eis_batch.choose_circuit`, arcs assigned by effective capacitance
  (:func:`cellbench.analysis.solid_state.bulk_and_grain_boundary`; interface and electrode arcs
  are not electrolyte).

``kind`` says which resistance gives sigma = L / (R A): ``total`` (bulk + grain boundary, what
inter-laboratory comparisons use), ``bulk`` or ``grain_boundary``. The standard error of each
sigma comes from the fit's covariance and weights the Arrhenius fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from cellbench.analysis.conductivity import ConductivityError
from cellbench.analysis.conductivity_table import ConductivityPoints

Kind = Literal["total", "bulk", "grain_boundary"]
Electrodes = Literal["blocking", "any"]


@dataclass(frozen=True)
class SweepPoint:
    """One conductivity point and where it came from."""

    sweep_index: int | None
    temperature_celsius: float
    resistance_ohm: float
    resistance_stderr_ohm: float
    circuit: str


def conductivity_from_spectra(
    spectra: pl.DataFrame,
    thickness_cm: float,
    area_cm2: float,
    *,
    kind: Kind = "total",
    electrodes: Electrodes = "any",
) -> tuple[ConductivityPoints, list[SweepPoint]]:
    """The conductivity points of a run's (or file's) sweeps, and what each came from."""
    from cellbench.analysis.eis_batch import iter_sweeps
    from cellbench.analysis.eis_drift import arrhenius_sweeps

    if kind not in ("total", "bulk", "grain_boundary"):
        raise ConductivityError(f"kind must be total, bulk or grain_boundary, got {kind!r}")
    if not (thickness_cm and thickness_cm > 0 and area_cm2 and area_cm2 > 0):
        raise ConductivityError("the pellet thickness and area must be positive")
    if "temperature_celsius" not in spectra.columns:
        raise ConductivityError("the sweeps carry no temperature: no conductivity against T")
    sweeps = list(iter_sweeps(spectra))
    table = pl.DataFrame([info for info, _, _ in sweeps])
    if "temperature_celsius" not in table.columns:
        raise ConductivityError("the sweeps carry no temperature: no conductivity against T")
    chosen = arrhenius_sweeps(table)
    points: list[SweepPoint] = []
    with np.errstate(all="ignore"):
        for (info, f, z), use in zip(sweeps, chosen, strict=True):
            if not use:
                continue
            r, se, circuit = _resistance(f, z, thickness_cm, area_cm2, kind, electrodes)
            if not (math.isfinite(r) and r > 0):
                continue
            points.append(
                SweepPoint(
                    info.get("sweep_index"),
                    float(info["temperature_celsius"]),
                    r,
                    se,
                    circuit,
                )
            )
    if len(points) < 3:
        raise ConductivityError(
            f"{len(points)} temperature(s) with a {kind} resistance: an Arrhenius fit needs 3"
        )
    r = np.array([p.resistance_ohm for p in points])
    se = np.array([p.resistance_stderr_ohm for p in points])
    sigma = thickness_cm / (r * area_cm2)
    stderr = sigma * se / r if np.all(np.isfinite(se) & (se > 0)) else None
    t = np.array([p.temperature_celsius for p in points])
    return ConductivityPoints(t, "celsius", sigma, stderr), points


def _resistance(
    f: np.ndarray, z: np.ndarray, thickness: float, area: float, kind: str, electrodes: str
) -> tuple[float, float, str]:
    if electrodes == "blocking":
        from cellbench.analysis.blocking import fit_blocking

        b = fit_blocking(f, z, thickness, area)
        r, se = {
            "total": (b.r_total_ohm, b.r_total_stderr_ohm),
            "bulk": (b.r_bulk_ohm, b.r_bulk_stderr_ohm),
            "grain_boundary": (b.r_grain_boundary_ohm, b.r_grain_boundary_stderr_ohm),
        }[kind]
        return r, se, b.circuit
    from cellbench.analysis.eis_batch import choose_circuit
    from cellbench.analysis.solid_state import SolidStateError, bulk_and_grain_boundary

    fit, _ = choose_circuit(f, z)
    if fit is None:
        return math.nan, math.nan, ""
    try:
        split = bulk_and_grain_boundary(fit)
    except SolidStateError:
        return math.nan, math.nan, fit.circuit
    key = {"total": "r_total", "bulk": "r_bulk", "grain_boundary": "r_grain_boundary"}[kind]
    return float(split[f"{key}_ohm"]), float(split[f"{key}_stderr_ohm"]), fit.circuit
