"""``cellbench analyze pressure``: interface ASR against stack pressure, a power-law fit.

``--json`` prints one object with the keys of :class:`cellbench.analysis.pressure.PowerLawFit`.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from cellbench.cli.analyze_cycling import _fraction, _positive, _print_json
from cellbench.core.errors import CellbenchError


def _points(path: Path, area_cm2: float | None) -> tuple[list[float], list[float], list | None]:
    """(pressure MPa, ASR ohm cm2, ASR standard errors or None) from a CSV file."""
    import polars as pl

    try:
        df = pl.read_csv(path)
    except FileNotFoundError:
        raise CellbenchError(f"{path}: no such file") from None
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as exc:
        raise CellbenchError(f"{path}: not a readable CSV file ({exc})") from None
    if "pressure_megapascal" not in df.columns:
        raise CellbenchError(f"{path}: needs a pressure_megapascal column; has {df.columns}")
    if "asr_ohm_cm2" in df.columns:
        asr = df["asr_ohm_cm2"].cast(pl.Float64)
        se = (
            df["asr_stderr_ohm_cm2"].cast(pl.Float64)
            if "asr_stderr_ohm_cm2" in df.columns
            else None
        )
    elif "resistance_ohm" in df.columns:
        if area_cm2 is None:
            raise CellbenchError(
                f"{path}: resistance_ohm needs the electrode area: give --area-cm2 (ASR = R A)"
            )
        asr = df["resistance_ohm"].cast(pl.Float64) * area_cm2
        se = (
            df["resistance_stderr_ohm"].cast(pl.Float64) * area_cm2
            if "resistance_stderr_ohm" in df.columns
            else None
        )
    else:
        raise CellbenchError(
            f"{path}: needs an asr_ohm_cm2 or a resistance_ohm column; has {df.columns}"
        )
    p = df["pressure_megapascal"].cast(pl.Float64).to_list()
    return p, asr.to_list(), None if se is None else se.to_list()


def _is_table(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".csv" and _has_pressure_column(path)


def _has_pressure_column(path: Path) -> bool:
    import polars as pl

    try:
        return "pressure_megapascal" in pl.read_csv(path, n_rows=1).columns
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError):
        return False


def _from_pulses(args: argparse.Namespace, path: Path) -> int:
    """Pulses of a run or cycler file: their resistance at each logged stack pressure, and
    R = R_0 + R_1 p^-m fitted to them."""
    from cellbench.analysis.pressure import fit_resistance_pressure
    from cellbench.analysis.pulses import find_pulses
    from cellbench.cli.analyze_cycling import _cell, _pick_channel, load_samples

    df = _pick_channel(load_samples(path, None), args.channel, path)
    key = {"ohmic": "r_ohmic_ohm", "2s": "r_2s_ohm", "end": "r_end_ohm"}[args.resistance]
    rows = [
        (p.pressure_megapascal, abs(getattr(p, key)))
        for p in find_pulses(df)
        if p.pressure_megapascal is not None and math.isfinite(getattr(p, key))
    ]
    if not rows:
        raise CellbenchError(
            f"{path}: no current pulse with a logged stack pressure (pressure_megapascal)"
        )
    cell = _cell(path)
    area = args.area_cm2 or (cell.area_cm2 if cell else None)
    p_arr = [r[0] for r in rows]
    r_arr = [r[1] for r in rows]
    try:
        fit = fit_resistance_pressure(p_arr, r_arr, area_cm2=area, interfaces=args.interfaces)
    except CellbenchError as exc:
        raise CellbenchError(f"{path}: {exc}") from None
    points = [{"pressure_megapascal": p, "resistance_ohm": r} for p, r in rows]
    if args.json:
        _print_json({"resistance": key, "points": points, "fit": fit.to_dict()})
        return 0
    for pt in points:
        print(f"  p = {pt['pressure_megapascal']:8.4g} MPa   R = {pt['resistance_ohm']:.5g} ohm")
    print(f"R = R_0 + R_1 p^-m fitted to {fit.n} pulses ({key}):")
    r0, r0_se = fit.r_offset_ohm, fit.r_offset_stderr_ohm
    print(f"  R_0 = {r0:.4g} ± {r0_se:.2g} ohm (pressure-independent)")
    print(f"  m   = {fit.exponent:.4g} ± {fit.exponent_stderr:.2g}")
    print(f"  R_1 = {fit.r_1mpa_ohm:.4g} ± {fit.r_1mpa_stderr_ohm:.2g} ohm at 1 MPa", end="")
    asr = fit.asr_1mpa_ohm_cm2
    print("" if asr is None else f" (ASR {asr:.4g} ohm cm2)")
    return 0


def cmd_pressure(args: argparse.Namespace) -> int:
    from cellbench.analysis.pressure import fit_asr_pressure

    path = Path(args.file)
    if not _is_table(path):
        return _from_pulses(args, path)
    p, asr, se = _points(path, args.area_cm2)
    try:
        fit = fit_asr_pressure(
            p,
            asr,
            asr_stderr_ohm_cm2=se,
            reference_pressure_megapascal=args.reference_mpa,
            confidence=args.confidence,
        )
    except CellbenchError as exc:
        raise CellbenchError(f"{path}: {exc}") from None
    if args.json:
        _print_json(fit.to_dict())
        return 0
    lo, hi = fit.exponent_interval
    weights = "weighted" if fit.weighted else "equal weights"
    ref = fit.reference_pressure_megapascal
    print(f"ASR = ASR_1 p^-m fitted to {fit.n} points ({weights})")
    print(f"  m     = {fit.exponent:.4g} ± {fit.exponent_stderr:.2g}", end="")
    print(f" ({fit.confidence:.0%} interval {lo:.4g} .. {hi:.4g})")
    print(f"  ASR_1 = {fit.asr_1mpa_ohm_cm2:.4g} ± {fit.asr_1mpa_stderr_ohm_cm2:.2g} ohm cm2")
    print(f"  ASR({ref:g} MPa) = {fit.asr_at_reference_ohm_cm2:.4g} ohm cm2")
    print(f"  R^2   = {fit.r2:.4f}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``pressure`` to ``cellbench analyze``."""
    p = sub.add_parser(
        "pressure",
        help="interface ASR against stack pressure: power-law fit ASR = ASR_1 p^-m",
        description="Fits ASR = ASR_1 p^-m (least squares in log-log; weighted where standard "
        "errors are given) to a CSV with a pressure_megapascal column and either asr_ohm_cm2 "
        "(optionally asr_stderr_ohm_cm2) or resistance_ohm (optionally resistance_stderr_ohm; "
        "with --area-cm2, ASR = R A). Reports m and ASR at 1 MPa with standard errors and a "
        "confidence interval, and the ASR at a reference pressure. FILE may instead be a run "
        "or cycler file with current pulses and a logged stack pressure: then each pulse's "
        "resistance (--resistance) is fitted with R = R_0 + R_1 p^-m (R_0: the "
        "pressure-independent series and bulk part).",
    )
    p.add_argument(
        "file", metavar="FILE", help="CSV of ASR (or R) against pressure, or a run with pulses"
    )
    p.add_argument("--channel", help="channel of a run (needed when it has several)")
    p.add_argument(
        "--resistance",
        choices=("ohmic", "2s", "end"),
        default="ohmic",
        help="which pulse resistance to fit, for a run (ohmic)",
    )
    p.add_argument(
        "--interfaces", type=int, default=1, help="interfaces in series, for the ASR (1)"
    )
    p.add_argument("--area-cm2", type=_positive, help="electrode area, cm2 (for resistance_ohm)")
    p.add_argument(
        "--reference-mpa", type=_positive, default=10.0, help="report the ASR here (10 MPa)"
    )
    p.add_argument("--confidence", type=_fraction, default=0.95, help="interval level (0.95)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_pressure)


if __name__ == "__main__":  # pragma: no cover
    from cellbench.cli.main import main

    sys.exit(main(["analyze", *sys.argv[1:]]))
