"""``cellbench analyze replicates FILE...``: mean ± SD (n) of what each cell gave, across cells.

Each FILE is one cell: a run folder or a cycler file (``--quantity cycling`` or ``ccd``), or
for ``--quantity conductivity`` what ``analyze conductivity`` reads (a CSV, a temperature-stepped
run, an impedance file). Cells are
grouped with ``--group-by`` (the run's build batch, its chemistry, a regular expression on the
file name, or all together) and every group gets the statistics of
:mod:`cellbench.analysis.replicates`; cycling also gets per-cycle bands. ``--json`` prints
``{"quantity", "group_by", "groups": {group: {"cells", "statistics", "cycle_bands"}},
"cells": {cell: {...}}}``; ``--report DIR`` writes the tables and figures.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cellbench.cli.analyze_cycling import (
    _cell,
    _conductivity_points,
    _pick_channel,
    _positive,
    _print_json,
    _print_table,
    load_samples,
)
from cellbench.cli.conductivity_card import conductivity_points_for
from cellbench.cli.convert import add_column_map_option
from cellbench.core.errors import CellbenchError

if TYPE_CHECKING:  # polars and the loaders load when the command runs, not to register it
    import polars as pl

QUANTITIES = ("cycling", "ccd", "conductivity")
UNITS = {
    "initial_discharge_capacity_ampere_hour": "Ah",
    "initial_coulombic_efficiency": "",
    "mean_coulombic_efficiency": "",
    "initial_area_specific_resistance_ohm_square_centimeter": "Ω cm²",
    "capacity_retention_last_common_cycle": "",
    "ccd_milliampere_per_square_centimeter": "mA/cm²",
    "cumulative_areal_capacity_milliampere_hour_per_square_centimeter": "mAh/cm²",
    "conductivity_25c_siemens_per_centimeter": "S/cm",
    "activation_energy_ev": "eV",
}


def _labels(files: list[str]) -> list[str]:
    """One label per FILE: its name, the path where names clash, ``#k`` for a repeat."""
    names = [Path(f).name or str(f) for f in files]
    if len(set(names)) != len(names):
        names = [str(Path(f)) for f in files]
    out: list[str] = []
    for n in names:
        k, label = 1, n
        while label in out:
            k += 1
            label = f"{n}#{k}"
        out.append(label)
    return out


def _cycling_cell(path: Path, args: argparse.Namespace) -> tuple[dict[str, Any], pl.DataFrame]:
    import polars as pl

    from cellbench.analysis.cycling import cycle_summary
    from cellbench.analysis.replicates import with_asr
    from cellbench.daq import loaders

    df = _pick_channel(load_samples(path, args.column_map), args.channel, path)
    source = "integration" if loaders.is_run(path) else "counters"
    summary = cycle_summary(df, efficiency=args.efficiency, capacity_source=source)
    cell = _cell(path)
    area = args.area_cm2 or (cell.area_cm2 if cell else None)
    summary = with_asr(summary, area)
    with_dis = summary.filter(pl.col("discharge_capacity_ampere_hour") > 0)
    if with_dis.is_empty():
        raise CellbenchError(f"{path}: no cycle with a discharge capacity")
    first = with_dis.row(0, named=True)
    later = with_dis["coulombic_efficiency"][1:].drop_nulls()
    row: dict[str, Any] = {
        "initial_discharge_capacity_ampere_hour": first["discharge_capacity_ampere_hour"],
        "initial_coulombic_efficiency": first["coulombic_efficiency"],
        "mean_coulombic_efficiency": float(later.mean()) if later.len() else None,
    }
    if "area_specific_resistance_ohm_square_centimeter" in summary.columns:
        row["initial_area_specific_resistance_ohm_square_centimeter"] = first.get(
            "area_specific_resistance_ohm_square_centimeter"
        )
    return row, summary


