"""``cellbench runs ...``: list, inspect, export and repair recorded run folders.

Output is a rich table on a terminal and plain aligned text otherwise (pipes, logs, tests).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cellbench.cli.export_metadata import METADATA_FORMATS, write_metadata
from cellbench.cli.help_text import LazyChoices
from cellbench.cli.runs_control import register_control
from cellbench.core.errors import CellbenchError

if TYPE_CHECKING:  # polars (core.schema too) and the store load when a command runs
    import polars as pl

    from cellbench.core import schema
    from cellbench.daq.store import RunInfo

EXPORT_FORMATS = ("parquet", "csv")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "runs",
        help="list, show, export and repair recorded runs; stop, pause or continue a live one",
        description="Inspect run folders written by cellbench (also while they are being written).",
    )
    runs_sub = parser.add_subparsers(dest="runs_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    p = runs_sub.add_parser(
        "list",
        help="one line per run folder in DIR",
        description="List the runs in DIR: id, status, start and end (UTC), rows per table, cell.",
    )
    p.add_argument("dir", type=Path, nargs="?", metavar="DIR", help="folder holding run folders")
    p.add_argument("--json", action="store_true", help="print a JSON list of runs")
    p.add_argument("--catalog", metavar="URL", help="list the runs in the lab catalog instead")
    p.add_argument("--where", metavar="SQL", help="with --catalog: condition on runs' columns")
    p.set_defaults(func=cmd_list)

    p = runs_sub.add_parser(
        "show",
        help="metadata, row counts, time span and events of one run",
        description="Show a run's run.json, row counts, time span, channels and events summary.",
    )
    p.add_argument("run", type=Path, metavar="RUN", help="run folder (run id with --catalog)")
    from cellbench.cli import catalog_args  # --catalog URL RUN_ID (the lab catalog)

    catalog_args.add_catalog_option(p)
    p.set_defaults(func=catalog_args.catalog_aware(cmd_show, "run"))

    p = runs_sub.add_parser(
        "export",
        help="write a run's tables as Parquet or CSV files",
        description=(
            "Write tables of RUN to OUT/<run id>_<table>.<format>, by default beside RUN (in "
            "the folder that holds it), and print each file's full path. The run may be live: "
            "the export holds the rows recorded so far."
        ),
    )
    p.add_argument("run", type=Path, metavar="RUN", help="run folder")
    p.add_argument("--format", choices=EXPORT_FORMATS, help="file format of the tables")
    p.add_argument(
        "--metadata",
        choices=METADATA_FORMATS,
        help="also (or only) write the run's metadata: bdf (the Battery Data Format sidecar, "
        "<run id>.bdf.meta.json) or battinfo (BattINFO JSON-LD, <run id>.battinfo.jsonld)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="output folder (default: the folder that holds RUN, beside it)",
    )
    p.add_argument(
        "--table",
        default="all",
        choices=LazyChoices(_table_names),
        metavar="TABLE",  # a metavar: argparse would list the choices while registering
        help="one of: %(choices)s (default: all)",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    catalog_args.add_catalog_option(p)
    p.set_defaults(func=catalog_args.catalog_aware(cmd_export, "run"))

    p = runs_sub.add_parser(
        "repair",
        help="recover a run whose writer died and close it as interrupted",
        description=(
            "Recover RUN after a crash (truncate a torn journal tail, remove temporary files, seal "
            "the journal) and close it with status 'interrupted'. A damaged journal is kept under "
            "RUN/damaged/ and only its valid frames are sealed: nothing valid is deleted. "
            "Refused while a writer is live."
        ),
    )
    p.add_argument("run", type=Path, metavar="RUN", help="run folder")
    p.set_defaults(func=cmd_repair)

    register_control(runs_sub)  # stop, pause, continue, status


# ---------------------------------------------------------------------------------- output


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, title: str | None = None
) -> None:
    """A rich table on a terminal; plain text with columns aligned by spaces otherwise."""
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*headers, title=title)
        for row in cells:
            table.add_row(*row)
        Console().print(table)
        return
    if title:
        print(title)
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _status(info_status: str, live: bool) -> str:
    if info_status == "running" and not live:
        return "running (no writer: crashed? see 'runs repair')"
    return info_status


def _cell(meta_cell: schema.Cell) -> str:
    parts = [p for p in (meta_cell.name, meta_cell.chemistry) if p]
    if meta_cell.area_cm2 is not None:
        parts.append(f"{meta_cell.area_cm2:g} cm2")
    return ", ".join(parts)


def _when(iso: str | None) -> str:
    return "" if not iso else iso.replace("T", " ").removesuffix("Z")[:19]


# -------------------------------------------------------------------------------- commands


def cmd_list(args: argparse.Namespace) -> int:
    from cellbench.daq.store import list_runs

    if args.json or args.catalog or args.where or args.dir is None:
        from cellbench.cli import catalog_args  # --json, --catalog URL [--where SQL]

        return catalog_args.cmd_list(args)
    runs: list[RunInfo] = list_runs(args.dir)
    if not runs:
        print(f"no runs in {args.dir}")
        return 0
    rows = [
        (
            r.path.name if r.path.name == r.meta.run_id else f"{r.meta.run_id} ({r.path.name})",
            _list_status(r),
            _when(r.meta.start_time),
            _when(r.meta.end_time),
            r.rows.get("samples", "?"),
            r.rows.get("spectra", "?"),
            r.rows.get("events", "?"),
            _cell(r.meta.cell),
        )
        for r in runs
    ]
    headers = ("run", "status", "start (UTC)", "end (UTC)", "samples", "spectra", "events", "cell")
    print_table(headers, rows)
    for r in runs:
        if r.problem is not None:
            print(f"cellbench: warning: {r.path.name}: {r.problem}", file=sys.stderr)
        for loss in r.damage:
            print(f"cellbench: warning: {r.path.name}: {loss.describe()}", file=sys.stderr)
    return 0


def _list_status(r: RunInfo) -> str:
    if r.problem is not None:
        return "damaged (unreadable, see below)"
    status = _status(r.meta.status, r.writer_active)
    lost = [d for d in r.damage if d.last_seq is not None or "torn" not in d.where]
    return f"{status}, damaged ({len(lost)} unreadable)" if lost else status


def _span(df: pl.DataFrame) -> tuple[float, float] | None:
    t = df["test_time_second"].drop_nulls()
    return (float(t.min()), float(t.max())) if t.len() else None


def _hms(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _truth_summary(truth: dict) -> str:
    """The simulated cell's scalar truths, 4 significant digits; tables and lists stay in
    run.json (the full parameter set runs to kilobytes)."""
    parts = []
    for key in sorted(truth):
        value = truth[key]
        if isinstance(value, bool) or value is None or isinstance(value, str):
            parts.append(f"{key}={value}")
        elif isinstance(value, int | float):
            parts.append(f"{key}={value:.4g}")
    nested = sum(isinstance(v, dict | list) for v in truth.values())
    if nested:
        parts.append(f"(+{nested} nested in run.json)")
    return ", ".join(parts)


def cmd_show(args: argparse.Namespace) -> int:
    import polars as pl

    from cellbench.daq.store import open_run

    reader = open_run(args.run)
    meta = reader.meta
    live = reader.writer_active()
    counts = reader.tables()
    info: list[tuple[str, object]] = [
        ("run id", meta.run_id),
        ("folder", reader.path),
        ("status", _status(meta.status, live)),
        ("start (UTC)", _when(meta.start_time)),
        ("end (UTC)", _when(meta.end_time)),
        ("protocol", meta.protocol.get("name", "") if meta.protocol else ""),
        ("station", meta.station.get("name", "") if meta.station else ""),
        ("software", meta.software_version),
    ]
    cell = meta.cell
    for key in ("name", "chemistry", "area_cm2", "thickness_cm", "active_mass_g"):
        value = getattr(cell, key)
        if value not in (None, ""):
            info.append((f"cell {key}", value))
    if cell.nominal_capacity_ah is not None:
        info.append(("cell nominal_capacity_ah", cell.nominal_capacity_ah))
    if cell.build is not None:  # the build record ([cell.build], --cell build.KEY=VALUE)
        info.extend((f"build {k}", v) for k, v in cell.build.recorded().items())
    for table, n in counts.items():
        info.append((f"{table} rows", n))
    samples = reader.scan("samples").select("channel", "test_time_second").collect()
    if (span := _span(samples)) is not None:
        info.append(("time span", f"{span[0]:g} .. {span[1]:g} s ({_hms(span[1] - span[0])})"))
        channels = sorted(samples["channel"].unique().to_list())
        info.append(("channels", ", ".join(channels)))
    if counts["spectra"]:
        sweeps = reader.scan("spectra").select("channel", "sweep_index").unique().collect()
        info.append(("EIS sweeps", sweeps.height))
    if meta.ground_truth:
        info.append(("ground truth", _truth_summary(meta.ground_truth)))
    damage = reader.damage()
    for loss in damage:
        info.append(("unreadable", loss.describe()))
    print_table(("field", "value"), info, title=f"run {meta.run_id}")
    if damage:
        lost = sum(1 if d.last_seq is None else d.last_seq - d.first_seq + 1 for d in damage)
        rows = sum(d.rows_hint or 0 for d in damage)
        print(
            f"cellbench: warning: {args.run}: {len(damage)} damaged place(s), {lost} batch(es) "
            f"unreadable (about {rows} rows where the damaged headers say so); the rest reads",
            file=sys.stderr,
        )

    events = reader.read("events")
    if events.height:
        print()
        summary = (
            events.group_by("kind", "severity")
            .agg(pl.len().alias("count"), pl.col("message").last().alias("last message"))
            .sort("kind", "severity")
        )
        print_table(summary.columns, summary.rows(), title="events")
    return 0


def _table_names() -> tuple[str, ...]:
    from cellbench.core import schema

    return (*schema.TABLES, "all")


def cmd_export(args: argparse.Namespace) -> int:
    import polars as pl

    from cellbench.core import schema
    from cellbench.daq.store import open_run

    reader = open_run(args.run)
    tables = schema.TABLES if args.table == "all" else (args.table,)
    # beside the run by default (not wherever the shell happens to be)
    out: Path = (args.out or Path(args.run).resolve().parent).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CellbenchError(f"{out}: cannot create output folder: {exc.strerror}") from None
    if getattr(args, "metadata", None):
        write_metadata(reader, out, args.metadata, force=args.force)
        if args.format is None:
            return 0
    elif args.format is None:
        raise CellbenchError("runs export: give --format (tables), --metadata, or both")
    targets = {t: out / f"{reader.meta.run_id}_{t}.{args.format}" for t in tables}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not args.force:
        raise CellbenchError(f"{existing[0]} exists; use --force to overwrite")
    for table, target in targets.items():
        lazy = reader.scan(table)
        rows = lazy.select(pl.len()).collect().item()
        if args.format == "parquet":
            lazy.sink_parquet(target, compression="zstd")
        else:
            lazy.sink_csv(target)
        print(f"{target}  ({rows} rows)")
    return 0


def cmd_repair(args: argparse.Namespace) -> int:
    from cellbench.daq.store import StoreError, open_run, reopen_run

    before = open_run(args.run).meta.status
    if before != "running":
        raise StoreError(f"{args.run}: status is {before!r}; only a 'running' run needs repair")
    writer = reopen_run(args.run)
    kept = list(writer.quarantined)
    writer.close("interrupted")
    rows = ", ".join(f"{t} {n}" for t, n in open_run(args.run).tables().items())
    print(f"{args.run}: recovered; status interrupted; rows: {rows}")
    for q in kept:
        print(f"cellbench: warning: {q.message()}", file=sys.stderr)
    return 0
