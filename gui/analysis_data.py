"""What the window's Analysis tab computes, kept without Qt: open, fit, fade, Arrhenius, CCD.

Every function takes frames and numbers and returns results of :mod:`cellbench.analysis`; the
panel only draws them. :func:`open_data` reads what ``cellbench inspect`` and ``cellbench
report`` read: a cellbench run folder (through the run reader, read-only) or any vendor file the
readers know (BioLogic, Neware, Gamry, ZPlot, CSV exports ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellbench.analysis.report import RunData
from cellbench.core.errors import CellbenchError

#: The fit circuit choice meaning "pick one by BIC among the candidates".
AUTO = "auto"


class AnalysisError(CellbenchError):
    """An analysis the data cannot support (says what is missing)."""


def open_data(path: Path | str) -> RunData:
    """A run folder's tables and ``run.json``, or a vendor file's frame (with reader notes).

    :func:`cellbench.daq.loaders.load_run_data`, raising :class:`AnalysisError`; reader warnings
    go only into the notes.
    """
    from cellbench.daq.loaders import load_run_data

    return load_run_data(path, error=AnalysisError, reemit_warnings=False)


@dataclass
class SweepData:
    """One sweep to fit: its label and frequency (Hz) / impedance (ohm, complex)."""

    label: str
    info: dict[str, Any]
    frequency_hz: np.ndarray
    z: np.ndarray


def sweeps_of(spectra: pl.DataFrame | None) -> list[SweepData]:
    """Every sweep of a ``spectra`` frame, in order, labelled with channel, index, T and cycle."""
    from cellbench.analysis.eis_batch import iter_sweeps

    if spectra is None or spectra.height == 0:
        return []
    out = []
    for info, f, z in iter_sweeps(spectra):
        parts = []  # the channel is chosen beside the list: not repeated in every label
        parts.append(f"sweep {info.get('sweep_index', len(out))}")
        t = info.get("temperature_celsius")
        if t is not None and math.isfinite(t):
            parts.append(f"{t:.0f} °C")
        if info.get("cycle_count") is not None:
            parts.append(f"cycle {info['cycle_count']}")
        out.append(SweepData(", ".join(parts), dict(info), f, z))
    return out


@dataclass
class SpectrumFit:
    """A fit of one sweep; ``candidates`` lists what the automatic choice compared."""

    result: Any  # cellbench.analysis.eis_fit.FitResult
    candidates: list[dict[str, Any]] = field(default_factory=list)

    def table(self) -> pl.DataFrame:
        """parameter, value, standard error, relative standard error (%)."""
        res = self.result
        names = list(res.values)
        values = [res.values[n] for n in names]
        errors = [res.stderr[n] for n in names]
        rel = [
            100 * e / abs(v) if v and math.isfinite(e) else math.inf
            for v, e in zip(values, errors, strict=True)
        ]
        return pl.DataFrame(
            {"parameter": names, "value": values, "stderr": errors, "rel_stderr_percent": rel}
        )


def fit_sweep(sweep: SweepData, circuit: str = AUTO) -> SpectrumFit:
    """Fit ``circuit`` (a circuit string, or :data:`AUTO` to choose by BIC) to one sweep."""
    from cellbench.analysis.eis_batch import choose_circuit
    from cellbench.analysis.eis_fit import fit_circuit

    with np.errstate(all="ignore"):
        if circuit.strip().lower() == AUTO:
            res, chosen = choose_circuit(sweep.frequency_hz, sweep.z)
            if res is None:
                raise AnalysisError(f"{sweep.label}: no candidate circuit can be fitted")
            return SpectrumFit(res, list(chosen.get("candidates", [])))
        return SpectrumFit(fit_circuit(circuit, sweep.frequency_hz, sweep.z))


def batch_fits(spectra: pl.DataFrame, circuit: str) -> pl.DataFrame:
    """Every sweep fitted with ``circuit`` (warm-started): one row per sweep with each
    parameter and its ``_stderr`` (see :func:`cellbench.analysis.eis_batch.fit_spectra`)."""
    from cellbench.analysis.eis_batch import fit_spectra

    with np.errstate(all="ignore"):
        return fit_spectra(spectra, circuit)


def interface_resistance(table: pl.DataFrame, resistance: str = "R1") -> pl.DataFrame:
    """cycle (or sweep), resistance and its standard error from a batch-fit table."""
    if resistance not in table.columns:
        have = [c for c in table.columns if c.startswith("R") and not c.endswith("_stderr")]
        raise AnalysisError(f"the circuit has no {resistance}; resistances: {', '.join(have)}")
    x = "cycle_count" if "cycle_count" in table.columns else "sweep_index"
    out = table.select(
        pl.col(x).cast(pl.Float64).alias(x),
        pl.col(resistance).alias(f"{resistance}_ohm"),
        pl.col(f"{resistance}_stderr").alias(f"{resistance}_stderr_ohm"),
    )
    return out.filter(pl.col(x).is_not_null())


def cycle_table(samples: pl.DataFrame) -> pl.DataFrame:
    """The per-cycle summary (capacities, CE) of one channel's samples."""
    from cellbench.analysis.cycling import cycle_summary

    return cycle_summary(samples)


