"""``cellbench analyze pulses|gitt|ici``: resistance from pulses and diffusion from titration.

``--json`` prints a list, one object per pulse (or titration step), with the keys of
:mod:`cellbench.analysis.pulses`, :mod:`~cellbench.analysis.gitt` and
:mod:`~cellbench.analysis.ici`; non-finite numbers print as ``null``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from cellbench.cli.analyze_cycling import (
    _cell,
    _count,
    _fraction,
    _pick_channel,
    _positive,
    _print_json,
    _print_table,
    load_samples,
)
from cellbench.cli.catalog_args import add_catalog_option, catalog_aware
from cellbench.cli.convert import add_column_map_option


def _samples(args: argparse.Namespace) -> pl.DataFrame:
    path = Path(args.file)
    return _pick_channel(load_samples(path, args.column_map), args.channel, path)


def _capacity(args: argparse.Namespace) -> float | None:
    if args.capacity_ah is not None:
        return args.capacity_ah
    cell = _cell(Path(args.file))
    return cell.nominal_capacity_ah if cell else None


def _delays(text: str) -> list[float]:
    """argparse type: comma-separated positive seconds, ``0.1,10,30``."""
    out = []
    for part in text.split(","):
        out.append(_positive(part.strip()))
    return out


def _warn(rows: list[dict]) -> None:
    seen: set[str] = set()
    for r in rows:
        for w in r.get("warnings", []):
            key = w.split(":")[0]
            if key not in seen:
                seen.add(key)
                print(f"cellbench: warning: step {r.get('step_index')}: {w}", file=sys.stderr)


# ------------------------------------------------------------------------------------- pulses


def cmd_pulses(args: argparse.Namespace) -> int:
    from cellbench.analysis.pulses import find_pulses

    df = _samples(args)
    pulses = find_pulses(
        df,
        capacity_ah=_capacity(args),
        initial_soc=args.initial_soc,
        delays_second=args.delays or (),
        max_duration_second=args.max_pulse_second,
        ohmic_resolution_second=args.ohmic_resolution_second,
        ocv_correction=args.ocv_correction,
    )
    rows = [p.to_dict() for p in pulses]
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print(f"{args.file}: no pulse out of rest (shorter than {args.max_pulse_second:g} s)")
        return 0
    _print_table(
        rows,
        [
            ("step_index", "step"),
            ("cycle_count", "cycle"),
            ("test_time_second", "t/s"),
            ("current_ampere", "I/A"),
            ("soc", "SOC"),
            ("temperature_kelvin", "T/K"),
            ("r_ohmic_ohm", "R_ohm/ohm"),
            ("r_2s_ohm", "R_2s/ohm"),
            ("r_end_ohm", "R_end/ohm"),
            ("duration_second", "pulse/s"),
            ("edge_interval_second", "interval/s"),
        ],
    )
    _warn(rows)
    return 0


# ----------------------------------------------------------------------------------- register


def _inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="run folder or cycler file (any supported format)")
    add_catalog_option(p)
    add_column_map_option(p)
    p.add_argument("--channel", help="channel to analyse (needed when the file has several)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``pulses`` (and the titration analyses) to ``cellbench analyze``."""
    p = sub.add_parser(
        "pulses",
        help="HPPC / DCIR: resistance per pulse at the first sample, 2 s and the pulse end",
        description="Finds every current pulse out of rest and reports R(t) = (V(t) - V_rest) / "
        "(I - I_rest), with V_rest, I_rest the last sample before the current edge and V(t) the "
        "first sample at or after t: at the first sample (r_ohmic_ohm), 2 s (r_2s_ohm) and the "
        "pulse end (r_end_ohm), with SOC (where the capacity is known), temperature_kelvin "
        "(where logged) and the log's interval at the edge. A log coarser than "
        "--ohmic-resolution-second gets a warning: its first sample holds polarisation. With "
        "--json prints a list, one object per pulse.",
    )
    _inputs(p)
    p.add_argument(
        "--capacity-ah",
        type=_positive,
        help="capacity for the SOC, Ah (default: the run's nominal capacity)",
    )
    p.add_argument(
        "--initial-soc",
        type=_fraction,
        help="SOC of the first sample (default: the most charged point of the file is SOC 1)",
    )
    p.add_argument("--delays", type=_delays, help="more delays, s, comma-separated (adds r_at_ohm)")
    p.add_argument(
        "--max-pulse-second",
        type=_positive,
        default=120.0,
        help="longer constant-current periods are not pulses (120)",
    )
    p.add_argument(
        "--ohmic-resolution-second",
        type=_positive,
        default=0.01,
        help="edge interval above which the ohmic value is flagged (0.01)",
    )
    p.add_argument(
        "--ocv-correction",
        action="store_true",
        help="also report r_end_ocv_corrected_ohm (OCV drift from the following rest removed)",
    )
    p.set_defaults(func=catalog_aware(cmd_pulses, "file"))
    _ = _count  # used by the titration commands


if __name__ == "__main__":  # pragma: no cover
    from cellbench.cli.main import main

    sys.exit(main(["analyze", *sys.argv[1:]]))
