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
from cellbench.core.schema import conform

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
    for name in names:
        if name not in df.columns:
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


def _check_counters(path: str | Path, df: pl.DataFrame, line_of: Locator) -> None:
    """Counters (cycle, step, sweep) must be whole numbers that fit the model's Int32."""
    for name in ("cycle_count", "step_count", "step_index", "sweep_index"):
        if name not in df.columns:
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


def capacities_per_cycle(df: pl.DataFrame) -> pl.DataFrame:
    """Add the per-cycle running charging/discharging capacities (Ah) unless the file gave them.

    From ``_dq`` (charge since the previous record, signed, Ah) where the vendor writes it, else by
    integrating ``current_ampere`` over ``test_time_second`` by the trapezoid rule. Each total
    restarts at every cycle.
    """
    if "charging_capacity_ampere_hour" in df.columns:
        return df.drop("_dq", strict=False)
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
    exprs: list[pl.Expr] = []
    if "channel" not in df.columns:
        exprs.append(pl.lit("").alias("channel"))
    if "unix_time_second" not in df.columns:
        exprs.append((pl.col("test_time_second") + (start_unix or 0.0)).alias("unix_time_second"))
    if "cycle_count" not in df.columns:
        exprs.append(pl.lit(1, pl.Int32).alias("cycle_count"))
    if "step_index" not in df.columns:
        exprs.append(pl.lit(0, pl.Int32).alias("step_index"))
    if exprs:
        df = df.with_columns(exprs)
    _check_counters(path, df, line_of)
    if "step_count" not in df.columns:
        df = df.with_columns(
            step_count_from(pl.col("step_index"), pl.col("cycle_count")).alias("step_count")
        )
    _check_finite(
        path,
        df,
        ["test_time_second", "unix_time_second", "voltage_volt", "current_ampere"],
        line_of,
    )
    return conform("samples", df)


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
