"""``cellbench analyze pulses|gitt|ici``: resistance from pulses and diffusion from titration.

``--json`` prints a list, one object per pulse (or titration step), with the keys of
:mod:`cellbench.analysis.pulses`, :mod:`~cellbench.analysis.gitt` and
:mod:`~cellbench.analysis.ici`; non-finite numbers print as ``null``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cellbench.cli.analyze_cycling import (
    _cell,
    _fraction,
    _pick_channel,
    _positive,
    _print_json,
    _print_table,
    load_samples,
)
from cellbench.cli.catalog_args import add_catalog_option, catalog_aware
from cellbench.cli.convert import add_column_map_option
from cellbench.core.errors import CellbenchError

if TYPE_CHECKING:
    import polars as pl


def _samples(args: argparse.Namespace) -> pl.DataFrame:
    path = Path(args.file)
    return _pick_channel(load_samples(path, args.column_map), args.channel, path)


def _capacity(args: argparse.Namespace) -> float | None:
    if args.capacity_ah is not None:
        return args.capacity_ah
    cell = _cell(Path(args.file))
    return cell.nominal_capacity_ah if cell else None


def _soc_value(text: str) -> float:
    """argparse type: an SOC from 0 to 1 (both included)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"an SOC lies from 0 to 1, got {text!r}")
    return value


def _delays(text: str) -> list[float]:
    """argparse type: comma-separated positive seconds, ``0.1,10,30``."""
    out = []
    for part in text.split(","):
        out.append(_positive(part.strip()))
    return out


def _warn(rows: list[dict]) -> None:
    """Each kind of warning once (the first occurrence), with how many rows share it."""
    kinds: dict[str, tuple[dict, str, int]] = {}
    for r in rows:
        for w in r.get("warnings", []):
            key = re.sub(r"[-+]?\d[\d.e+-]*", "#", w)
            first, text, count = kinds.get(key, (r, w, 0))
            kinds[key] = (first, text, count + 1)
    for first, text, count in kinds.values():
        more = f" (and {count - 1} more like it)" if count > 1 else ""
        print(f"cellbench: warning: step {first.get('step_index')}: {text}{more}", file=sys.stderr)


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
            ("pressure_megapascal", "p/MPa"),
            ("r_ohmic_ohm", "R_ohm/ohm"),
            ("r_2s_ohm", "R_2s/ohm"),
            ("r_end_ohm", "R_end/ohm"),
            ("duration_second", "pulse/s"),
            ("edge_interval_second", "interval/s"),
        ],
    )
    _warn(rows)
    return 0


# -------------------------------------------------------------------------------- gitt, ici


_GEOMETRY_KEYS = (
    "thickness_cm",
    "particle_radius_cm",
    "molar_volume_cm3_per_mol",
    "mass_g",
    "molar_mass_g_per_mol",
    "area_cm2",
)


def _geometry(args: argparse.Namespace, required: bool):
    from cellbench.analysis.gitt import DiffusionGeometry

    values = {k: getattr(args, k) for k in _GEOMETRY_KEYS}
    if not required and all(v is None for v in values.values()):
        return None
    if all(v is None for v in values.values()):
        raise CellbenchError(
            f"{args.file}: D needs the diffusion geometry: --thickness-cm (film), "
            "--particle-radius-cm (spheres), or --molar-volume-cm3-per-mol with --mass-g, "
            "--molar-mass-g-per-mol and --area-cm2"
        )
    return DiffusionGeometry(**values)


def cmd_gitt(args: argparse.Namespace) -> int:
    from cellbench.analysis.gitt import gitt

    geometry = _geometry(args, required=True)
    steps = gitt(
        _samples(args),
        geometry,
        capacity_ah=_capacity(args),
        initial_soc=args.initial_soc,
        min_r2=args.min_r2,
        relax_start_fraction=args.relax_start_fraction,
    )
    rows = [s.to_dict() for s in steps]
    if args.json:
        _print_json({"geometry": geometry.to_dict(), "steps": rows})
        return 0
    if not rows:
        print(f"{args.file}: no titration step (a pulse out of rest followed by a rest)")
        return 0
    _print_table(
        rows,
        [
            ("step_index", "step"),
            ("soc", "SOC"),
            ("current_ampere", "I/A"),
            ("pulse_second", "tau/s"),
            ("delta_es_volt", "dEs/V"),
            ("delta_et_volt", "dEt/V"),
            ("r2_sqrt_t", "R2(sqrt t)"),
            ("d_weppner_huggins_cm2_per_second", "D_WH/cm2 s-1"),
            ("d_sqrt_t_cm2_per_second", "D_sqrt/cm2 s-1"),
            ("d_relaxation_cm2_per_second", "D_relax/cm2 s-1"),
        ],
    )
    print(f"\ndiffusion length L = {geometry.length_cm:.4g} cm ({geometry.kind})")
    _warn(rows)
    return 0


