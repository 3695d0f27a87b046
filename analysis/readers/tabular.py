"""Delimited text tables read through a column map (see :mod:`.columns`).

Every value is first read as text, so that a bad cell is reported with the line and the column it
sits in instead of becoming a silent null: text that is not a number, an empty required value, a
row cut short (a truncated file), NaN or infinity, and cycle numbers that skip or run backwards.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from polars.exceptions import PanicException

from cellbench.core.schema import SAMPLES, SPECTRA

from .base import Notes, ReaderError
from .columns import HELPER_TARGETS, Col, ColumnMap, key, valid_targets

UNIX_EXCEL_EPOCH_DAYS = 25569.0  # 1970-01-01 as an Excel serial day number
# Canonical columns that hold text (an empty cell is the empty name, not a missing value).
TEXT_TARGETS = {c.name for c in (*SAMPLES, *SPECTRA) if c.dtype == pl.String()}


@dataclass(frozen=True)
class Table:
    """Where a table sits in a text file: header line (0-based), delimiter, decimal comma."""

    header_line: int
    delimiter: str
    decimal_comma: bool = False
    quote: str | None = '"'
    skip_after_header: int = 0  # lines between the header and the first row (units, blanks)

    @property
    def first_line(self) -> int:
        """File line (from 1) of the first row."""
        return self.header_line + 2 + self.skip_after_header


def guess_delimiter(header: str) -> str:
    """The delimiter of a header line: tab, semicolon or comma, whichever splits it most."""
    counts = {d: header.count(d) for d in ("\t", ";", ",")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _raw_table(path: str | Path, lines: list[str], table: Table) -> pl.DataFrame:
    body = [lines[table.header_line], *lines[table.header_line + 1 + table.skip_after_header :]]
    while body and not body[-1].strip():
        body.pop()
    data = "\n".join(body).encode("utf-8")
    try:
        return pl.read_csv(
            io.BytesIO(data),
            separator=table.delimiter,
            infer_schema=False,
            truncate_ragged_lines=True,
            quote_char=table.quote,
        )
    except (pl.exceptions.PolarsError, PanicException) as exc:  # PanicException: polars bug
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReaderError(
            path, f"not a delimited table: {first}", line=table.header_line + 1
        ) from None


def _field_count(line: str, delimiter: str) -> int:
    return len(line.split(delimiter))


def _to_float(
    path: str | Path,
    s: pl.Series,
    name: str,
    table: Table,
    lines: list[str],
    n_header_fields: int,
    required: bool,
    notes: Notes,
) -> pl.Series:
    text = s.str.strip_chars()
    if table.decimal_comma:
        text = text.str.replace(",", ".", literal=True)
    empty = text.is_null() | (text == "")
    num = text.cast(pl.Float64, strict=False)
    not_number = ~empty & num.is_null()
    if not_number.any():
        row = int(not_number.arg_max())
        raise ReaderError(
            path,
            f"{s[row]!r} is not a number",
            line=table.first_line + row,
            column=name,
            expected="a number",
        )
    if required and empty.any():
        row = int(empty.arg_max())
        line_no = table.first_line + row
        raw = lines[line_no - 1] if line_no - 1 < len(lines) else ""
        have = _field_count(raw, table.delimiter)
        if have < n_header_fields:
            raise ReaderError(
                path,
                f"row has {have} of the header's {n_header_fields} fields (file truncated?)",
                line=line_no,
                column=name,
                expected="a complete row",
            )
        raise ReaderError(
            path, "empty value", line=line_no, column=name, expected="a number in every row"
        )
    nonfinite = num.is_not_null() & ~num.is_finite()
    if nonfinite.any():
        row = int(nonfinite.arg_max())
        if required:
            raise ReaderError(
                path,
                f"{s[row].strip()!r} is not a finite number",
                line=table.first_line + row,
                column=name,
                expected="a finite number",
            )
        notes.warn(
            f"column {name!r}: {int(nonfinite.sum())} non-finite value(s) from line "
            f"{table.first_line + row} read as missing"
        )
        num = num.set(nonfinite, None)
    return num


def _hms_seconds(path: str | Path, s: pl.Series, name: str, table: Table) -> pl.Series:
    """``[d-]hh:mm:ss[.f]``, Maccor's ``Nd hh:mm:ss[.f]`` (also ``mm:ss`` and plain seconds) to
    seconds; a decimal comma where the table has them."""
    t = pl.col("t").str.strip_chars()
    if table.decimal_comma:
        t = t.str.replace(",", ".", literal=True)
    day = r"^(\d+)(?:-|d\s*)"
    parts = t.str.replace(day, "").str.split(":")
    p = [parts.list.get(i, null_on_oob=True).cast(pl.Float64, strict=False) for i in range(3)]
    n = parts.list.len()
    days = t.str.extract(day, 1).cast(pl.Float64).fill_null(0.0)
    seconds = (
        pl.when(n == 3)
        .then(p[0] * 3600 + p[1] * 60 + p[2])
        .when(n == 2)
        .then(p[0] * 60 + p[1])
        .when(n == 1)
        .then(p[0])
        + days * 86400.0
    )
    out = pl.DataFrame({"t": s}).select(seconds.alias(name)).to_series()
    bad = out.is_null() & s.is_not_null()
    if bad.any():
        row = int(bad.arg_max())
        raise ReaderError(
            path,
            f"{s[row]!r} is not an elapsed time",
            line=table.first_line + row,
            column=name,
            expected="hh:mm:ss",
        )
    return out


DATETIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y/%m/%d %H:%M:%S%.f",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %H:%M:%S%.f",
    "%d.%m.%Y %H:%M:%S%.f",
)
DATE_FORMATS = ("%m/%d/%Y", "%Y-%m-%d", "%d.%m.%Y")


def parse_datetimes(path: str | Path, s: pl.Series, name: str, line0: int) -> pl.Series:
    """Date-time strings to unix seconds (UTC); the first format that reads every value wins.

    ``line0`` is the file line (1-based) of the first value, for the error message.
    """
    text = s.str.strip_chars()
    # A spreadsheet stores a date as its serial day number: accept those when every value is one.
    days = text.cast(pl.Float64, strict=False)
    numeric = days.null_count() == text.null_count() and len(days.drop_nulls()) > 0
    if numeric and days.min() > 20000 and days.max() < 80000:  # 1954 .. 2119
        return (days - UNIX_EXCEL_EPOCH_DAYS) * 86400.0
    first_bad = 0
    for fmt in DATETIME_FORMATS:
        dt = text.str.strptime(pl.Datetime("us"), fmt, strict=False)
        bad = dt.is_null() & text.is_not_null()
        if not bad.any():
            return dt.dt.epoch("us").cast(pl.Float64) / 1e6
        first_bad = max(first_bad, int(bad.arg_max()))
    for fmt in DATE_FORMATS:  # a date alone (some exports stamp rows with the day only): midnight
        day = text.str.strptime(pl.Date, fmt, strict=False)
        bad = day.is_null() & text.is_not_null()
        if not bad.any():
            return day.cast(pl.Datetime("us")).dt.epoch("us").cast(pl.Float64) / 1e6
        first_bad = max(first_bad, int(bad.arg_max()))
    raise ReaderError(
        path,
        f"{s[first_bad]!r} is not a date and time in a known layout",
        line=line0 + first_bad,
        column=name,
        expected="e.g. 2022-05-18 16:27:52 or 5/11/2021 3:40:24 PM",
    )


def match_columns(
    path: str | Path,
    header: list[str],
    cmap: ColumnMap,
    kind: str,
    notes: Notes,
    header_line: int,
) -> dict[str, tuple[str, Col]]:
    """Map each header name to its (vendor name, Col); warn about unknown non-empty names."""
    lookup = {key(name): (name, col) for name, col in cmap.items()}
    targets = valid_targets(kind)
    other_targets = valid_targets("spectra" if kind == "samples" else "samples") - targets
    out: dict[str, tuple[str, Col]] = {}
    taken: dict[str, str] = {}
    for name in header:
        k = key(name)
        if not k or k.startswith("_duplicated_") or k.startswith("column_"):
            continue
        if k not in lookup:
            notes.warn(f"line {header_line + 1}: unknown column {name!r} skipped")
            continue
        col = lookup[k][1]
        if col.target in other_targets:
            continue  # a column of the other table (e.g. Z' in a cycling export): not ours
        if col.target not in targets:
            raise ReaderError(
                path,
                f"column map sends {name!r} to {col.target!r}, which is not a {kind} column",
                expected=f"one of {sorted(targets)}",
            )
        if col.target == "_skip":
            continue
        if col.target in taken:
            notes.warn(
                f"line {header_line + 1}: column {name!r} also maps to {col.target}; "
                f"using {taken[col.target]!r}"
            )
            continue
        taken[col.target] = name
        out[name] = (name, col)
    return out


def read_mapped(
    path: str | Path,
    lines: list[str],
    table: Table,
    cmap: ColumnMap,
    *,
    kind: str,
    notes: Notes,
    required: tuple[str, ...],
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Read the table under ``table`` through ``cmap``.

    Returns the frame of canonical (and helper-converted) columns and the map ``target -> vendor
    name`` used, so readers can cite the vendor's column in later errors. ``required`` lists the
    targets that must be present (a helper like ``_datetime`` may stand in for a time column;
    the caller checks those combinations).
    """
    raw = _raw_table(path, lines, table)
    header = [str(c) for c in raw.columns]
    n_fields = len(lines[table.header_line].split(table.delimiter))
    matched = match_columns(path, header, cmap, kind, notes, table.header_line)
    have = {col.target: name for name, (_, col) in matched.items()}
    missing = [t for t in required if t not in have]
    if missing:
        accepted = {t: sorted(n for n, c in cmap.items() if c.target == t) for t in missing}
        raise ReaderError(
            path,
            f"no column for {', '.join(missing)}",
            line=table.header_line + 1,
            expected="a header naming " + "; ".join(f"{t}: {v}" for t, v in accepted.items()),
        )
    cols: dict[str, pl.Series] = {}
    for name, (_, col) in matched.items():
        s = raw[name]
        if col.target in TEXT_TARGETS:
            val = s.str.strip_chars().fill_null("")
        elif col.target == "_mode":
            val = s.str.strip_chars()
        elif col.target == "_datetime":
            val = parse_datetimes(path, s, name, table.first_line)
        elif col.target == "_hms":
            val = _hms_seconds(path, s, name, table) * col.scale + col.offset
        else:
            num = _to_float(path, s, name, table, lines, n_fields, col.target in required, notes)
            val = num * col.scale + col.offset if (col.scale != 1.0 or col.offset) else num
            if col.target == "_excel_days":
                val = _excel_or_unix(path, val, name, table, notes)
        cols[col.target] = val.alias(col.target)
    return pl.DataFrame(list(cols.values())), have


