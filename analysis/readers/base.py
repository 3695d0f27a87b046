"""What every reader shares: the error and result types, warnings, and the last step that turns a
reader's columns into a canonical ``samples`` or ``spectra`` frame.

Readers build a frame with whatever canonical columns their file carries (already in canonical
units and sign) and hand it to :func:`finish_samples` / :func:`finish_spectra`, which fill the
columns the file cannot carry, check that every required value is finite, and conform dtypes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellbench.core.errors import CellbenchError
from cellbench.core.schema import SAMPLES, SPECTRA, conform, validate_frame

KINDS = ("samples", "spectra")
# Row index -> where that row is in the file, as ReaderError keywords ({"line": 12}).
Locator = Callable[[int], dict[str, Any]]


class ReaderError(CellbenchError, ValueError):
    """A vendor file cannot be read as what it claims to be.

    The message names the file, where the problem is (byte ``offset``, ``line`` from 1, ``column``)
    and what was expected there, so the user can open the file and see it.
    """

    def __init__(
        self,
        path: str | Path,
        problem: str,
        *,
        offset: int | None = None,
        line: int | None = None,
        column: str | None = None,
        expected: str | None = None,
    ):
        self.path = str(path)
        self.problem = problem
        self.offset = offset
        self.line = line
        self.column = column
        self.expected = expected
        where = []
        if offset is not None:
            where.append(f"byte offset {offset}")
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        text = f"{self.path}: " + (", ".join(where) + ": " if where else "") + problem
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)


class ReaderWarning(UserWarning):
    """Something in a vendor file was skipped (an unknown optional column, a partial record)."""


@dataclass
class ReadResult:
    """One file read into canonical form.

    ``kind`` is ``"samples"`` (cycling time series) or ``"spectra"`` (impedance); ``frame``
    holds the canonical columns of that table; ``format`` the detected format name; ``metadata``
    what the file says about itself (start time, instrument, technique ...); ``warnings``
    everything skipped.
    """

    kind: str
    frame: pl.DataFrame
    format: str
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class Notes:
    """Collects the warnings of one read: each is issued with :func:`warnings.warn` and kept."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.items: list[str] = []

    def warn(self, message: str) -> None:
        text = f"{self.path}: {message}"
        if text in self.items:
            return
        self.items.append(text)
        warnings.warn(text, ReaderWarning, stacklevel=3)


def _check_finite(path: str | Path, df: pl.DataFrame, names: list[str], line_of: Locator) -> None:
    """Raise on the first non-finite or null value of the float columns ``names``.

    ``line_of(row)`` maps a row index to a location keyword dict for the error (line or offset).
    """
    present = [n for n in names if n in df.columns]

    def bad_of(name: str) -> pl.Expr:
        c = pl.col(name)
        return (c.is_null() | ~c.is_finite()) if df.schema[name].is_float() else c.is_null()

    # one pass over all columns; the row is looked up only where something is wrong
    flags = df.select(bad_of(n).any().alias(n) for n in present).row(0) if present else ()
    for name, flagged in zip(present, flags, strict=True):
        if not flagged:
            continue
        s = df[name]
        bad = (s.is_null() | ~s.is_finite()) if s.dtype.is_float() else s.is_null()
        if bad.any():
            row = int(bad.arg_max())
            value = s[row]
            raise ReaderError(
                path,
                f"value {value!r} in {name} is not a finite number",
                expected="a finite number in every row",
                **line_of(row),
            )


INT32 = (-(2**31), 2**31 - 1)
COUNTERS = ("cycle_count", "step_count", "step_index", "sweep_index")


def _counter_bad(df: pl.DataFrame, name: str) -> pl.Expr:
    c = pl.col(name)
    bad = c.is_null() | (c < INT32[0]) | (c > INT32[1])
    if df.schema[name].is_float():
        bad = bad | ~c.is_finite() | (c != c.round(0))
    return bad.fill_null(True)


def _int32_bad(s: pl.Series) -> bool:
    """A counter column with a missing, fractional or out-of-Int32 value."""
    if s.null_count():
        return True
    if len(s) == 0:
        return False
    if s.dtype.is_integer():
        return bool(s.min() < INT32[0] or s.max() > INT32[1])
    a = s.to_numpy()
    if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
        return True
    return bool(a.min() < INT32[0] or a.max() > INT32[1])


