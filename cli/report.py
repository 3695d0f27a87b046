"""``cellbench report RUN_OR_FILE --out DIR``, and the ``--report DIR`` option of the analyze
commands.

A report folder holds ``report.html`` (self-contained: figures embedded, no external links), every
figure as PNG, tables as CSV and Parquet, fits as JSON. The figures and the HTML come from
:mod:`cellbench.analysis.report`; this module loads run folders and vendor files for it.

Analyze commands add the option with :func:`add_report_option` and, after their analysis, call
:func:`write_report` with what they computed (it does nothing when ``--report`` was not given)::

    add_report_option(parser)
    ...
    write_report("fade", args, cycles=cycles, retention=retention, fade=report)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cellbench.core.errors import CellbenchError

if TYPE_CHECKING:
    import polars as pl

    from cellbench.analysis.report import ReportFiles

REPORT_KINDS = ("cycling", "eis", "fade", "conductivity", "ccd")


def add_report_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--report DIR`` to an analyze command."""
    parser.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="also write a report to DIR: report.html (figures embedded), the figures as PNG, "
        "tables as CSV and Parquet, fits as JSON (needs matplotlib)",
    )


def _announce(files: ReportFiles) -> None:
    # stderr: an analyze command's stdout may be JSON for another program.
    print(
        f"report: {files.html} ({len(files.figures)} figures, {len(files.tables) // 2} tables, "
        f"{len(files.fits)} fits)",
        file=sys.stderr,
    )


def write_report(kind: str, args: argparse.Namespace, **results: Any) -> ReportFiles | None:
    """Write the ``kind`` report of an analyze command into ``args.report`` (None: no report).

    ``results`` are what the command computed, so nothing is fitted twice:

    - ``cycling``: ``samples`` (several channels: one section each), optional ``summary``,
      ``efficiency``, ``active_mass_g``, ``threshold``, ``dqdv_cycles``
    - ``eis``: ``spectra`` and ``fits`` (the FitResult of each sweep, in sweep order), or
      ``circuit`` (sweeps are fitted with warm starts), or ``analysis``
      (:class:`cellbench.analysis.report.EisAnalysis`); optional ``thickness_cm``, ``area_cm2``
    - ``fade``: ``cycles``, ``retention`` (fraction), optional ``fade`` (FadeReport),
      ``threshold``
    - ``conductivity``: ``temperature_celsius``, ``conductivity_s_per_cm``, optional ``fit``,
      ``alternatives``, ``source``, ``tag``; or ``datasets``: a list of such dicts (one
      section each)
    - ``ccd``: ``samples``, ``area_cm2``, optional ``result`` (CCDResult)
    """
    out = getattr(args, "report", None)
    if out is None:
        return None
    from cellbench.analysis import report as rp

    if kind not in REPORT_KINDS:
        raise CellbenchError(f"unknown report kind {kind!r}; expected one of {REPORT_KINDS}")
    source = str(getattr(args, "file", "") or ", ".join(map(str, getattr(args, "files", []))))
    rep = rp.Report(
        f"{kind.upper() if kind in ('eis', 'ccd') else kind.capitalize()} report",
        {"source": source} if source else {},
    )
    if kind == "cycling":
        import polars as pl

        samples = results.pop("samples")
        summary = results.pop("summary", None)
        for tag, part in _by_channel(samples):
            rows = summary
            if summary is not None and tag and "channel" in summary.columns:
                rows = summary.filter(pl.col("channel") == tag)
            rp.cycling_sections(rep, part, summary=rows, tag=tag, **results)
    elif kind == "eis":
        spectra = results.pop("spectra")
        fits = results.pop("fits", None)
        if fits is not None:  # what the analyze command fitted: no second fit
            results["analysis"] = rp.analysis_from_fits(spectra, fits)
        rp.eis_sections(rep, spectra, **results)
    elif kind == "fade":
        rp.fade_sections(rep, results.pop("cycles"), results.pop("retention"), **results)
    elif kind == "conductivity":
        for data in results.pop("datasets", None) or [results]:
            data = dict(data)
            rp.conductivity_sections(
                rep, data.pop("temperature_celsius"), data.pop("conductivity_s_per_cm"), **data
            )
    else:
        rp.ccd_sections(rep, results.pop("samples"), results.pop("area_cm2"), **results)
    files = rep.write(out)
    _announce(files)
    return files


