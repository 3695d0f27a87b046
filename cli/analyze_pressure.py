"""``cellbench analyze pressure``: interface ASR against stack pressure, a power-law fit.

``--json`` prints one object with the keys of :class:`cellbench.analysis.pressure.PowerLawFit`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from cellbench.cli.analyze_cycling import _fraction, _positive, _print_json
from cellbench.core.errors import CellbenchError


def _points(path: Path, area_cm2: float | None) -> tuple[list[float], list[float], list | None]:
    """(pressure MPa, ASR ohm cm2, ASR standard errors or None) from a CSV file."""
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


def cmd_pressure(args: argparse.Namespace) -> int:
    from cellbench.analysis.pressure import fit_asr_pressure

    path = Path(args.file)
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
        "confidence interval, and the ASR at a reference pressure.",
    )
    p.add_argument("file", metavar="FILE", help="CSV file of ASR (or R) against pressure")
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
