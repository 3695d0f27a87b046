"""``cellbench analyze cycling|fade|conductivity|ccd``: cycling-side analyses on the command line.

Machine-readable output (``--json``) is stable: keys are the BDF-style names of
:mod:`cellbench.analysis.cycling`, :mod:`~cellbench.analysis.fade`,
:mod:`~cellbench.analysis.conductivity` and :mod:`~cellbench.analysis.ccd`; non-finite numbers
print as ``null``. Without ``--json`` the same figures print as a readable table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cellbench.cli.catalog_args import add_catalog_option, catalog_aware
from cellbench.cli.conductivity_card import (
    add_card_options,
    conductivity_points_for,
    geometry_from_run,
)
from cellbench.cli.convert import add_column_map_option
from cellbench.cli.report import add_report_option, write_report
from cellbench.cli.table_units import readable
from cellbench.core.errors import CellbenchError

if TYPE_CHECKING:  # polars (core.schema too) and the loaders load when a command runs
    import polars as pl

    from cellbench.analysis.conductivity_table import ConductivityPoints
    from cellbench.core.schema import Cell

SUMMARY_CSV_KEYS = ("capacity_retention", "discharge_capacity_ampere_hour")


# ------------------------------------------------------------------------------------- helpers


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN and inf become None, tuples become lists, numpy scalars become floats."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item") and not isinstance(obj, str):  # numpy scalar
        return _clean(obj.item())
    return obj


def _print_json(obj: Any) -> None:
    print(json.dumps(_clean(obj), indent=2, allow_nan=False))


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:.6g}"
    return str(v)


def _print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    """Aligned plain-text table; ``columns`` is (key, header)."""
    cells = [[header for _, header in columns]]
    cells += [[_fmt(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(row[c]) for row in cells) for c in range(len(columns))]
    for n, row in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _cell(path: Path) -> Cell | None:
    """The cell of a cellbench run (area, mass...), or None for vendor files."""
    from cellbench.daq import loaders

    if not loaders.is_run(path):
        return None
    from cellbench.daq.store import open_run

    return open_run(path).meta.cell


def _pick_channel(df: pl.DataFrame, channel: str | None, path: Path) -> pl.DataFrame:
    if "channel" not in df.columns:
        return df
    names = df["channel"].unique(maintain_order=True).to_list()
    if channel is not None:
        if channel not in names:
            raise CellbenchError(f"{path}: no channel {channel!r}; channels are {names}")
        import polars as pl

        return df.filter(pl.col("channel") == channel)
    if len(names) > 1:
        raise CellbenchError(f"{path}: several channels {names}; choose one with --channel")
    return df


@contextlib.contextmanager
def _reader_warnings() -> Iterator[None]:
    """Print each reader warning as one ``cellbench: warning:`` line, not Python's source dump."""
    from cellbench.analysis.readers import ReaderWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReaderWarning)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, ReaderWarning):
                    print(f"cellbench: warning: {w.message}", file=sys.stderr)
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def load_samples(path: Path, column_map: Path | None = None) -> pl.DataFrame:
    """Samples of a run folder or a cycler file; ``column_map`` (a JSON file, see
    docs/readers.md) reads a csv/text export that no built-in reader knows."""
    from cellbench.daq import loaders

    with _reader_warnings():
        if column_map is None:
            return loaders.load_samples(path)
        if not path.is_file():
            what = "not a file" if path.exists() else "no such file"
            raise CellbenchError(f"{path}: {what} (--column-map reads a csv or text export)")
        from cellbench.analysis.readers import read_csv

        return read_csv(path, column_map).frame


def _load_cycling(
    path: Path,
    channel: str | None,
    segment: bool,
    efficiency: str,
    column_map: Path | None = None,
) -> pl.DataFrame:
    df = load_samples(path, column_map)
    if channel is not None:
        df = _pick_channel(df, channel, path)
    if segment:
        from cellbench.analysis.segment import segment as segment_samples

        # The efficiency convention says which half-cycle comes first.
        first = "discharge" if efficiency == "charge/discharge" else "charge"
        df = segment_samples(df, first=first)
    return df


# ------------------------------------------------------------------------------------- cycling

