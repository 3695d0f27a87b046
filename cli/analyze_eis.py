"""``cellbench analyze eis FILE``: fit an equivalent circuit to each sweep of a run or EIS file.

With ``--json`` one JSON object per sweep (a list for a run folder or a file with several sweeps)::

    {"circuit": "R0-p(R1,CPE1)", "parameters": {"R0": {"value": 12.1, "stderr": 0.05}, ...},
     "chi2": ..., "reduced_chi2": ..., "weight": "modulus", "aic": ..., "bic": ...,
     "n_points": ..., "poorly_determined": [...], "undetermined": [...], "sweep_index": 0,
     "chosen_from": {"criterion": "bic", "rule": ..., "candidates": [{"circuit": ...,
                     "bic": ..., "resistances_determined": true, "undetermined": []}, ...]},
     "kk": {"passed": true, "rms": ..., "m": ...}}

``chosen_from`` is present only when no ``--circuit`` was given: each sweep's own candidates and
BICs; with ``--one-circuit`` the batch's (``scope`` says so, each candidate's ``bic`` summed over
the sweeps). ``poorly_determined``: relative standard error above 10 %; ``undetermined``: standard
error above the value itself. Non-finite numbers are null.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cellbench.cli.help_text import describe_when_shown
from cellbench.cli.report import add_report_option, write_report

if TYPE_CHECKING:  # numpy and the fits (scipy) load when the command runs, not to register it
    import numpy as np


def _description() -> str:
    from cellbench.analysis.eis_batch import CANDIDATES

    return (
        "Fit an equivalent circuit to each impedance sweep of FILE (a cellbench run folder or "
        "an EIS file: three-column csv of frequency / Hz, Z' / ohm, Z'' / ohm, or a vendor "
        "export). No initial guess is needed. Without --circuit each sweep's circuit is "
        f"chosen from {len(CANDIDATES)} candidates (each also with an inductance L0 when "
        "Z'' > 0 at high frequency): the lowest BIC among those whose resistances are "
        "determined and none of whose values is undetermined; each sweep reports its own "
        "choice. A value whose standard error exceeds it is printed as undetermined. "
        "Diffusion elements: W semi-infinite Warburg (sigma), Ws finite-length transmissive "
        "and Wo finite-length reflective Warburg (R, tau). A Lin-KK test is run on each sweep."
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eis",
        help="fit an equivalent circuit to impedance spectra",
        epilog="example: cellbench analyze eis cell.csv --circuit 'R0-p(R1,CPE1)-Ws1' --json",
    )
    describe_when_shown(p, _description)
    p.add_argument("file", type=Path, metavar="FILE", help="run folder or EIS file")
    from cellbench.cli import catalog_args  # --catalog URL RUN_ID (the lab catalog)

    catalog_args.add_catalog_option(p)
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
    p.add_argument(
        "--one-circuit",
        action="store_true",
        help=(
            "without --circuit: one circuit for every sweep, chosen on all sweeps together "
            "(BIC summed), so parameters can be followed from sweep to sweep; implied by "
            "--report on several sweeps"
        ),
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    add_report_option(p)
    p.set_defaults(func=catalog_args.catalog_aware(run, "file"))


def _num(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _report(res, weight: str) -> dict[str, Any]:
    from cellbench.analysis.eis_batch import undetermined

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
        "undetermined": undetermined(res),
    }


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from cellbench.analysis.eis_batch import (
        choose_circuit,
        choose_circuit_for_sweeps,
        iter_sweeps,
        warm_fit,
    )
    from cellbench.daq.loaders import is_run, load_spectra

    frame = load_spectra(args.file)
    if frame.height == 0:
        raise ValueError(f"{args.file}: no impedance points found")
    sweeps = []
    for info, f, z in iter_sweeps(frame):
        if args.drop_inductive:
            keep = z.imag <= 0
            f, z = f[keep], z[keep]
        sweeps.append((info, f, z))
    # a report draws parameters against cycle: one circuit for every sweep
    one_circuit = args.one_circuit or (args.report is not None and len(sweeps) > 1)
    fits: list[Any] = []
    choices: list[dict[str, Any] | None] = []
    with np.errstate(all="ignore"):  # trial starts of the optimiser may overflow
        if args.circuit is not None:
            for _, f, z in sweeps:
                previous = fits[-1] if fits else None
                fits.append(warm_fit(args.circuit, f, z, previous, weight=args.weight))
                choices.append(None)
        elif one_circuit:
            chosen, chosen_from = choose_circuit_for_sweeps(
                [(f, z) for _, f, z in sweeps], weight=args.weight
            )
            if chosen is None:
                raise ValueError(f"{args.file}: too few points to fit any candidate circuit")
            fits = chosen
            choices = [chosen_from] * len(sweeps)
        else:
            warm: dict[str, Any] = {}  # each candidate starts from its fit of the sweep before
            for info, f, z in sweeps:
                res, chosen_from = choose_circuit(f, z, weight=args.weight, previous=warm)
                if res is None:
                    where = f" sweep {info['sweep_index']}" if "sweep_index" in info else ""
                    raise ValueError(
                        f"{args.file}{where}: too few points to fit any candidate circuit"
                    )
                fits.append(res)
                choices.append(chosen_from)
    reports = []
    for (info, f, z), res, chosen_from in zip(sweeps, fits, choices, strict=True):
        out = _report(res, args.weight)
        for key in ("sweep_index", "cycle_count", "test_time_second", "temperature_celsius"):
            if key in info and info[key] is not None:
                out[key] = info[key]
        if chosen_from is not None:
            out["chosen_from"] = chosen_from
        out["kk"] = _kk(f, z)
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


def _kk(f: np.ndarray, z: np.ndarray) -> dict[str, Any]:
    from cellbench.analysis.kk import KKError, lin_kk

    try:
        kk = lin_kk(f, z)
    except KKError as exc:
        return {"passed": None, "error": str(exc)}
    return {"passed": kk.passed, "rms": _num(kk.rms), "m": kk.m}


def _choice_line(chosen_from: dict[str, Any], circuit: str) -> str:
    """Why this circuit: its BIC, and the best other candidate's (and why that one lost)."""
    rows = [r for r in chosen_from["candidates"] if r["bic"] is not None]
    scope = chosen_from.get("scope")
    where = f"on {scope}" if scope else "for this sweep"
    mine = next((r for r in rows if r["circuit"] == circuit), None)
    others = sorted((r for r in rows if r["circuit"] != circuit), key=lambda r: r["bic"])
    text = f"  (chosen {where} from {len(chosen_from['candidates'])} candidates"
    if mine is None:
        return text + ")"
    text += f", BIC {mine['bic']:.1f}"
    if others:
        other = others[0]
        text += f"; {other['circuit']} {other['bic']:.1f}"
        if other["bic"] < mine["bic"]:
            if not other["resistances_determined"]:
                text += " but its resistances are not determined"
            elif other["undetermined"]:
                names = other["undetermined"]
                verb = "is" if len(names) == 1 else "are"
                text += f" but its {', '.join(names)} {verb} undetermined"
                if scope:
                    text += " on some sweep"
    return text + ")"