def cmd_ici(args: argparse.Namespace) -> int:
    from cellbench.analysis.ici import ici

    geometry = _geometry(args, required=False)
    found = ici(
        _samples(args),
        geometry,
        capacity_ah=_capacity(args),
        initial_soc=args.initial_soc,
        max_interruption_second=args.max_interruption_second,
        fit_end_second=args.fit_end_second,
        drift_correction=not args.no_drift_correction,
    )
    rows = [s.to_dict() for s in found]
    if args.json:
        _print_json(
            {"geometry": None if geometry is None else geometry.to_dict(), "interruptions": rows}
        )
        return 0
    if not rows:
        print(f"{args.file}: no current interruption (<= {args.max_interruption_second:g} s)")
        return 0
    _print_table(
        rows,
        [
            ("step_index", "step"),
            ("test_time_second", "t/s"),
            ("soc", "SOC"),
            ("current_ampere", "I/A"),
            ("interruption_second", "off/s"),
            ("r_ohm", "R/ohm"),
            ("k_ohm_per_sqrt_second", "k/ohm s-1/2"),
            ("r2", "R2"),
            ("d_cm2_per_second", "D/cm2 s-1"),
        ],
    )
    _warn(rows)
    return 0


# ----------------------------------------------------------------------------------- register


def _geometry_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("diffusion geometry (give one)")
    g.add_argument("--thickness-cm", type=_positive, help="film thickness, cm")
    g.add_argument("--particle-radius-cm", type=_positive, help="particle radius, cm (L = r/3)")
    g.add_argument("--molar-volume-cm3-per-mol", type=_positive, help="molar volume, cm3/mol")
    g.add_argument("--mass-g", type=_positive, help="active mass, g (with the molar volume)")
    g.add_argument("--molar-mass-g-per-mol", type=_positive, help="molar mass, g/mol")
    g.add_argument("--area-cm2", type=_positive, help="electrode area, cm2")


def _soc_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--capacity-ah",
        type=_positive,
        help="capacity for the SOC, Ah (default: the run's nominal capacity)",
    )
    p.add_argument(
        "--initial-soc",
        type=_soc_value,
        help="SOC of the first sample (default: the most charged point of the file is SOC 1)",
    )


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
        type=_soc_value,
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

    p = sub.add_parser(
        "gitt",
        help="GITT: Weppner-Huggins D per pulse, sqrt(t) check, relaxation D, pseudo-OCV",
        description="Per titration step (a current pulse out of rest, then a rest): dEs (relaxed "
        "voltage step), dEt (voltage change during the pulse without the IR step), the "
        "linearity of E against sqrt(t) during the pulse (R^2), D = 4/(pi tau) L^2 (dEs/dEt)^2 "
        "(Weppner-Huggins), the same with dEt from the sqrt(t) slope, and D from the time "
        "constant of the relaxation; L from the geometry. With --json prints "
        '{"geometry": ..., "steps": [...]}.',
    )
    _inputs(p)
    _soc_options(p)
    _geometry_options(p)
    p.add_argument(
        "--min-r2",
        type=_fraction,
        default=0.98,
        help="R^2 of E against sqrt(t) below which a step is flagged (0.98)",
    )
    p.add_argument(
        "--relax-start-fraction",
        type=float,
        default=0.2,
        help="fit the relaxation from this fraction of the rest on (0.2)",
    )
    p.set_defaults(func=catalog_aware(cmd_gitt, "file"))

    p = sub.add_parser(
        "ici",
        help="ICI: R and diffusion resistance coefficient k per current interruption",
        description="Per short current interruption: (V(t) - V_I) / (I_0 - I_I) = R + k sqrt(t) "
        "fitted over the interruption (the voltage's drift on current extrapolated and "
        "removed), and with a geometry D = (4/pi) (L dE/dQ / k)^2, dE/dQ from neighbouring "
        'interruptions. With --json prints {"geometry": ..., "interruptions": [...]}.',
    )
    _inputs(p)
    _soc_options(p)
    _geometry_options(p)
    p.add_argument(
        "--max-interruption-second",
        type=_positive,
        default=30.0,
        help="longer rests are not interruptions (30)",
    )
    p.add_argument(
        "--fit-end-second", type=_positive, help="fit only t <= this after the interruption"
    )
    p.add_argument(
        "--no-drift-correction",
        action="store_true",
        help="do not remove the voltage's drift on current from the interruption",
    )
    p.set_defaults(func=catalog_aware(cmd_ici, "file"))


if __name__ == "__main__":  # pragma: no cover
    from cellbench.cli.main import main

    sys.exit(main(["analyze", *sys.argv[1:]]))