_CYCLING_TABLE = [
    ("cycle_count", "cycle"),
    ("charge_capacity_ampere_hour", "Q_ch/Ah"),
    ("discharge_capacity_ampere_hour", "Q_dis/Ah"),
    ("charge_energy_watt_hour", "E_ch/Wh"),
    ("discharge_energy_watt_hour", "E_dis/Wh"),
    ("coulombic_efficiency", "CE"),
    ("energy_efficiency", "EE"),
    ("mean_charge_voltage_volt", "V_ch/V"),
    ("mean_discharge_voltage_volt", "V_dis/V"),
    ("dc_resistance_ohm", "R_dc/ohm"),
    ("duration_second", "t/s"),
]
# how the table shows them (cellbench.cli.table_units.readable): unit kind, header stem
_CYCLING_UNITS = {
    "charge_capacity_ampere_hour": ("Ah", "Q_ch"),
    "discharge_capacity_ampere_hour": ("Ah", "Q_dis"),
    "charge_energy_watt_hour": ("Wh", "E_ch"),
    "discharge_energy_watt_hour": ("Wh", "E_dis"),
    "coulombic_efficiency": ("%", "CE"),
    "energy_efficiency": ("%", "EE"),
    "duration_second": ("time", "t"),
}


def _summary(args: argparse.Namespace) -> pl.DataFrame:
    from cellbench.analysis.cycling import cycle_summary
    from cellbench.daq import loaders

    path = Path(args.file)
    df = _load_cycling(path, args.channel, args.segment, args.efficiency, args.column_map)
    mass = getattr(args, "active_mass_g", None)
    if mass is None:
        cell = _cell(path)
        mass = cell.active_mass_g if cell else None
    source = args.capacity_from
    if source == "auto":
        # A vendor file's running totals are the cycler's own counters (integrated at its
        # internal rate: what its software reports). A run folder's are recomputed after a
        # resume, and --segment makes new cycles the counters do not follow.
        source = "integration" if loaders.is_run(path) or args.segment else "counters"
    return cycle_summary(
        df,
        efficiency=args.efficiency,
        active_mass_g=mass,
        capacity_source=source,
        step_resistance_delays_second=getattr(args, "step_resistance", None),
    )


def cmd_cycling(args: argparse.Namespace) -> int:
    summary = _summary(args)
    if args.report is not None:
        path = Path(args.file)
        df = _load_cycling(path, args.channel, args.segment, args.efficiency, args.column_map)
        write_report("cycling", args, samples=df, summary=summary, efficiency=args.efficiency)
    rows = summary.to_dicts()
    if args.json:
        _print_json(rows)
        return 0
    columns = list(_CYCLING_TABLE)
    if "channel" in summary.columns and summary["channel"].n_unique() > 1:
        columns.insert(0, ("channel", "channel"))
    if "discharge_specific_capacity_milliampere_hour_per_gram" in summary.columns:
        columns.insert(3, ("discharge_specific_capacity_milliampere_hour_per_gram", "q_dis/mAh/g"))
    columns += [
        (c, "R_" + c.removeprefix("step_resistance_").removesuffix("_ohm") + "/ohm")
        for c in summary.columns
        if c.startswith("step_resistance_")
    ]
    rows, columns = readable(rows, columns, _CYCLING_UNITS)  # mAh for a 2 mAh cell; JSON: SI
    _print_table(rows, columns)
    print(f"\n{summary.height} cycle(s); CE and EE are {args.efficiency}")
    return 0


# ---------------------------------------------------------------------------------------- fade


