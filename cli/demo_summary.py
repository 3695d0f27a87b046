"""The summary ``cellbench demo`` prints: per-cycle table and an equivalent-circuit fit per sweep.

Written next to the run's tables as ``<run>/summary/cycles.csv`` and ``<run>/summary/eis_fits.csv``
(the run store ignores folders that are not tables), computed with :mod:`cellbench.analysis`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl


def summarise(run_path: Path | str) -> list[str]:
    """Compute and write the summary; returns the lines to print."""
    from cellbench.daq.store import open_run

    run_path = Path(run_path)
    reader = open_run(run_path)
    out_dir = run_path / "summary"
    out_dir.mkdir(exist_ok=True)
    lines = _cycles(reader.read("samples"), out_dir)
    lines += _eis(reader.read("spectra"), out_dir)
    lines += _truth(reader.meta.ground_truth or {})
    return lines


def _truth(truth: dict) -> list[str]:
    """The simulated cell's values the fits should find (at the run's start, 25 degC)."""
    p = truth.get("circuit_parameters") or {}
    try:
        series = p["R0"] + p["R1"] + p["R2"]  # leads + bulk + grain boundaries: above 100 kHz
        interface = p["R3"]
    except (KeyError, TypeError):
        return ["ground truth: in run.json (ground_truth)"] if truth else []
    return [
        f"ground truth (run.json, simulated cell at {truth.get('temperature_celsius', 25):.0f} "
        f"degC): series {series:.4g} ohm (fit R0), interface {interface:.4g} ohm (fit R1), "
        f"capacity {1e3 * truth.get('capacity_ah', float('nan')):.4g} mAh"
    ]


def _cycles(samples: pl.DataFrame, out_dir: Path) -> list[str]:
    from cellbench.analysis.cycling import cycle_summary

    if samples.is_empty():
        return ["cycle summary: no samples"]
    table = cycle_summary(samples)
    path = out_dir / "cycles.csv"
    table.write_csv(path)
    cycled = table.filter(pl.col("discharge_capacity_ampere_hour") > 0)
    if cycled.is_empty():
        return [f"cycle summary: {path} (no discharge)"]
    first = cycled.row(0, named=True)
    last = cycled.row(-1, named=True)
    retention = last["discharge_capacity_ampere_hour"] / first["discharge_capacity_ampere_hour"]
    q0 = first["discharge_capacity_ampere_hour"] * 1e3
    q1 = last["discharge_capacity_ampere_hour"] * 1e3
    return [
        f"cycle summary: {path}",
        f"  {cycled.height} cycles; discharge capacity {q0:.4g} -> {q1:.4g} mAh "
        f"({retention:.1%} retained); "
        f"coulombic efficiency of the last cycle {last['coulombic_efficiency']:.2%}",
    ]


def _eis(spectra: pl.DataFrame, out_dir: Path) -> list[str]:
    """Each sweep fitted with the circuit ``cellbench analyze eis`` would choose for it."""
    from cellbench.analysis.eis_batch import choose_circuit, iter_sweeps, undetermined

    if spectra.is_empty():
        return ["EIS fits: no spectra"]
    rows = []
    warm: dict = {}  # as analyze eis: each candidate starts from its fit of the sweep before
    for info, f, z in iter_sweeps(spectra):
        row = {
            "channel": info.get("channel"),
            "sweep_index": int(info.get("sweep_index", 0)),
            "cycle_count": int(info.get("cycle_count", 0)),
            "temperature_celsius": float(info.get("temperature_celsius", math.nan)),
        }
        with np.errstate(all="ignore"):  # trial starts of the optimiser may overflow
            fit, _ = choose_circuit(f, z, previous=warm)
        if fit is None:
            row["error"] = "too few points for any candidate circuit"
        else:
            row["circuit"] = fit.circuit
            row.update({k: float(v) for k, v in fit.values.items()})
            row.update({f"{k}_stderr": float(v) for k, v in fit.stderr.items()})
            row["reduced_chi2"] = float(fit.reduced_chi2)
            row["undetermined"] = ",".join(undetermined(fit))
        rows.append(row)
    table = pl.DataFrame(rows, infer_schema_length=None)
    path = out_dir / "eis_fits.csv"
    table.write_csv(path)
    lines = [f"EIS fits (each sweep's circuit chosen as by cellbench analyze eis): {path}"]
    for row in rows:
        if "R0" in row:
            lost = row["undetermined"].split(",")
            r0, r1 = (
                "undetermined" if name in lost else f"{row[name]:.4g} ohm" for name in ("R0", "R1")
            )
            lines.append(
                f"  sweep {row['sweep_index']:>2} cycle {row['cycle_count']:>2} "
                f"T {row['temperature_celsius']:5.1f} degC: R0 {r0}, "
                f"R1 (interface) {r1}  [{row['circuit']}]"
            )
        else:
            lines.append(f"  sweep {row['sweep_index']}: fit failed: {row.get('error')}")
    return lines


def next_steps(run_path: Path | str) -> list[str]:
    """What to try next on the demo's run (printed after the summary; copy-paste into a shell)."""
    import shlex

    return [
        "try next:",
        f"  RUN={shlex.quote(str(run_path))}",
        '  cellbench runs show "$RUN"                     # what was recorded, the events',
        '  cellbench analyze eis "$RUN"                   # circuit fits, sweep by sweep',
        '  cellbench analyze cycling "$RUN"               # the per-cycle table',
        '  cellbench report "$RUN" --out "$RUN/report"    # HTML report with figures',
        '  cellbench gui "$RUN"                           # the run in the window (gui extra)',
    ]
