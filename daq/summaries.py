"""Per-segment min/max summaries of the samples table: a long run's whole span without its rows.

When the store seals a ``samples`` segment (or merges segments) it first writes, beside it, a
small Parquet *summary* (``sum-A-B.parquet`` next to ``seg-A-B.parquet``; not ``seg-*`` so
that tools globbing a table's segments never take it for one): the rows of each
channel of the segment in buckets of :data:`BUCKET_ROWS` consecutive rows (the last bucket of a
channel may be shorter), and per bucket and per plotted quantity its minimum, its maximum, the
test times they were measured at and the bucket's first value. A viewer seeds the coarse levels
of its min/max history from these (about 1/4096 of the rows) and reads full-resolution rows
only for the recent window, so attaching to a 10 M-row run does not read 10 M rows, and every
one-sample spike is still in some bucket's extremes.

Crash safety: the summary is written (temporary file, fsync, rename) *before* its segment is
renamed into place, so a segment never becomes visible before its summary exists unless the
writer died in between (then the summary is simply missing). A summary is only an index: it is
ignored when missing, unreadable, of other columns, or when its row count differs from the
segment's (a leftover of an interrupted seal), and the reader then computes it from the rows
(:func:`summary_for`) without writing anything into the run folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from cellbench.daq.run_files import atomic_write

log = logging.getLogger(__name__)

#: Rows of one channel per summary bucket (16**3: level 2 of the GUI's history, fanout 16).
BUCKET_ROWS = 4096
#: The plotted quantities summarised (BDF names); ``test_time_second`` is the time axis.
SUMMARY_VALUES: tuple[str, ...] = (
    "voltage_volt",
    "current_ampere",
    "temperature_celsius",
    "pressure_megapascal",
)
TIME = "test_time_second"
PREFIX = "sum-"
#: Matches every summary file of a table folder.
SUMMARY_GLOB = "sum-*.parquet"
#: Columns of a summary, in order: channel, bucket position, then per value min/max/times/first.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "channel",
    "row0",  # position in the segment of the bucket's first row
    "rows",  # rows of the channel in the bucket
    "t_first",  # test time of its first and last row, s
    "t_last",
    *(f"{v}_{k}" for v in SUMMARY_VALUES for k in ("min", "max", "tmin", "tmax", "first")),
)


def summary_path(segment: Path) -> Path:
    """Where the summary of the segment ``seg-A-B.parquet`` lives: ``sum-A-B.parquet``."""
    segment = Path(segment)
    return segment.with_name(PREFIX + segment.name.removeprefix("seg-"))


def summarize(df: pl.DataFrame, bucket_rows: int = BUCKET_ROWS) -> pl.DataFrame:
    """The summary of ``samples`` rows ``df`` (one segment, append order): one row per bucket of
    ``bucket_rows`` consecutive rows of a channel, ordered by channel's first appearance and then
    time. Missing values (null or NaN, or an absent optional column) are never extremes; an
    all-missing bucket has NaN there."""
    if bucket_rows < 1:
        raise ValueError(f"bucket_rows must be at least 1, got {bucket_rows}")
    values = [
        (
            pl.col(v).cast(pl.Float64).fill_nan(None)
            if v in df.columns
            else pl.lit(None, dtype=pl.Float64)
        ).alias(v)
        for v in SUMMARY_VALUES
    ]
    channel = (
        pl.col("channel").cast(pl.String) if "channel" in df.columns else pl.lit("", pl.String)
    )
    rows = df.lazy().select(
        channel.alias("channel"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("row0"),
        pl.col(TIME).cast(pl.Float64).alias(TIME),
        *values,
    )
    rows = rows.with_columns(
        (pl.int_range(pl.len(), dtype=pl.Int64).over("channel") // bucket_rows).alias("_bucket")
    )
    t = pl.col(TIME)
    aggs: list[pl.Expr] = [
        pl.col("row0").first(),
        pl.len().cast(pl.Int64).alias("rows"),
        t.first().alias("t_first"),
        t.last().alias("t_last"),
    ]
    for v in SUMMARY_VALUES:
        c = pl.col(v)
        aggs += [
            c.min().alias(f"{v}_min"),
            c.max().alias(f"{v}_max"),
            t.get(c.arg_min()).alias(f"{v}_tmin"),
            t.get(c.arg_max()).alias(f"{v}_tmax"),
            c.first().alias(f"{v}_first"),
        ]
    out = rows.group_by("channel", "_bucket", maintain_order=True).agg(aggs)
    out = out.sort("row0").select(list(SUMMARY_COLUMNS))
    floats = [c for c in SUMMARY_COLUMNS if c not in ("channel", "row0", "rows")]
    return out.with_columns(pl.col(floats).cast(pl.Float64).fill_null(float("nan"))).collect()


def write_summary(df: pl.DataFrame, segment: Path) -> Path | None:
    """Write the summary of the rows ``df`` that are about to become ``segment`` (durably: temp
    file, fsync, rename, fsync of the folder). A failure is logged, never raised: a segment
    without its summary is still whole (readers compute the summary from its rows)."""
    path = summary_path(segment)
    try:
        summary = summarize(df)
        atomic_write(path, lambda tmp: summary.write_parquet(tmp, compression="zstd"))
    except Exception as exc:  # the data matters, the index does not
        log.warning("%s: summary not written (%s); readers will compute it", path, exc)
        return None
    return path


def load_summary(segment: Path, rows: int | None = None) -> pl.DataFrame | None:
    """The stored summary of ``segment``, or None when it is missing, damaged, of other columns,
    or does not hold ``rows`` rows in all (it then belongs to no segment that exists now)."""
    path = summary_path(segment)
    try:
        df = pl.read_parquet(path)
    except FileNotFoundError:
        return None
    except Exception as exc:  # damaged: ignored, the rows are the truth
        log.warning("%s: damaged summary ignored: %s", path, exc)
        return None
    if tuple(df.columns) != SUMMARY_COLUMNS:
        log.warning("%s: summary of other columns ignored", path)
        return None
    if rows is not None and int(df["rows"].sum()) != rows:
        log.warning("%s: summary of %s rows, segment has %s: ignored", path, df["rows"].sum(), rows)
        return None
    return df


def summary_for(segment: Path, rows: int | None = None) -> tuple[pl.DataFrame, int]:
    """The summary of ``segment`` and how many rows were read to get it: the stored one (0 rows
    read) or, when it is missing or unusable, one computed from the segment's rows (nothing is
    written: readers never change a run folder). StoreError naming a damaged segment."""
    stored = load_summary(segment, rows)
    if stored is not None:
        return stored, 0
    from cellbench.daq.run_reader import read_segment  # run_reader imports nothing of this

    df = read_segment(segment)
    return summarize(df), df.height