def _retention(args: argparse.Namespace) -> tuple[list[float], list[float]]:
    import polars as pl
    from polars.exceptions import PanicException

    from cellbench.analysis.fade import retention_from_summary

    path = Path(args.file)
    summary: pl.DataFrame | None = None
    if path.is_file() and path.suffix.lower() == ".csv":
        try:
            head = pl.read_csv(path, n_rows=0, comment_prefix="#").columns
        except (pl.exceptions.PolarsError, PanicException, UnicodeDecodeError):
            head = []  # not a plain table: a vendor export, read below through the readers
        if "cycle_count" in head and any(k in head for k in SUMMARY_CSV_KEYS):
            try:
                summary = pl.read_csv(path, comment_prefix="#", infer_schema_length=None)
                if "capacity_retention" in summary.columns:
                    return (
                        summary["cycle_count"].cast(pl.Float64).to_list(),
                        summary["capacity_retention"].cast(pl.Float64).to_list(),
                    )
            except (pl.exceptions.PolarsError, PanicException) as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise CellbenchError(f"{path}: not a readable summary table: {first}") from None
    if summary is None:
        summary = _summary(args)
        if "channel" in summary.columns and summary["channel"].n_unique() > 1:
            names = summary["channel"].unique(maintain_order=True).to_list()
            raise CellbenchError(f"{path}: several channels {names}; choose one with --channel")
    ref: Any = args.reference
    if ref not in ("first", "max"):
        try:
            ref = int(ref)
        except ValueError:
            try:
                ref = float(ref)
            except ValueError:
                raise CellbenchError(
                    f"--reference must be first, max, a cycle number or a capacity in Ah, "
                    f"got {args.reference!r}"
                ) from None
    summary = retention_from_summary(summary, reference=ref)
    summary = summary.filter(pl.col("capacity_retention") > 0)
    return (
        summary["cycle_count"].cast(pl.Float64).to_list(),
        summary["capacity_retention"].to_list(),
    )


def cmd_fade(args: argparse.Namespace) -> int:
    from cellbench.analysis.fade import FadeError, analyze_fade

    try:
        cycles, retention = _retention(args)
        report = analyze_fade(
            cycles,
            retention,
            threshold=args.threshold,
            first_n=args.first_n,
            criterion=args.criterion,
            confidence=args.confidence,
        )
    except FadeError as exc:  # the data do not allow a fit: say which file
        raise CellbenchError(f"{args.file}: {exc}") from None
    write_report("fade", args, cycles=cycles, retention=retention, fade=report)
    if args.json:
        _print_json(report.to_dict())
        return 0
    rows = [
        {
            "model": f.model,
            "aic": f.aic,
            "bic": f.bic,
            "residual_std": f.residual_std,
            "parameters": ", ".join(
                f"{k}={v:.4g}±{f.stderr[k]:.2g}" for k, v in f.parameters.items()
            ),
        }
        for f in report.fits
    ]
    _print_table(
        rows,
        [
            ("model", "model"),
            ("aic", "AIC"),
            ("bic", "BIC"),
            ("residual_std", "s"),
            ("parameters", "parameters"),
        ],
    )
    n_used = report.best.n_points
    print(f"\nbest by {report.criterion.upper()}: {report.best.model} ({n_used} cycles fitted)")
    knee = report.knee
    if knee is not None:
        verdict = "significant" if knee.significant else "not significant"
        print(f"knee: cycle {knee.cycle:.1f} ± {knee.stderr:.2g} ({verdict})")
    eol = report.end_of_life
    pct = f"{100 * eol.threshold:g} %"
    if eol.cycles is None:
        print(f"{pct} retention: not reached within the search horizon")
    else:
        lo, hi = eol.prediction_interval or (math.nan, math.nan)
        kind = "extrapolated" if eol.extrapolated else "within the data"
        print(
            f"{pct} retention at cycle {eol.cycles:.0f} "
            f"({100 * eol.confidence:g} % prediction interval {lo:.0f} to {hi:.0f}; {kind})"
        )
    return 0


# -------------------------------------------------------------------------------- conductivity


def _conductivity_points(
    path: Path, thickness_cm: float | None, area_cm2: float | None
) -> ConductivityPoints:
    """The points of a conductivity CSV (:mod:`cellbench.analysis.conductivity_table`)."""
    import polars as pl
    from polars.exceptions import PanicException

    from cellbench.analysis.conductivity import ConductivityError
    from cellbench.analysis.conductivity_table import conductivity_points

    if not path.is_file():
        raise CellbenchError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    try:
        df = pl.read_csv(path, comment_prefix="#", infer_schema_length=None)
    except (pl.exceptions.PolarsError, PanicException) as exc:
        raise CellbenchError(f"{path}: cannot read as CSV: {exc}") from None
    try:
        return conductivity_points(df, thickness_cm=thickness_cm, area_cm2=area_cm2)
    except ConductivityError as exc:
        raise CellbenchError(f"{path}: {exc}") from None