def fade(samples: pl.DataFrame, threshold: float = 0.8):
    """(cycles, retention, FadeReport) of one channel's samples."""
    from cellbench.analysis.fade import analyze_fade
    from cellbench.analysis.report.reports import retention_series

    x, y, _ = retention_series(cycle_table(samples))
    return x, y, analyze_fade(x, y, threshold=threshold)


def arrhenius(table: pl.DataFrame, thickness_cm: float, area_cm2: float, resistance: str = "R0"):
    """(T degC, sigma S/cm, ConductivityFit) from batch fits at several temperatures: the first
    sweep at each temperature (:func:`cellbench.analysis.eis_drift.arrhenius_sweeps`),
    sigma = L / (R A)."""
    from cellbench.analysis.conductivity import conductivity_from_resistance, fit_arrhenius
    from cellbench.analysis.eis_drift import arrhenius_sweeps

    if "temperature_celsius" not in table.columns:
        raise AnalysisError("the sweeps carry no temperature: no Arrhenius plot")
    if resistance not in table.columns:
        raise AnalysisError(f"the circuit has no {resistance}")
    t = table["temperature_celsius"].cast(pl.Float64).to_numpy()
    r = table[resistance].cast(pl.Float64).to_numpy()
    first = arrhenius_sweeps(table)  # the last sweep of an equilibrium wait
    ok = first & np.isfinite(r) & (r > 0)
    if ok.sum() < 2:
        raise AnalysisError(
            f"sweeps at {ok.sum()} temperature(s): an Arrhenius fit needs 2 or more"
        )
    sigma = conductivity_from_resistance(r[ok], thickness_cm, area_cm2)
    return t[ok], sigma, fit_arrhenius(t[ok], sigma)


def ccd(samples: pl.DataFrame, area_cm2: float):
    """The CCD result of one channel's current staircase."""
    from cellbench.analysis.ccd import critical_current_density

    return critical_current_density(samples, area_cm2)


def one_channel(frame: pl.DataFrame | None, channel: str | None) -> pl.DataFrame | None:
    """The rows of ``channel`` (all rows when the frame has no channel column or ``None``)."""
    if frame is None or channel is None or "channel" not in frame.columns:
        return frame
    return frame.filter(pl.col("channel") == channel)


def channels_of(data: RunData) -> list[str]:
    names: list[str] = []
    for frame in (data.samples, data.spectra):
        if frame is not None and "channel" in frame.columns and frame.height:
            names += [
                c for c in frame["channel"].unique(maintain_order=True).to_list() if c not in names
            ]
    return names
