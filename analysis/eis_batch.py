"""Fit many spectra (EIS every N cycles, or at each temperature) into one table of parameters.

Sweeps are fitted in order; each starts from the previous sweep's parameters (a warm start: a cell
changes little between two sweeps, so the fit converges in a few iterations and keeps the arcs
on the same circuit elements). When a warm start fits clearly worse than the previous sweep did,
the sweep is refitted from the automatic guesses and the better fit kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from cellbench.analysis.circuits import Circuit, parse_circuit
from cellbench.analysis.eis_fit import FitResult, fit_circuit
from cellbench.core.errors import CellbenchError

SWEEP_KEYS = ("channel", "sweep_index")
# per-sweep context carried into the parameter table: column -> how it is reduced over a sweep
CONTEXT = {
    "cycle_count": "first",
    "step_index": "first",
    "test_time_second": "min",
    "unix_time_second": "min",
    "temperature_celsius": "mean",
}


class BatchError(CellbenchError, ValueError):
    """A spectra frame that cannot be fitted (missing columns)."""


def iter_sweeps(spectra: pl.DataFrame) -> Iterator[tuple[dict[str, Any], np.ndarray, np.ndarray]]:
    """(keys and context, frequency / Hz, complex Z / ohm) of each sweep, in sweep order.

    ``spectra`` has the ``spectra`` columns of :mod:`cellbench.core.schema`; a frame without
    ``sweep_index`` is one sweep.
    """
    need = ("frequency_hertz", "z_real_ohm", "z_imag_ohm")
    missing = [c for c in need if c not in spectra.columns]
    if missing:
        raise BatchError(f"spectra frame lacks columns {missing} (has {spectra.columns})")
    keys = [k for k in SWEEP_KEYS if k in spectra.columns]
    if not keys:
        groups: Sequence[tuple[tuple, pl.DataFrame]] = [((), spectra)]
    else:
        ordered = spectra.sort(keys, maintain_order=True)  # stable: points keep their order
        groups = list(ordered.group_by(keys, maintain_order=True))
    for key, df in groups:
        info: dict[str, Any] = dict(zip(keys, key, strict=True))
        for col, how in CONTEXT.items():
            if col in df.columns and df[col].null_count() < df.height:
                s = df[col].drop_nulls()
                info[col] = s[0] if how == "first" else (s.min() if how == "min" else s.mean())
        f = df["frequency_hertz"].to_numpy().astype(float)
        z_re = df["z_real_ohm"].to_numpy().astype(float)
        z = z_re + 1j * df["z_imag_ohm"].to_numpy().astype(float)
        yield info, f, z


def fit_spectra(
    spectra: pl.DataFrame,
    circuit: str | Circuit,
    *,
    weight: str = "modulus",
    warm_start: bool = True,
    fixed: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    results: list[FitResult] | None = None,
) -> pl.DataFrame:
    """Fit every sweep of ``spectra``; one row per sweep.

    Columns: the sweep keys (``channel``, ``sweep_index``) and context (``cycle_count``,
    ``test_time_second`` of the sweep's first point, ``temperature_celsius`` mean, ...) where
    present, then each parameter and ``<name>_stderr``, ``chi2``, ``reduced_chi2``,
    ``n_points``, ``success`` and ``poorly_determined`` (list of names). Pass a list as
    ``results`` to receive the :class:`FitResult` objects too.
    """
    c = parse_circuit(circuit)
    infos, fits = [], []
    previous: FitResult | None = None
    for info, f, z in iter_sweeps(spectra):
        res = warm_fit(
            c, f, z, previous if warm_start else None, fixed=fixed, bounds=bounds, weight=weight
        )
        previous = res
        infos.append(info)
        fits.append(res)
    if results is not None:
        results.extend(fits)
    return parameters_frame(infos, fits, c)


def warm_fit(
    circuit: str | Circuit,
    frequency_hz: np.ndarray,
    z: np.ndarray,
    previous: FitResult | None,
    **options: Any,
) -> FitResult:
    """Fit one sweep starting from ``previous`` (the sweep before, same circuit), or from the
    automatic guesses without one; a warm fit whose reduced chi2 is more than 4x the previous
    sweep's is refitted cold and the better fit kept. ``options`` go to :func:`fit_circuit`."""
    if previous is None or previous.circuit != parse_circuit(circuit).text:
        return fit_circuit(circuit, frequency_hz, z, **options)
    res = fit_circuit(circuit, frequency_hz, z, initial=previous.values, **options)
    if res.reduced_chi2 > 4 * previous.reduced_chi2:
        cold = fit_circuit(circuit, frequency_hz, z, **options)
        res = cold if cold.chi2 < res.chi2 else res
    return res


def parameters_frame(
    infos: Sequence[Mapping[str, Any]], fits: Sequence[FitResult], circuit: str | Circuit
) -> pl.DataFrame:
    """One row per sweep: its keys and context (``infos``, as from :func:`iter_sweeps`), each
    parameter of ``circuit`` and ``<name>_stderr``, ``chi2``, ``reduced_chi2``, ``n_points``,
    ``success`` and ``poorly_determined``."""
    names = parse_circuit(circuit).param_names
    rows = []
    for info, res in zip(infos, fits, strict=True):
        row = dict(info)
        for name in names:
            row[name] = res.values[name]
            row[f"{name}_stderr"] = res.stderr[name]
        row.update(
            chi2=res.chi2,
            reduced_chi2=res.reduced_chi2,
            n_points=res.n_points,
            success=res.success,
            poorly_determined=list(res.poorly_determined),
        )
        rows.append(row)
    schema_over = {"poorly_determined": pl.List(pl.String)}
    return pl.DataFrame(rows, schema_overrides=schema_over, infer_schema_length=None)