def cmd_conductivity(args: argparse.Namespace) -> int:
    from cellbench.analysis.conductivity import choose_model, fit_all, fit_conductivity

    results = []
    datasets = []  # for --report
    geometry_from_run(args)  # --run RUN: the pellet's thickness and area where not given
    for name in args.files:
        path = Path(name)
        points = conductivity_points_for(path, args, _conductivity_points)  # CSV, run or EIS
        t, sigma, stderr = points.temperature, points.conductivity_s_per_cm, points.stderr_s_per_cm
        common = {"temperature_unit": points.temperature_unit, "confidence": args.confidence}
        if args.model == "auto":
            fits = fit_all(t, sigma, stderr_s_per_cm=stderr, **common)
            best = choose_model(fits)
        else:
            best = fit_conductivity(t, sigma, args.model, stderr_s_per_cm=stderr, **common)
            fits = [best]
        d = best.to_dict()
        d["file"] = str(path)
        d["chosen_from"] = [f.model for f in fits] if args.model == "auto" else [args.model]
        d["alternatives"] = {f.model: f.aic for f in fits}
        results.append(d)
        datasets.append(
            {
                "temperature_celsius": points.temperature_celsius,
                "conductivity_s_per_cm": sigma,
                "fit": best,
                "alternatives": [f for f in fits if f is not best],
                "source": str(path),
                "tag": path.stem if len(args.files) > 1 else "",
            }
        )
    write_report("conductivity", args, datasets=datasets)
    if getattr(args, "card", False):  # the report card (cellbench.cli.conductivity_card)
        from cellbench.cli.conductivity_card import print_cards

        return print_cards(args, datasets)
    if args.json:
        _print_json(results[0] if len(results) == 1 else results)
        return 0
    for d in results:
        lo, hi = d["activation_energy_ev_ci"]
        klo, khi = d["activation_energy_kj_per_mol_ci"]
        slo, shi = d["conductivity_25c_ci"]
        pct = f"{100 * d['confidence']:g} %"
        print(f"{d['file']}: {d['model']} fit of {d['n_points']} points")
        print(
            f"  Ea = {d['activation_energy_ev']:.4f} eV ({pct} CI {lo:.4f} to {hi:.4f}) "
            f"= {d['activation_energy_kj_per_mol']:.2f} kJ/mol ({klo:.2f} to {khi:.2f})"
        )
        print(
            f"  sigma(25 degC) = {d['conductivity_25c_siemens_per_centimeter']:.4g} S/cm "
            f"({slo:.4g} to {shi:.4g})"
        )
        if args.model == "auto":
            alts = ", ".join(f"{m} {a:.2f}" for m, a in d["alternatives"].items())
            print(f"  AICc: {alts}")
    return 0


# ----------------------------------------------------------------------------------------- ccd


def cmd_ccd(args: argparse.Namespace) -> int:
    from cellbench.analysis.ccd import critical_current_density
    from cellbench.daq import loaders

    path = Path(args.file)
    area = args.area_cm2
    if area is None:
        cell = _cell(path)
        area = cell.area_cm2 if cell else None
    if area is None:
        raise CellbenchError(
            f"{path}: the electrode area is unknown; give --area-cm2 (cm2)"
            + ("" if loaders.is_run(path) else " (vendor files carry no cell geometry)")
        )
    df = _pick_channel(load_samples(path, args.column_map), args.channel, path)
    res = critical_current_density(
        df,
        area,
        collapse_fraction=args.collapse_fraction,
        noise_factor=args.noise_factor,
        min_points=args.min_points,
    )
    write_report("ccd", args, samples=df, area_cm2=area, result=res)
    if args.json:
        _print_json(res.to_dict())
        return 0
    _print_table(
        res.steps.to_dicts(),
        [
            ("step", "step"),
            ("current_density_milliampere_per_square_centimeter", "j/mA cm-2"),
            ("test_time_start_second", "start/s"),
            ("test_time_end_second", "end/s"),
            ("median_polarisation_volt", "|V|/V"),
            ("resistance_ohm", "R/ohm"),
            ("shorted", "shorted"),
        ],
    )
    print()
    if res.shorted:
        ccd = _fmt(res.ccd_milliampere_per_square_centimeter)
        print(
            f"CCD = {ccd} mA/cm2 (last level completed); short at "
            f"{res.short_current_density_milliampere_per_square_centimeter:.4g} mA/cm2, step "
            f"{res.short_step}, t = {res.short_time_second:.1f} s ({res.mechanism})"
        )
    else:
        print(
            f"no short: CCD >= {_fmt(res.ccd_milliampere_per_square_centimeter)} mA/cm2 "
            "(highest level reached)"
        )
    q = res.cumulative_areal_capacity_milliampere_hour_per_square_centimeter
    if q is not None:
        what = "at failure" if res.shorted else "passed"
        print(f"cumulative areal capacity {what}: {q:.4g} mAh/cm2")
    return 0