EXCEL_DAYS = (20000.0, 80000.0)  # spreadsheet day numbers of 1954 .. 2119
UNIX_SECONDS = (3e8, 7.3e9)  # 1979 .. 2201


def _excel_or_unix(
    path: str | Path, val: pl.Series, name: str, table: Table, notes: Notes
) -> pl.Series:
    """A date column as unix seconds: spreadsheet day numbers, or (some Arbin exports) unix
    seconds already; anything else is an error naming the file, line and column."""
    found = val.drop_nulls()
    if found.len() == 0:
        return (val - UNIX_EXCEL_EPOCH_DAYS) * 86400.0
    lo, hi = float(found.min()), float(found.max())
    if EXCEL_DAYS[0] <= lo and hi <= EXCEL_DAYS[1]:
        return (val - UNIX_EXCEL_EPOCH_DAYS) * 86400.0
    if UNIX_SECONDS[0] <= lo and hi <= UNIX_SECONDS[1]:
        notes.warn(f"column {name!r} holds unix seconds, not spreadsheet day numbers; read so")
        return val
    inside = val.is_between(*EXCEL_DAYS) | val.is_between(*UNIX_SECONDS) | val.is_null()
    bad = ~inside if (~inside).any() else val.is_between(*UNIX_SECONDS)
    row = int(bad.arg_max())
    raise ReaderError(
        path,
        f"{val[row]!r} is neither a spreadsheet day number nor unix seconds of 1979-2200 "
        f"(or the column mixes them)",
        line=table.first_line + row,
        column=name,
        expected="day numbers 20000-80000 (1954-2119) or unix seconds throughout",
    )