def _by_channel(df: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
    import polars as pl

    if "channel" not in df.columns or df["channel"].n_unique() <= 1:
        return [("", df)]
    return [
        (str(c), df.filter(pl.col("channel") == c))
        for c in df["channel"].unique(maintain_order=True).to_list()
    ]


# ------------------------------------------------------------------------ cellbench report


def report_path(path: Path | str, out_dir: Path | str, **options: Any) -> ReportFiles:
    """:func:`cellbench.analysis.report.report_run` of a run folder or a vendor file."""
    from cellbench.analysis.report import report_run
    from cellbench.daq.loaders import load_run_data

    data = load_run_data(Path(path))
    channel = options.pop("channel", None)
    if channel is not None:
        data.samples, data.spectra = (
            _channel(df, channel, path) for df in (data.samples, data.spectra)
        )
    return report_run(data, out_dir, **options)


def _channel(df: pl.DataFrame | None, channel: str, path: Path | str) -> pl.DataFrame | None:
    if df is None or "channel" not in df.columns or df.height == 0:
        return df
    names = df["channel"].unique(maintain_order=True).to_list()
    if channel not in names:
        raise CellbenchError(f"{path}: no channel {channel!r}; channels are {names}")
    import polars as pl

    return df.filter(pl.col("channel") == channel)


def _cycles(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected cycle numbers separated by commas, e.g. 1,10,50; got {text!r}"
        ) from None
    if not out:
        raise argparse.ArgumentTypeError("give at least one cycle number")
    return out


def cmd_report(args: argparse.Namespace) -> int:
    files = report_path(
        args.source,
        args.out,
        title=args.title,
        circuit=args.circuit,
        threshold=args.threshold,
        dqdv_cycles=args.dqdv_cycles,
        efficiency=args.efficiency,
        ccd=args.ccd,
        channel=args.channel,
    )
    print(files.html)
    for p in [*files.figures, *files.tables, *files.fits]:
        print(f"  {p.name}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write an HTML report with figures, tables and fits of a run or a file",
        description=(
            "Analyse everything a cellbench run folder (or a cycler or EIS file) supports and "
            "write a report to DIR: report.html, self-contained (figures embedded, one file to "
            "mail or archive), the same figures as PNG, tables as CSV and Parquet, fits as JSON. "
            "Samples give V/I/T against time, the per-cycle summary, capacity and coulombic "
            "efficiency with the fade fit and end-of-life projection, and dQ/dV; spectra give "
            "an equivalent-circuit fit per sweep (Nyquist, Bode with residuals, parameters "
            "against cycle), the DRT and, across temperatures, the Arrhenius plot. A logged "
            "stack pressure is drawn beside V/I/T and given per cycle; pulses or sweeps at "
            "several pressures get resistance against pressure with its power-law fit. A part "
            "the data cannot support is stated in the report instead of failing it."
        ),
        epilog="example: cellbench report runs/20260301T120000Z-cell7 --out reports/cell7",
    )
    p.add_argument("source", type=Path, metavar="RUN_OR_FILE", help="run folder or vendor file")
    from cellbench.cli import catalog_args  # --catalog URL RUN_ID (the lab catalog)

    catalog_args.add_catalog_option(p)
    p.add_argument(
        "--out",
        "-o",
        type=Path,
        required=True,
        metavar="DIR",
        help="report folder (created; files in it are overwritten)",
    )
    p.add_argument("--title", help="report title (default: the run id)")
    p.add_argument(
        "--circuit",
        help=(
            "equivalent circuit for every sweep (default: one chosen by BIC on all sweeps "
            "together, as analyze eis --one-circuit does)"
        ),
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.8,
        help="end-of-life retention as a fraction (default 0.8)",
    )
    p.add_argument(
        "--dqdv-cycles",
        type=_cycles,
        metavar="N,N,...",
        help="cycles for dQ/dV (default: up to five spread over the run)",
    )
    p.add_argument(
        "--efficiency",
        choices=("discharge/charge", "charge/discharge"),
        default="discharge/charge",
        help="coulombic efficiency convention (charge/discharge for half cells discharged first)",
    )
    p.add_argument(
        "--ccd",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="analyse the samples as a critical-current-density staircase "
        "(default: when the run's protocol has a ccd step)",
    )
    p.add_argument("--channel", help="report only this channel (default: every channel)")
    p.set_defaults(func=catalog_args.catalog_aware(cmd_report, "source"))