# ------------------------------------------------------------------------------------ register


def _positive(text: str) -> float:
    """argparse type: a finite number > 0 (a mass, an area, a thickness, a factor)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _delays(text: str) -> list[float]:
    """argparse type: comma-separated positive seconds, ``2,10``."""
    return [_positive(part.strip()) for part in text.split(",")]


def _fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1 (a retention, a confidence level)."""
    value = _positive(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"must lie between 0 and 1, got {text!r}")
    return value


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text!r}")
        return value

    return parse


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    add_report_option(p)


def _add_cycling_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="run folder or cycler file (any supported format)")
    add_catalog_option(p)
    add_column_map_option(p)
    p.add_argument("--channel", help="channel to analyse (default: all channels)")
    p.add_argument(
        "--efficiency",
        choices=("discharge/charge", "charge/discharge"),
        default="discharge/charge",
        help="Coulombic/energy efficiency convention: discharge/charge for a cell charged first "
        "(default), charge/discharge for an anode against lithium",
    )
    p.add_argument(
        "--capacity-from",
        choices=("auto", "counters", "integration"),
        default="auto",
        help="per-cycle capacity and energy from the file's own running totals (counters: "
        "what the cycler's software shows) or from integrating the logged I and V*I; auto "
        "(default): counters for vendor files, integration for run folders and --segment",
    )
    p.add_argument(
        "--segment",
        action="store_true",
        help="recompute steps and cycles from the current (for files without usable cycle "
        "numbers); a cycle starts at each charge that follows a discharge (at each discharge "
        "after a charge with --efficiency charge/discharge)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``cycling``, ``fade``, ``conductivity`` and ``ccd`` to ``cellbench analyze``."""
    p = sub.add_parser(
        "cycling",
        help="per-cycle capacity, energy, efficiencies, mean voltages, DC resistance",
        description="Per-cycle summary of a run or cycler file. Capacity and energy are the "
        "file's own per-cycle counters (vendor files) or trapezoidal integrals of I and V*I "
        "over time split by the sign of the current (run folders; see --capacity-from). "
        "With --json prints a list, one object per cycle, with keys cycle_count, "
        "charge_capacity_ampere_hour, discharge_capacity_ampere_hour, "
        "charge_energy_watt_hour, discharge_energy_watt_hour, coulombic_efficiency (a "
        "fraction) and more.",
    )
    _add_cycling_inputs(p)
    p.add_argument(
        "--active-mass-g",
        type=_positive,
        help="active material mass, g (adds specific capacity; default from the run's cell)",
    )
    p.add_argument(
        "--step-resistance",
        type=_delays,
        metavar="DELAYS",
        help="add the per-cycle median step resistance at every current edge: at the first "
        "sample and at these delays, s, comma-separated (e.g. 2,10; docs/solid-state.md)",
    )
    _add_common(p)
    p.set_defaults(func=catalog_aware(cmd_cycling, "file"))

    p = sub.add_parser(
        "fade",
        help="capacity fade models, knee and cycles to end of life",
        description="Fits retention against cycle (linear, sqrt, power, exponential, two-stage "
        "knee), ranks them by BIC or AIC, finds the knee and predicts the cycle at which "
        "retention reaches --threshold, with a prediction interval (delta method). FILE is a "
        "run or cycler file (summarised first), or a CSV with cycle_count and "
        "capacity_retention or discharge_capacity_ampere_hour columns.",
    )
    _add_cycling_inputs(p)
    p.add_argument(
        "--threshold", type=_fraction, default=0.8, help="end-of-life retention (default 0.8)"
    )
    p.add_argument(
        "--first-n", type=_count(3), help="fit only the first N cycles (early prediction)"
    )
    p.add_argument(
        "--reference",
        default="first",
        help="100 %% capacity: first (first cycle with capacity, default), max, a cycle "
        "number, or a capacity in Ah such as 2.5",
    )
    p.add_argument("--criterion", choices=("bic", "aic"), default="bic", help="model ranking")
    p.add_argument("--confidence", type=_fraction, default=0.95, help="interval level (0.95)")
    _add_common(p)
    p.set_defaults(func=catalog_aware(cmd_fade, "file"))

    p = sub.add_parser(
        "conductivity",
        help="Arrhenius / VTF fit of conductivity against temperature",
        description="Fits ionic conductivity against temperature. Each FILE is a CSV with a "
        "temperature_celsius (or temperature_kelvin) column and either "
        "conductivity_siemens_per_centimeter (S/cm; with an optional "
        "conductivity_stderr_siemens_per_centimeter to weight the points) or resistance_ohm "
        "(optionally resistance_stderr_ohm; with --thickness-cm and "
        "--area-cm2, or thickness_cm and area_cm2 columns; sigma = L / (R A)). Reports Ea in eV "
        "and kJ/mol and sigma at 25 degC with confidence intervals. One FILE prints one JSON "
        "object; several print a list. A FILE that is a run folder or an impedance file is "
        "fitted sweep by sweep (the first sweep at each temperature, the last of a step's "
        "equilibrium repeats; see --electrodes and --conductivity-kind).",
    )
    p.add_argument(
        "files", metavar="FILE", nargs="+", help="CSV file(s), run folder(s) or EIS file(s)"
    )
    p.add_argument("--thickness-cm", type=_positive, help="pellet thickness, cm")
    p.add_argument("--area-cm2", type=_positive, help="electrode area, cm2")
    p.add_argument(
        "--model",
        choices=("auto", "arrhenius", "arrhenius_t", "vtf"),
        default="auto",
        help="auto (default): the lowest AICc, a 3-parameter VTF only when clearly better",
    )
    p.add_argument("--confidence", type=_fraction, default=0.95, help="interval level (0.95)")
    _add_common(p)
    add_card_options(p)
    p.set_defaults(func=cmd_conductivity)

    p = sub.add_parser(
        "ccd",
        help="critical current density of a Li|SE|Li current staircase",
        description="Detects the short (voltage collapse at constant current, or a noise "
        "signature) in a symmetric-cell staircase and reports the critical current density in "
        "mA/cm2: the last level completed without a short, with the level, step and time of "
        "the short.",
    )
    p.add_argument("file", metavar="FILE", help="run folder or cycler file")
    add_catalog_option(p)
    add_column_map_option(p)
    p.add_argument(
        "--area-cm2", type=_positive, help="electrode area, cm2 (default: the run's cell)"
    )
    p.add_argument("--channel", help="channel to analyse (needed when the file has several)")
    p.add_argument(
        "--collapse-fraction",
        type=_fraction,
        default=0.3,
        help="a short is |V| below this fraction of the expected polarisation (0.3)",
    )
    p.add_argument(
        "--noise-factor",
        type=_positive,
        default=8.0,
        help="a soft short is |dV| above this many times its healthy median (8)",
    )
    p.add_argument(
        "--min-points",
        type=_count(1),
        default=3,
        help="consecutive samples a signature must last (3)",
    )
    _add_common(p)
    p.set_defaults(func=catalog_aware(cmd_ccd, "file"))


if __name__ == "__main__":  # pragma: no cover
    from cellbench.cli.main import main

    sys.exit(main(["analyze", *sys.argv[1:]]))
