"""``cellbench convert`` and ``cellbench inspect``: vendor files to Battery Data Format, and a look
inside a file before analysing it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cellbench.cli.help_text import describe_when_shown

if TYPE_CHECKING:  # the readers import polars: only when a command runs, not to register it
    import polars as pl

    from cellbench.analysis.readers import ReadResult

TARGETS = {"parquet": ".parquet", "bdf-csv": ".csv"}


def _convert_description() -> str:
    from cellbench.analysis.readers import FORMATS

    return (
        "Read vendor files (format detected from the content) and write their canonical "
        "frame in Battery Data Format: SI units in the column names, current positive on "
        f"charge. Formats read: {', '.join(f.name for f in FORMATS)}."
    )


def register(sub: argparse._SubParsersAction) -> None:
    conv = sub.add_parser(
        "convert",
        help="convert cycler and impedance files to Battery Data Format (parquet or csv)",
    )
    describe_when_shown(conv, _convert_description)
    conv.add_argument("files", nargs="+", type=Path, metavar="FILE", help="files to convert")
    conv.add_argument(
        "--to", required=True, choices=sorted(TARGETS), help="output format: parquet or bdf-csv"
    )
    conv.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="output folder (default: beside FILE)"
    )
    conv.add_argument(
        "--kind",
        choices=("samples", "spectra"),
        default=None,
        help="which table to take from a file holding both (an .mpr with GCPL and PEIS)",
    )
    conv.add_argument("--force", action="store_true", help="overwrite existing outputs")
    add_column_map_option(conv, spectra=True)
    conv.set_defaults(func=run_convert)

    insp = sub.add_parser(
        "inspect",
        help="show a file's format, columns, rows, time span and cycles",
        description="Read FILE and summarise it: detected format, kind of data, columns with "
        "dtypes, rows, time span, cycles and steps, and every warning the reader raised.",
    )
    insp.add_argument(
        "file", type=Path, metavar="FILE", help="vendor file (format detected from its content)"
    )
    insp.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_column_map_option(insp, spectra=True)
    insp.set_defaults(func=run_inspect)


def add_column_map_option(p: argparse.ArgumentParser, *, spectra: bool = False) -> None:
    """``--column-map MAP.json`` (a :class:`pathlib.Path`), for every command that reads FILE."""
    p.add_argument(
        "--column-map",
        type=Path,
        metavar="MAP.json",
        help="read FILE as a csv/text export whose columns MAP.json names, e.g. "
        '{"t (h)": ["test_time_second", 3600], "U (V)": "voltage_volt", '
        '"I (mA)": ["current_ampere", 0.001]} (see docs/readers.md)'
        + ("; a map with a frequency_hertz column reads impedance spectra" if spectra else ""),
    )


def _map_kind(column_map: Path) -> str:
    """``spectra`` for a map that names a frequency column, else ``samples``."""
    from cellbench.analysis.readers import load_column_map

    targets = {col.target for col in load_column_map(column_map).values()}
    return "spectra" if "frequency_hertz" in targets else "samples"


def _read(path: Path, kind: str | None = None, column_map: Path | None = None) -> ReadResult:
    import warnings

    from cellbench.analysis.readers import ReaderError, by_name, detect_format, read_csv

    if column_map is not None:
        if not path.is_file():
            raise ReaderError(path, "no such file" if not path.exists() else "not a file")
        fmt = None
    else:
        fmt = by_name(detect_format(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # collected in ReadResult.warnings and printed by us
        if fmt is None:
            result = read_csv(path, column_map, kind=kind or _map_kind(column_map))
        elif kind is not None and fmt.read_kind is not None:
            result = fmt.read_kind(path, kind)
        else:
            result = fmt.read(path)
    if kind is not None and result.kind != kind:
        raise ReaderError(path, f"{result.format} file holds {result.kind}", expected=kind)
    return result


def output_path(src: Path, to: str, out_dir: Path | None) -> Path:
    folder = out_dir if out_dir is not None else src.parent
    return folder / (src.stem + TARGETS[to])


def write_frame(df: pl.DataFrame, dest: Path, to: str) -> None:
    """Write atomically: a reader never sees a half-written output."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        if to == "parquet":
            df.write_parquet(tmp)
        else:
            df.write_csv(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def run_convert(args: argparse.Namespace) -> int:
    from cellbench.analysis.readers import ReaderError

    failed = 0
    for src in args.files:
        dest = output_path(src, args.to, args.out)
        try:
            if dest.resolve() == src.resolve():
                raise ReaderError(src, "output would overwrite the input", expected="--out DIR")
            if dest.exists() and not args.force:
                raise ReaderError(dest, "exists", expected="--force to overwrite")
            result = _read(src, args.kind, args.column_map)
            write_frame(result.frame, dest, args.to)
        except ReaderError as exc:
            failed += 1
            print(f"cellbench: error: {exc}", file=sys.stderr)
            continue
        print(f"{src} -> {dest} ({result.format}, {result.kind}, {result.frame.height} rows)")
        for w in result.warnings:
            print(f"  warning: {w}", file=sys.stderr)
    return 1 if failed else 0


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def summary(path: Path, column_map: Path | None = None) -> dict:
    """What ``inspect`` shows, as a plain dict; ``column_map`` as for ``--column-map``."""
    result = _read(path, column_map=column_map)
    df = result.frame
    out: dict = {
        "file": str(path),
        "format": result.format,
        "kind": result.kind,
        "rows": df.height,
        "columns": {c: str(t) for c, t in df.schema.items()},
    }
    if df.height:
        t0, t1 = df["test_time_second"].min(), df["test_time_second"].max()
        out["time_span_second"] = [t0, t1]
        if result.metadata.get("start_time_known"):
            u = df["unix_time_second"]
            out["start"], out["end"] = _iso(u.min()), _iso(u.max())
    if result.kind == "samples" and df.height:
        cycles = df["cycle_count"]
        out["cycles"] = {"count": cycles.n_unique(), "first": cycles.min(), "last": cycles.max()}
        out["steps"] = int(df["step_count"].max())
    if result.kind == "spectra" and df.height:
        out["sweeps"] = df["sweep_index"].n_unique()
        out["frequency_hertz"] = [df["frequency_hertz"].min(), df["frequency_hertz"].max()]
    out["metadata"] = result.metadata
    out["warnings"] = result.warnings
    return out


def _duration(seconds: float) -> str:
    h, rem = divmod(seconds, 3600)
    return f"{int(h)} h {rem / 60:.1f} min" if h else f"{seconds:.1f} s"


def run_inspect(args: argparse.Namespace) -> int:
    from cellbench.analysis.readers import FORMATS, by_name

    info = summary(args.file, args.column_map)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"file:     {info['file']}")
    known = {f.name for f in FORMATS}
    what = by_name(info["format"]).description if info["format"] in known else "a column map"
    print(f"format:   {info['format']} ({what})")
    kinds = info["metadata"].get("kinds", [info["kind"]])
    also = [k for k in kinds if k != info["kind"]]
    extra = f" (also {', '.join(also)}: convert --kind {also[0]})" if also else ""
    print(f"kind:     {info['kind']}{extra}")
    print(f"rows:     {info['rows']}")
    if "time_span_second" in info:
        t0, t1 = info["time_span_second"]
        line = f"time:     {t0:g} s .. {t1:g} s ({_duration(t1 - t0)})"
        if "start" in info:
            line += f", {info['start']} .. {info['end']}"
        print(line)
    if "cycles" in info:
        c = info["cycles"]
        print(f"cycles:   {c['count']} ({c['first']} .. {c['last']}), steps: {info['steps']}")
    if "sweeps" in info:
        f0, f1 = info["frequency_hertz"]
        print(f"sweeps:   {info['sweeps']}, frequency {f0:g} .. {f1:g} Hz")
    print("columns:")
    for name, dtype in info["columns"].items():
        print(f"  {name:36s} {dtype}")
    shown = {k: v for k, v in info["metadata"].items() if not isinstance(v, list | dict)}
    if shown:
        print("metadata:")
        for k, v in shown.items():
            print(f"  {k}: {v}")
    for w in info["warnings"]:
        print(f"warning:  {w}")
    return 0
