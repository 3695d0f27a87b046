"""``cellbench analyze blocking|polarisation|degradation``: blocking-electrode impedance fits,
potentiostatic polarisation (electronic conductivity, Bruce-Vincent transference number) and
degradation modes from pseudo-OCV curves.

``--json`` prints the analysis modules' ``to_dict`` output (units in the key names; non-finite
numbers as ``null``); without it the figures print as readable lines.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from cellbench.cli.analyze_cycling import (
    _cell,
    _pick_channel,
    _positive,
    _print_json,
    _print_table,
    load_samples,
)
from cellbench.cli.convert import add_column_map_option
from cellbench.cli.help_text import LazyChoices
from cellbench.core.errors import CellbenchError


def _geometry(args: argparse.Namespace, path: Path) -> tuple[float, float]:
    cell = _cell(path)
    thickness = args.thickness_cm or (cell.thickness_cm if cell else None)
    area = args.area_cm2 or (cell.area_cm2 if cell else None)
    if thickness is None or area is None:
        raise CellbenchError(
            f"{path}: the pellet geometry is unknown; give --thickness-cm and --area-cm2"
        )
    return thickness, area


def _sig(x: float | None, unit: str = "", digits: int = 4) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.{digits}g} {unit}".rstrip()


# ------------------------------------------------------------------------------- blocking


def cmd_blocking(args: argparse.Namespace) -> int:
    import numpy as np

    from cellbench.analysis.blocking import fit_blocking
    from cellbench.analysis.eis_batch import iter_sweeps
    from cellbench.daq.loaders import load_spectra

    path = Path(args.file)
    thickness, area = _geometry(args, path)
    sweeps = list(iter_sweeps(load_spectra(path)))
    if not sweeps:
        raise CellbenchError(f"{path}: no impedance sweeps found")
    if args.sweep is not None:
        sweeps = [s for s in sweeps if s[0].get("sweep_index") == args.sweep]
        if not sweeps:
            raise CellbenchError(f"{path}: no sweep {args.sweep}")
    out = []
    with np.errstate(all="ignore"):
        for info, f, z in sweeps:
            res = fit_blocking(f, z, thickness, area, template=args.template)
            d = {**{k: v for k, v in info.items() if k != "channel"}, **res.to_dict()}
            if not args.fit_details:
                d.pop("fit")
            out.append(d)
    if args.json:
        _print_json(out[0] if len(out) == 1 else out)
        return 0
    rows = [
        {
            "sweep": d.get("sweep_index", "-"),
            "T/degC": _sig(d.get("temperature_celsius")),
            "template": d["template"],
            "R_b/ohm": _sig(d["r_bulk_ohm"]),
            "R_gb/ohm": _sig(d["r_grain_boundary_ohm"]),
            "sigma_b/S cm-1": _sig(d["sigma_bulk_siemens_per_centimeter"], digits=3),
            "sigma_gb/S cm-1": _sig(d["sigma_grain_boundary_siemens_per_centimeter"], digits=3),
            "sigma_tot/S cm-1": _sig(d["sigma_total_siemens_per_centimeter"], digits=3),
            "C_el/F cm-2": _sig(d["electrode_capacitance_farad_per_square_centimeter"], digits=3),
        }
        for d in out
    ]
    _print_table(rows, [(k, k) for k in rows[0]])
    for d in out:
        for w in d["warnings"]:
            print(f"sweep {d.get('sweep_index', '-')}: {w}")
    return 0


# --------------------------------------------------------------------------- polarisation


def cmd_polarisation(args: argparse.Namespace) -> int:
    from cellbench.analysis.transport_numbers import (
        bruce_vincent,
        electronic_conductivity,
        hold_from_samples,
        polarisation_currents,
    )

    path = Path(args.file)
    df = _pick_channel(load_samples(path, args.column_map), args.channel, path)
    t, i, dv = hold_from_samples(df, step_index=args.step_index)
    if args.voltage_step_v is not None:
        dv = args.voltage_step_v
    if t.size == 0:
        raise CellbenchError(f"{path}: no samples in the hold")
    pol = polarisation_currents(t - t[0], i, dv, steady_fraction=args.steady_fraction)
    out: dict[str, Any] = {"polarisation": pol.to_dict()}
    if args.r0_ohm is not None or args.rss_ohm is not None:
        if args.r0_ohm is None or args.rss_ohm is None:
            raise CellbenchError("Bruce-Vincent needs both --r0-ohm and --rss-ohm")
        bv = bruce_vincent(
            pol,
            args.r0_ohm,
            args.rss_ohm,
            r_bulk_ohm=args.r_bulk_ohm,
            r0_stderr_ohm=args.r0_stderr_ohm,
            rss_stderr_ohm=args.rss_stderr_ohm,
        )
        out["bruce_vincent"] = bv.to_dict()
    else:
        thickness, area = _geometry(args, path)
        ec = electronic_conductivity(pol, thickness, area, r_total_ohm=args.r_total_ohm)
        out["electronic"] = ec.to_dict()
    if args.json:
        _print_json(out)
        return 0
    print(
        f"dV = {1000 * pol.voltage_step_volt:.4g} mV, I0 = {pol.initial_current_ampere:.4g} A, "
        f"Iss = {pol.steady_current_ampere:.4g} A over the last "
        f"{100 * args.steady_fraction:g} % of {pol.hold_second:.0f} s "
        f"({'steady' if pol.steady else f'drifting {100 * pol.drift_fraction:.1f} %'})"
    )
    if "bruce_vincent" in out:
        bv = out["bruce_vincent"]
        print(
            f"t+ = {bv['transference_number']:.3f} ± {bv['transference_number_stderr']:.3f} "
            f"(Bruce-Vincent; I0 {bv['initial_current_source']}; Iss/I0 = "
            f"{bv['current_ratio']:.3f})"
        )
        warnings = bv["warnings"]
    else:
        ec = out["electronic"]
        print(
            f"sigma_e = {ec['sigma_electronic_siemens_per_centimeter']:.4g} S/cm, "
            f"R_e = {ec['r_electronic_ohm']:.4g} ohm, t_e = "
            f"{ec['electronic_transference_number']:.3g} (I0 {ec['initial_current_source']})"
        )
        warnings = ec["warnings"]
    for w in warnings:
        print(f"warning: {w}")
    return 0


# ---------------------------------------------------------------------------- degradation


def _ocp(path: Path, name: str):
    import polars as pl

    from cellbench.analysis.degradation_modes import ElectrodeOCP

    if not path.is_file():
        raise CellbenchError(f"{path}: no such file ({name} reference OCP)")
    try:
        frame = pl.read_csv(path, comment_prefix="#")
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        raise CellbenchError(f"{path}: cannot read as CSV: {exc}") from None
    try:
        return ElectrodeOCP.from_frame(frame, name)
    except CellbenchError as exc:
        raise CellbenchError(f"{path}: {exc}") from None


def cmd_degradation(args: argparse.Namespace) -> int:
    from cellbench.analysis.degradation_modes import (
        degradation_modes_by_cycle,
        pseudo_ocv_from_cycle,
    )

    path = Path(args.file)
    pe = _ocp(Path(args.positive_ocp), "positive")
    ne = _ocp(Path(args.negative_ocp), "negative")
    df = _pick_channel(load_samples(path, args.column_map), args.channel, path)
    cycles = args.cycles or sorted(df["cycle_count"].unique().drop_nulls().to_list())
    curves = {}
    for c in cycles:
        p = pseudo_ocv_from_cycle(df, int(c))
        curves[int(c)] = (p["capacity_ampere_hour"].to_numpy(), p["ocv_volt"].to_numpy())
    table = degradation_modes_by_cycle(curves, pe, ne, dqdv_weight=args.dqdv_weight)
    if args.json:
        _print_json(table.to_dicts())
        return 0
    cols = [
        ("cycle_count", "cycle"),
        ("curve_capacity_ah", "Q/Ah"),
        ("loss_of_lithium_inventory", "LLI"),
        ("loss_of_active_material_positive", "LAM_PE"),
        ("loss_of_active_material_negative", "LAM_NE"),
        ("capacity_loss", "Q loss"),
        ("rmse_volt", "rmse/V"),
    ]
    _print_table(table.to_dicts(), cols)
    return 0


def _cycles(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"cycles must be whole numbers, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("give at least one cycle")
    return out


def _template_names() -> tuple[str, ...]:
    from cellbench.analysis.blocking import TEMPLATES  # numpy and scipy: only when asked

    return ("auto", *TEMPLATES)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``blocking``, ``polarisation`` and ``degradation`` to ``cellbench analyze``."""
    p = sub.add_parser(
        "blocking",
        help="bulk, grain-boundary and total conductivity of a pellet between blocking electrodes",
        description="Fits blocking-electrode circuits (bulk arc, grain-boundary arc, electrode "
        "spike; the bulk as a series resistance when its arc is above the band) to each sweep "
        "and reports R_bulk, R_gb, their effective capacitances, the electrode capacitance, "
        "sigma_bulk, sigma_gb (apparent and brick-layer specific) and sigma_total in S/cm.",
    )
    p.add_argument("file", metavar="FILE", help="run folder or EIS file")
    p.add_argument("--thickness-cm", type=_positive, help="pellet thickness, cm (default: run)")
    p.add_argument("--area-cm2", type=_positive, help="electrode area, cm2 (default: run)")
    p.add_argument(
        "--template",
        choices=LazyChoices(_template_names),
        default="auto",
        metavar="TEMPLATE",  # a metavar: argparse would list the choices while registering
        help="circuit template, one of: %(choices)s (default: auto, every template, chosen by BIC)",
    )
    p.add_argument("--sweep", type=int, help="only this sweep_index")
    p.add_argument("--fit-details", action="store_true", help="include each fit in the JSON")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_blocking)

    p = sub.add_parser(
        "polarisation",
        help="DC polarisation: electronic conductivity, or the Bruce-Vincent t+",
        description="Reads a potentiostatic hold (the longest step, or --step-index) and "
        "reports I0, Iss and whether the current is steady. With blocking electrodes: the "
        "electronic conductivity sigma_e = Iss L / (dV A). With --r0-ohm and --rss-ohm "
        "(interfacial resistances before and after, from impedance): the Bruce-Vincent "
        "transference number t+ = Iss (dV - I0 R0) / (I0 (dV - Iss Rss)).",
    )
    p.add_argument("file", metavar="FILE", help="run folder or cycler/potentiostat file")
    add_column_map_option(p)
    p.add_argument("--channel", help="channel to analyse")
    p.add_argument("--step-index", type=int, help="the hold's step_index (default: longest)")
    p.add_argument("--voltage-step-v", type=float, help="dV, V (default: from the voltages)")
    p.add_argument("--steady-fraction", type=float, default=0.1, help="end of hold for Iss")
    p.add_argument("--thickness-cm", type=_positive, help="pellet thickness, cm")
    p.add_argument("--area-cm2", type=_positive, help="electrode area, cm2")
    p.add_argument("--r-total-ohm", type=_positive, help="ionic resistance from EIS (for t_e)")
    p.add_argument("--r0-ohm", type=float, help="interfacial resistance before, ohm")
    p.add_argument("--rss-ohm", type=float, help="interfacial resistance after, ohm")
    p.add_argument("--r-bulk-ohm", type=_positive, help="bulk resistance before (I0 by Ohm)")
    p.add_argument("--r0-stderr-ohm", type=float, default=0.0)
    p.add_argument("--rss-stderr-ohm", type=float, default=0.0)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_polarisation)

    p = sub.add_parser(
        "degradation",
        help="LLI, LAM_PE, LAM_NE from pseudo-OCV curves and reference electrode OCPs",
        description="Builds the pseudo-OCV of each slow cycle (charge and discharge averaged "
        "at equal SOC), fits the electrode balance with the reference OCPs (CSV files with "
        "theta and potential_volt columns, theta the lithiation fraction 0..1) to it and its "
        "dQ/dV, and reports the degradation modes against the first cycle given.",
    )
    p.add_argument("file", metavar="FILE", help="run folder or cycler file")
    add_column_map_option(p)
    p.add_argument("--positive-ocp", required=True, metavar="CSV", help="positive OCP table")
    p.add_argument("--negative-ocp", required=True, metavar="CSV", help="negative OCP table")
    p.add_argument("--cycles", type=_cycles, help="slow cycles, e.g. 1,50,100 (default: all)")
    p.add_argument("--channel", help="channel to analyse")
    p.add_argument("--dqdv-weight", type=float, default=0.5, help="weight of the dQ/dV term")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_degradation)