def _print_table(path: Path, out: dict[str, Any], res) -> None:
    from cellbench.analysis.circuits import parse_circuit

    units = parse_circuit(res.circuit).param_units
    title = f"{path}"
    if "sweep_index" in out:
        title += f"  sweep {out['sweep_index']}"
    print(title)
    line = f"circuit  {out['circuit']}"
    if "chosen_from" in out:
        line += _choice_line(out["chosen_from"], out["circuit"])
    print(line)
    print(f"{'parameter':<12} {'value':>12} {'stderr':>12} {'rel.':>8}  unit")
    flagged = False
    for name, pv in out["parameters"].items():
        v, s = pv["value"], pv["stderr"]
        if name in out["undetermined"]:
            # the standard error exceeds the value: no digit of it is known
            print(
                f"{name:<12} {'undetermined':>12} {_fmt_err(s)} {'>100%':>8}  "
                f"{units.get(name, '')}  (the data do not fix it; fit value {_fmt_val(v)})"
            )
            flagged = True
            continue
        rel = f"{100 * s / abs(v):7.2f}%" if v and s is not None else "      - "
        flag = "  poorly determined (> 10 %)" if name in out["poorly_determined"] else ""
        print(f"{name:<12} {_fmt_val(v):>12} {_fmt_err(s)} {rel}  {units.get(name, '')}{flag}")
    print(
        f"chi2 {out['chi2']:.6g}  reduced chi2 {out['reduced_chi2']:.6g}  weight {out['weight']}"
        f"  points {out['n_points']}"
    )
    if flagged:
        print("undetermined: standard error above the value; fix it or choose a simpler circuit")
    kk = out.get("kk", {})
    if kk.get("passed") is not None:
        verdict = "pass" if kk["passed"] else "FAIL"
        print(f"Lin-KK   {verdict}  (residual rms {100 * kk['rms']:.2f} % of |Z|, M = {kk['m']})")
    print()


def _fmt_val(v: float | None) -> str:
    return "nan" if v is None else f"{v:.5g}"


def _fmt_err(s: float | None) -> str:
    return f"{'inf':>12}" if s is None else f"{s:12.3g}"