def _finite_bad(s: pl.Series) -> bool:
    return bool(s.null_count()) or (s.dtype.is_float() and not np.all(np.isfinite(s.to_numpy())))


def _flags(df: pl.DataFrame, finite: list[str]) -> tuple[bool, ...]:
    """Is any counter no whole Int32 number, any of ``finite`` missing or not finite? (Series
    kernels and numpy, no query plan: this runs on every read; the checks that then find the
    row run only where a flag is up.)"""
    schema = df.schema
    counters = [
        _int32_bad(df[n])
        for n in COUNTERS
        if n in schema and (schema[n].is_integer() or schema[n].is_float())
    ]
    return (*counters, *(_finite_bad(df[n]) for n in finite if n in df.columns))


def _check_counters(path: str | Path, df: pl.DataFrame, line_of: Locator) -> None:
    """Counters (cycle, step, sweep) must be whole numbers that fit the model's Int32."""
    present = [
        n
        for n in COUNTERS
        if n in df.columns and (df.schema[n].is_float() or df.schema[n].is_integer())
    ]
    flags = df.select(_counter_bad(df, n).any() for n in present).row(0) if present else ()
    for name, flagged in zip(present, flags, strict=True):
        if not flagged:
            continue
        s = df[name]
        if s.dtype.is_float():
            bad = s.is_null() | ~s.is_finite() | (s != s.round(0))
            bad = bad | (s < INT32[0]) | (s > INT32[1])
        elif s.dtype.is_integer():
            bad = s.is_null() | (s < INT32[0]) | (s > INT32[1])
        else:
            continue
        bad = bad.fill_null(True)
        if bad.any():
            row = int(bad.arg_max())
            raise ReaderError(
                path,
                f"{name} value {s[row]!r} is not a counter",
                expected=f"a whole number within {INT32[0]}..{INT32[1]}",
                **line_of(row),
            )


def step_count_from(step_index: pl.Expr, cycle: pl.Expr | None = None) -> pl.Expr:
    """Running count of steps from 1: a new step wherever the step index (or cycle) changes."""
    changed = step_index != step_index.shift(1)
    if cycle is not None:
        changed = changed | (cycle != cycle.shift(1))
    return changed.fill_null(True).cast(pl.Int32).cum_sum().cast(pl.Int32)