def resolve_times(df: pl.DataFrame) -> tuple[pl.DataFrame, float | None]:
    """Turn helper time columns into ``test_time_second`` / ``unix_time_second``.

    With both an elapsed time and a wall-clock column the wall clock fixes only the start (vendor
    date stamps are often rounded to a second or coarser), so unix time stays as smooth as the
    elapsed time. Returns the frame and the start time (unix s) or None if the file has none.
    """
    clock = None
    for helper in ("_datetime", "_excel_days"):
        if helper in df.columns:
            clock = df[helper]
            df = df.drop(helper)
            break
    if "_hms" in df.columns:
        if "test_time_second" not in df.columns:
            df = df.rename({"_hms": "test_time_second"})
        else:
            df = df.drop("_hms")
    start = None
    if clock is not None and len(clock):
        if "test_time_second" in df.columns:
            start = float(clock[0] - df["test_time_second"][0])
        else:
            start = float(clock[0])
            df = df.with_columns((clock - start).alias("test_time_second"))
    return df, start


def check_cycles(
    path: str | Path, cycles: pl.Series, column: str, first_line: int | None, *, offset=None
) -> None:
    """Cycle numbers must never run backwards nor skip one (a cycle missing from the file)."""
    if len(cycles) < 2:
        return
    diff = cycles.diff().fill_null(0)
    back = diff < 0
    jump = diff > 1
    for mask, what in ((back, "runs backwards"), (jump, "skips")):
        if mask.any():
            row = int(mask.arg_max())
            prev, now = int(cycles[row - 1]), int(cycles[row])
            missing = f" (cycle {prev + 1} missing)" if what == "skips" else ""
            raise ReaderError(
                path,
                f"cycle number {what} from {prev} to {now}{missing}",
                line=None if first_line is None else first_line + row,
                column=column,
                expected="cycle numbers that rise by one",
            )


def line_locator(table: Table):
    """Row index -> error location keywords for a table read by :func:`read_mapped`."""
    return lambda row: {"line": table.first_line + row}


__all__ = [
    "HELPER_TARGETS",
    "Table",
    "check_cycles",
    "guess_delimiter",
    "line_locator",
    "match_columns",
    "parse_datetimes",
    "read_mapped",
    "resolve_times",
]