def _ccd_cell(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    from cellbench.analysis.ccd import critical_current_density

    cell = _cell(path)
    area = args.area_cm2 or (cell.area_cm2 if cell else None)
    if area is None:
        raise CellbenchError(f"{path}: the electrode area is unknown; give --area-cm2 (cm2)")
    df = _pick_channel(load_samples(path, args.column_map), args.channel, path)
    res = critical_current_density(df, area)
    return {
        "ccd_milliampere_per_square_centimeter": res.ccd_milliampere_per_square_centimeter,
        "cumulative_areal_capacity_milliampere_hour_per_square_centimeter": (
            res.cumulative_areal_capacity_milliampere_hour_per_square_centimeter
            if res.shorted
            else None  # no short: a lower bound, not a value to average
        ),
        "shorted": res.shorted,
    }


def _conductivity_cell(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    from cellbench.analysis.conductivity import choose_model, fit_all

    pts = conductivity_points_for(path, args, _conductivity_points)  # CSV, run or EIS file
    fit = choose_model(
        fit_all(
            pts.temperature,
            pts.conductivity_s_per_cm,
            temperature_unit=pts.temperature_unit,
            stderr_s_per_cm=pts.stderr_s_per_cm,
        )
    )
    return {
        "conductivity_25c_siemens_per_centimeter": fit.conductivity_25c_siemens_per_centimeter,
        "activation_energy_ev": fit.activation_energy_ev,
        "model": fit.model,
    }


def _batch_and_chemistry(path: Path) -> tuple[str, str]:
    cell = _cell(path)
    if cell is None:
        return "", ""
    return (cell.build.batch if cell.build else ""), cell.chemistry


def cmd_replicates(args: argparse.Namespace) -> int:
    from cellbench.analysis.replicates import cycle_bands, describe_table, group_cells

    labels = _labels(args.files)
    paths = dict(zip(labels, map(Path, args.files), strict=True))  # labels are unique
    per_cell: dict[str, dict[str, Any]] = {}
    summaries: dict[str, pl.DataFrame] = {}
    for label, path in paths.items():
        if args.quantity == "cycling":
            per_cell[label], summaries[label] = _cycling_cell(path, args)
        elif args.quantity == "ccd":
            per_cell[label] = _ccd_cell(path, args)
        else:
            per_cell[label] = _conductivity_cell(path, args)
    batches, chemistries = {}, {}
    if args.group_by in ("cell-batch", "chemistry"):
        for label, path in paths.items():
            batches[label], chemistries[label] = _batch_and_chemistry(path)
    groups = group_cells(labels, args.group_by, batches=batches, chemistries=chemistries)
    bands: dict[str, pl.DataFrame] = {}
    if summaries:
        for g, cells in groups.items():
            bands[g] = cycle_bands({c: summaries[c] for c in cells})
            _retention(per_cell, summaries, cells)
    numeric = [k for k in UNITS if any(isinstance(r.get(k), float) for r in per_cell.values())]
    stats = {
        g: describe_table({c: per_cell[c] for c in cells}, numeric) for g, cells in groups.items()
    }
    if args.report is not None:
        _report(args, stats, per_cell, groups, bands)
    if args.json:
        _print_json(
            {
                "quantity": args.quantity,
                "group_by": args.group_by,
                "groups": {
                    g: {
                        "cells": cells,
                        "statistics": [s.to_dict() for s in stats[g]],
                        "cycle_bands": bands[g].to_dicts() if g in bands else None,
                    }
                    for g, cells in groups.items()
                },
                "cells": per_cell,
            }
        )
        return 0
    for g, cells in groups.items():
        print(f"group {g}: {len(cells)} cell(s): {', '.join(cells)}")
        rows = [
            {
                "quantity": s.quantity,
                "mean ± SD (n)": s.text(),
                "95 % CI": f"{s.ci_low:.4g} to {s.ci_high:.4g}" if math.isfinite(s.ci_low) else "-",
                "CV": f"{100 * s.cv:.1f} %" if math.isfinite(s.cv) else "-",
                "unit": UNITS.get(s.quantity, ""),
            }
            for s in stats[g]
        ]
        _print_table(rows, [(k, k) for k in ("quantity", "mean ± SD (n)", "95 % CI", "CV", "unit")])
        print()
    return 0


def _retention(
    per_cell: dict[str, dict[str, Any]], summaries: dict[str, pl.DataFrame], cells: list[str]
) -> None:
    """Each cell's discharge capacity at the last cycle every cell of its group reached, over
    its initial one."""
    import polars as pl

    last = min(int(summaries[c]["cycle_count"].max()) for c in cells)
    for c in cells:
        q = summaries[c].filter(pl.col("cycle_count") == last)["discharge_capacity_ampere_hour"]
        q0 = per_cell[c]["initial_discharge_capacity_ampere_hour"]
        value = float(q[0]) / q0 if q.len() and q[0] is not None and q0 else None
        per_cell[c]["capacity_retention_last_common_cycle"] = value
        per_cell[c]["last_common_cycle"] = last


def _report(args, stats, per_cell, groups, bands) -> None:
    from cellbench.analysis.report import Report
    from cellbench.analysis.report.reports_replicates import replicate_sections

    rep = Report(
        f"Replicates ({args.quantity})",
        {"cells": str(len(per_cell)), "grouped by": args.group_by, "groups": str(len(groups))},
    )
    replicate_sections(
        rep, stats_by_group=stats, per_cell=per_cell, groups=groups, bands=bands, units=UNITS
    )
    files = rep.write(args.report)
    print(f"report: {files.html} ({len(files.figures)} figures)", file=sys.stderr)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``replicates`` to ``cellbench analyze``."""
    p = sub.add_parser(
        "replicates",
        help="mean ± SD (n) of capacity, CE, ASR, CCD or conductivity across cells",
        description="Replicate statistics across cells, one FILE per cell: mean, sample SD, n, "
        "95 %% interval of the mean and CV per group. cycling: initial discharge capacity, "
        "initial and mean Coulombic efficiency, initial DC ASR (with the area), retention at "
        "the last cycle every cell of the group reached, and per-cycle bands; ccd: the CCD "
        "and the cumulative areal capacity at failure (cells that did not short count only as "
        "lower bounds and are left out of the latter); conductivity: sigma(25 degC) and Ea "
        "from each CSV.",
    )
    p.add_argument("files", metavar="FILE", nargs="+", help="one run folder or file per cell")
    p.add_argument("--quantity", choices=QUANTITIES, default="cycling", help="what to compare")
    p.add_argument(
        "--group-by",
        default="none",
        help="none (all cells one group; default), cell-batch (the run's [cell.build] batch), "
        "chemistry, or regex:PATTERN (first capture group of PATTERN in the file name)",
    )
    p.add_argument("--channel", help="channel to analyse in each file")
    p.add_argument("--area-cm2", type=_positive, help="electrode area, cm2 (default: the run's)")
    p.add_argument("--thickness-cm", type=_positive, help="pellet thickness, cm (conductivity)")
    p.add_argument(
        "--efficiency",
        choices=("discharge/charge", "charge/discharge"),
        default="discharge/charge",
        help="Coulombic efficiency convention (as analyze cycling)",
    )
    p.add_argument(
        "--electrodes",
        choices=("any", "blocking"),
        default="any",
        help="conductivity from runs or EIS files: how each sweep is fitted (as analyze "
        "conductivity)",
    )
    p.add_argument(
        "--conductivity-kind",
        choices=("total", "bulk", "grain_boundary"),
        help="conductivity from runs or EIS files: which resistance (default total)",
    )
    add_column_map_option(p)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--report", type=Path, metavar="DIR", help="write tables and figures to DIR")
    p.set_defaults(func=cmd_replicates)
