"""``cellbench analyze eis FILE``: fit an equivalent circuit to each sweep of a run or EIS file.

With ``--json`` one JSON object per sweep (a list for a run folder or a file with several sweeps)::

    {"circuit": "R0-p(R1,CPE1)", "parameters": {"R0": {"value": 12.1, "stderr": 0.05}, ...},
     "chi2": ..., "reduced_chi2": ..., "weight": "modulus", "aic": ..., "bic": ...,
     "n_points": ..., "poorly_determined": [...], "sweep_index": 0,
     "chosen_from": {"criterion": "bic", "rule": ..., "candidates": [{"circuit": ...,
                     "bic": ..., "resistances_determined": true}, ...]},
     "kk": {"passed": true, "rms": ..., "m": ...}}

``chosen_from`` is present only when no ``--circuit`` was given; non-finite numbers are null.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cellbench.cli.report import add_report_option, write_report

CANDIDATES: tuple[str, ...] = (
    "R0-p(R1,CPE1)",
    "R0-p(R1,CPE1)-CPE2",
    "R0-p(R1,CPE1)-W1",
    "R0-p(R1,CPE1)-p(R2,CPE2)",
    "R0-p(R1,CPE1)-p(R2,CPE2)-CPE3",
    "R0-p(R1,CPE1)-p(R2,CPE2)-p(R3,CPE3)",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eis",
        help="fit an equivalent circuit to impedance spectra",
        description=(
            "Fit an equivalent circuit to each impedance sweep of FILE (a cellbench run folder or "
            "an EIS file: three-column csv of frequency / Hz, Z' / ohm, Z'' / ohm, or a vendor "
            "export). No initial guess is needed. Without --circuit the circuit is chosen from "
            f"{len(CANDIDATES)} candidates (each also with an inductance L0 when Z'' > 0 at high "
            "frequency): the lowest BIC among those whose resistances are determined; the choice "
            "is reported. A Lin-KK test is run on each sweep."
        ),
        epilog="example: cellbench analyze eis cell.csv --circuit 'R0-p(R1,CPE1)-W1' --json",
    )
    p.add_argument("file", type=Path, metavar="FILE", help="run folder or EIS file")
    p.add_argument(
        "--circuit",
        help="circuit string, e.g. 'R0-p(R1,CPE1)-p(R2-Wo1,C2)' (elements R C L CPE W Wo Ws G TLM)",
    )
    p.add_argument(
        "--weight",
        choices=("unit", "proportional", "modulus"),
        default="modulus",
        help="residual weighting (default: modulus, i.e. relative to |Z|)",
    )
    p.add_argument(
        "--drop-inductive",
        action="store_true",
        help="discard points with Z'' > 0 before fitting (as impedance.py's examples do)",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    add_report_option(p)
    p.set_defaults(func=run)


def _num(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _report(res, weight: str) -> dict[str, Any]:
    return {
        "circuit": res.circuit,
        "parameters": {
            n: {"value": _num(v), "stderr": _num(res.stderr[n])} for n, v in res.values.items()
        },
        "chi2": _num(res.chi2),
        "reduced_chi2": _num(res.reduced_chi2),
        "weight": weight,
        "aic": _num(res.aic),
        "bic": _num(res.bic),
        "n_points": res.n_points,
        "poorly_determined": list(res.poorly_determined),
    }


CHOICE_RULE = (
    "lowest BIC among the candidates whose resistances are all determined (relative standard "
    "error <= 10 %); lowest BIC overall when none is"
)


def _choose(f: np.ndarray, z: np.ndarray, weight: str):
    """Fit every candidate; keep the lowest BIC among those whose resistances the data
    determine. A circuit that wins BIC by splitting a resistance the data cannot split (two
    overlapping arcs on a dummy cell) reads as precise values that are not; the simpler
    candidate that explains the data with determined resistances is the answer a user wants."""
    from cellbench.analysis.circuits import parse_circuit
    from cellbench.analysis.eis_fit import FitError, fit_circuit

    # Z'' > 0 at the top of the band: an inductance may explain it (leads), or not (an
    # instrument artefact); both forms compete then
    inductive = bool(np.any(z[np.argsort(-f)[:3]].imag > 0))
    circuits = [f"L0-{c}" for c in CANDIDATES] + list(CANDIDATES) if inductive else CANDIDATES
    tried = []
    fits = []
    for circuit in circuits:
        try:
            res = fit_circuit(circuit, f, z, weight=weight)
        except FitError:  # too few points for this many parameters
            continue
        resistances = [el.name for el in parse_circuit(circuit).elements if el.kind == "R"]
        determined = not set(resistances) & set(res.poorly_determined)
        fits.append((res, determined))
        tried.append(
            {
                "circuit": circuit,
                "bic": _num(res.bic),
                "aic": _num(res.aic),
                "chi2": _num(res.chi2),
                "resistances_determined": determined,
            }
        )
    pool = [res for res, ok in fits if ok] or [res for res, _ in fits]
    best = min(pool, key=lambda r: r.bic) if pool else None
    return best, {"criterion": "bic", "rule": CHOICE_RULE, "candidates": tried}


def run(args: argparse.Namespace) -> int:
    from cellbench.analysis.eis_batch import iter_sweeps, warm_fit
    from cellbench.analysis.kk import KKError, lin_kk
    from cellbench.daq.loaders import is_run, load_spectra

    frame = load_spectra(args.file)
    if frame.height == 0:
        raise ValueError(f"{args.file}: no impedance points found")
    sweeps = list(iter_sweeps(frame))
    reports = []
    circuit = args.circuit
    chosen_from = None
    for info, f, z in sweeps:
        if args.drop_inductive:
            keep = z.imag <= 0
            f, z = f[keep], z[keep]
        if circuit is None:
            res, chosen_from = _choose(f, z, args.weight)
            if res is None:
                raise ValueError(f"{args.file}: too few points to fit any candidate circuit")
            circuit = res.circuit  # later sweeps of a run use the same circuit, warm-started
        else:
            res = warm_fit(circuit, f, z, reports[-1][1] if reports else None, weight=args.weight)
        out = _report(res, args.weight)
        for key in ("sweep_index", "cycle_count", "test_time_second", "temperature_celsius"):
            if key in info and info[key] is not None:
                out[key] = info[key]
        if chosen_from is not None:
            out["chosen_from"] = chosen_from
        try:
            kk = lin_kk(f, z)
            out["kk"] = {"passed": kk.passed, "rms": _num(kk.rms), "m": kk.m}
        except KKError as exc:
            out["kk"] = {"passed": None, "error": str(exc)}
        reports.append((out, res))
    write_report("eis", args, spectra=frame, fits=[res for _, res in reports])
    many = is_run(Path(args.file)) or len(reports) > 1
    if args.json:
        payload = [r for r, _ in reports] if many else reports[0][0]
        json.dump(payload, sys.stdout, indent=None if many else 2)
        sys.stdout.write("\n")
        return 0
    for out, res in reports:
        _print_table(args.file, out, res)
    return 0


def _print_table(path: Path, out: dict[str, Any], res) -> None:
    from cellbench.analysis.circuits import parse_circuit

    units = parse_circuit(res.circuit).param_units
    title = f"{path}"
    if "sweep_index" in out:
        title += f"  sweep {out['sweep_index']}"
    print(title)
    line = f"circuit  {out['circuit']}"
    if "chosen_from" in out:
        n = len(out["chosen_from"]["candidates"])
        line += f"  (of {n} candidates: lowest BIC with determined resistances)"
    print(line)
    print(f"{'parameter':<12} {'value':>12} {'stderr':>12} {'rel.':>8}  unit")
    for name, pv in out["parameters"].items():
        v, s = pv["value"], pv["stderr"]
        rel = f"{100 * s / abs(v):7.2f}%" if v and s is not None else "      - "
        vs = f"{v:12.5g}" if v is not None else f"{'nan':>12}"
        ss = f"{s:12.3g}" if s is not None else f"{'inf':>12}"
        flag = "  poorly determined" if name in out["poorly_determined"] else ""
        print(f"{name:<12} {vs} {ss} {rel}  {units.get(name, '')}{flag}")
    print(
        f"chi2 {out['chi2']:.6g}  reduced chi2 {out['reduced_chi2']:.6g}  weight {out['weight']}"
        f"  points {out['n_points']}"
    )
    kk = out.get("kk", {})
    if kk.get("passed") is not None:
        verdict = "pass" if kk["passed"] else "FAIL"
        print(f"Lin-KK   {verdict}  (residual rms {100 * kk['rms']:.2f} % of |Z|, M = {kk['m']})")
    print()