def cycle_capacities(dq: np.ndarray, cycle: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-cycle running charging and discharging capacities (Ah) from the signed charge of
    each record (Ah), for cycles that follow one another (``cycle`` non-decreasing or None)."""
    n = dq.size
    starts = np.r_[0, np.flatnonzero(np.diff(cycle)) + 1] if cycle is not None and n else [0]
    lengths = np.diff(np.r_[starts, n])

    def per_cycle(x: np.ndarray) -> np.ndarray:
        total = np.cumsum(x)
        return total - np.repeat(total[starts] - x[starts], lengths) if n else total

    return per_cycle(np.maximum(dq, 0.0)), per_cycle(np.maximum(-dq, 0.0))


def _capacities_numpy(df: pl.DataFrame) -> pl.DataFrame | None:
    """:func:`capacities_per_cycle` for the usual frame whose cycles follow one another (the
    same sums, without polars' window machinery); None where cycles interleave or values miss."""
    cycle = df["cycle_count"].to_numpy() if "cycle_count" in df.columns else None
    if cycle is not None and (df["cycle_count"].null_count() or np.any(np.diff(cycle) < 0)):
        return None
    if "_dq" in df.columns:
        dq = df["_dq"].fill_null(0.0).cast(pl.Float64).to_numpy()
    else:
        if df["test_time_second"].null_count() or df["current_ampere"].null_count():
            return None
        t = df["test_time_second"].cast(pl.Float64).to_numpy()
        i = df["current_ampere"].cast(pl.Float64).to_numpy()
        dq = np.zeros(t.size)
        dq[1:] = 0.5 * (i[1:] + i[:-1]) * np.maximum(np.diff(t), 0.0) / 3600.0
    charge, discharge = cycle_capacities(dq, cycle)
    return df.with_columns(
        pl.Series("charging_capacity_ampere_hour", charge),
        pl.Series("discharging_capacity_ampere_hour", discharge),
    ).drop("_dq", strict=False)


def capacities_per_cycle(df: pl.DataFrame) -> pl.DataFrame:
    """Add the per-cycle running charging/discharging capacities (Ah) unless the file gave them.

    From ``_dq`` (charge since the previous record, signed, Ah) where the vendor writes it, else by
    integrating ``current_ampere`` over ``test_time_second`` by the trapezoid rule. Each total
    restarts at every cycle.
    """
    if "charging_capacity_ampere_hour" in df.columns:
        return df.drop("_dq", strict=False)
    fast = _capacities_numpy(df)
    if fast is not None:
        return fast
    if "_dq" in df.columns:
        dq = pl.col("_dq").fill_null(0.0)
    else:
        dt = pl.col("test_time_second").diff().fill_null(0.0).clip(lower_bound=0.0)
        i = pl.col("current_ampere")
        dq = (0.5 * (i + i.shift(1).fill_null(i))) * dt / 3600.0
    cycle = pl.col("cycle_count") if "cycle_count" in df.columns else pl.lit(1)
    return df.with_columns(
        dq.clip(lower_bound=0.0).cum_sum().over(cycle).alias("charging_capacity_ampere_hour"),
        (-dq).clip(lower_bound=0.0).cum_sum().over(cycle).alias("discharging_capacity_ampere_hour"),
    ).drop("_dq", strict=False)


def finish_samples(
    path: str | Path,
    df: pl.DataFrame,
    *,
    start_unix: float | None = None,
    line_of: Locator | None = None,
) -> pl.DataFrame:
    """Canonical ``samples`` frame from a reader's columns (canonical units and sign already).

    Needs ``test_time_second``, ``voltage_volt`` and ``current_ampere``. ``unix_time_second`` is
    ``start_unix + test_time_second`` when the file gives only a start time (or none: then
    ``start_unix`` is 0.0 and the caller records that in metadata). Cycle defaults to 1 and step
    index to 0; step count is derived from the step index.
    """
    line_of = line_of or (lambda row: {})
    for name in ("test_time_second", "voltage_volt", "current_ampere"):
        if name not in df.columns:
            raise ReaderError(
                path, f"no {name} could be derived", expected="time, voltage and current"
            )
    if start_unix is not None and not np.isfinite(start_unix):
        raise ReaderError(path, f"start time {start_unix!r} is not a finite number")
    # The checks in one pass; each raises with the row only where its flag is up.
    finite = ["test_time_second", "unix_time_second", "voltage_volt", "current_ampere"]
    if any(_flags(df, finite)):
        _check_counters(path, df, line_of)
        _check_finite(path, df, finite, line_of)
    n = df.height
    columns = dict(zip(df.columns, df.get_columns(), strict=True))
    if "channel" not in columns:
        columns["channel"] = pl.Series("channel", [""] if n else [], dtype=pl.String)
        if n > 1:
            columns["channel"] = columns["channel"].extend_constant("", n - 1)
    if "unix_time_second" not in columns:
        columns["unix_time_second"] = columns["test_time_second"] + (start_unix or 0.0)
    if "cycle_count" not in columns:
        columns["cycle_count"] = pl.Series("cycle_count", np.ones(n, dtype=np.int32))
    if "step_index" not in columns:
        columns["step_index"] = pl.Series("step_index", np.zeros(n, dtype=np.int32))
    if "step_count" not in columns:
        step = columns["step_index"].to_numpy()
        cycle = columns["cycle_count"].to_numpy()
        new = np.ones(n, dtype=bool)
        new[1:] = (step[1:] != step[:-1]) | (cycle[1:] != cycle[:-1])
        columns["step_count"] = pl.Series(np.cumsum(new, dtype=np.int32))
    return _conformed(columns, "samples")


def _conformed(columns: dict[str, pl.Series], table: str) -> pl.DataFrame:
    """:func:`cellbench.core.schema.conform` with Series casts (no query plan): the model's
    columns first in its order and dtypes, then the vendor's extras."""
    cols = SAMPLES if table == "samples" else SPECTRA
    known = {c.name for c in cols}
    series = [
        columns[c.name].cast(c.dtype, strict=False).alias(c.name) for c in cols if c.name in columns
    ]
    extra = [s.alias(name) for name, s in columns.items() if name not in known]
    out = pl.DataFrame([*series, *extra])
    schema = out.schema  # once: each DataFrame.schema access builds it anew
    if any(
        (c.name in schema and schema[c.name] != c.dtype)
        or (c.required and (c.name not in schema or out[c.name].null_count()))
        for c in cols
    ):
        validate_frame(table, out)  # raises, listing every problem
    return out


def finish_spectra(
    path: str | Path,
    df: pl.DataFrame,
    *,
    start_unix: float | None = None,
    line_of: Locator | None = None,
) -> pl.DataFrame:
    """Canonical ``spectra`` frame from a reader's columns (Hz, ohm, Z'' negative when capacitive).

    Time defaults to 0.0 s for files that do not carry it; sweep index to 0.
    """
    line_of = line_of or (lambda row: {})
    for name in ("frequency_hertz", "z_real_ohm", "z_imag_ohm"):
        if name not in df.columns:
            raise ReaderError(path, f"no {name} could be derived", expected="frequency, Z', Z''")
    exprs: list[pl.Expr] = []
    if "channel" not in df.columns:
        exprs.append(pl.lit("").alias("channel"))
    if "sweep_index" not in df.columns:
        exprs.append(pl.lit(0, pl.Int32).alias("sweep_index"))
    if "test_time_second" not in df.columns:
        exprs.append(pl.lit(0.0).alias("test_time_second"))
    if exprs:
        df = df.with_columns(exprs)
    if "unix_time_second" not in df.columns:
        df = df.with_columns(
            (pl.col("test_time_second") + (start_unix or 0.0)).alias("unix_time_second")
        )
    _check_counters(path, df, line_of)
    _check_finite(
        path,
        df,
        ["frequency_hertz", "z_real_ohm", "z_imag_ohm", "test_time_second", "unix_time_second"],
        line_of,
    )
    return conform("spectra", df)


def read_head(path: str | Path, n: int = 65536) -> bytes:
    """The first ``n`` bytes of a file (for format detection)."""
    with open(path, "rb") as fh:
        return fh.read(n)


def read_bytes(path: str | Path) -> bytes:
    """The whole file; a file that cannot be read is a :class:`ReaderError` naming it."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ReaderError(path, f"cannot read the file: {exc}") from None


def decode(path: str | Path, data: bytes) -> str:
    """Text of a vendor export: UTF-8 (with or without BOM), else Latin-1 (EC-Lab, Gamry on
    Windows write the code page; Latin-1 never fails and keeps the ASCII numbers intact)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def sweep_numbers(freq: np.ndarray, *counters: np.ndarray | None) -> np.ndarray:
    """Sweep of every impedance point (from 0): from the first of ``counters`` (the file's sweep
    or cycle counter) that changes, else from the frequencies: a sweep runs one way (down, as a
    rule) and the next starts where the frequency steps back the other way."""
    for counter in counters:
        if counter is not None and counter.size and np.any(counter[1:] != counter[:-1]):
            return np.cumsum(np.r_[False, counter[1:] != counter[:-1]]).astype(np.int64)
    freq = np.asarray(freq, dtype=np.float64)
    if freq.size < 3:
        return np.zeros(freq.size, dtype=np.int64)
    step = np.sign(np.diff(freq))
    way = np.sign(np.sum(step)) or -1.0
    return np.cumsum(np.r_[False, step == -way]).astype(np.int64)


def steps_to_cycle_totals(
    values: np.ndarray, step_count: np.ndarray, cycle: np.ndarray
) -> np.ndarray:
    """Per-step running totals (restarting at every step) to per-cycle ones: each step adds to
    what the cycle's earlier steps ended with. Rows run in step order (``step_count`` rises)."""
    n = values.size
    if n == 0:
        return values.astype(np.float64)
    last = np.r_[np.flatnonzero(step_count[1:] != step_count[:-1]), n - 1]
    ends = values[last].astype(np.float64)
    cyc = cycle[last]
    total = np.cumsum(ends)
    first = np.r_[True, cyc[1:] != cyc[:-1]]
    opening = np.maximum.accumulate(np.where(first, np.arange(last.size), 0))
    before = total - ends - (total[opening] - ends[opening])
    return values + np.repeat(before, np.diff(np.r_[-1, last]))
