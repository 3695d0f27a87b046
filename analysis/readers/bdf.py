"""Battery Data Format tables: csv (machine- or human-readable headers) and parquet.

The canonical frames are BDF already, so these readers only check and conform. A BDF file holds
either cycling samples or impedance spectra; which one is decided by its columns.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from polars.exceptions import PanicException

from .base import Notes, ReaderError, ReadResult, decode, finish_samples, finish_spectra
from .columns import BDF, key
from .tabular import Table, check_cycles, guess_delimiter, read_mapped, resolve_times

PARQUET_MAGIC = b"PAR1"
_SPECTRA_KEYS = {key(n) for n in ("frequency_hertz", "Frequency / Hz")}
_SAMPLES_KEYS = {key(n) for n in ("voltage_volt", "Voltage / V")}


def header_kind(names: list[str]) -> str | None:
    """``"spectra"`` / ``"samples"`` when the names are BDF's, else None."""
    keys = {key(n) for n in names}
    if keys & _SPECTRA_KEYS and {key("z_real_ohm"), key("Real Impedance / Ohm")} & keys:
        return "spectra"
    time_keys = {
        key(n)
        for n in ("test_time_second", "Test Time / s", "Test Time / h", "Test Time / min",
                  "unix_time_second", "Unix Time / s")
    }  # fmt: skip
    current_keys = {key(n) for n in ("current_ampere", "Current / A")}
    if keys & _SAMPLES_KEYS and keys & time_keys and keys & current_keys:
        return "samples"
    return None


def sniff_csv(head: bytes) -> bool:
    text = decode("", head)
    for line in text.splitlines()[:5]:
        if line.strip():
            names = [n.strip().strip('"') for n in line.split(guess_delimiter(line))]
            return header_kind(names) is not None
    return False


def sniff_parquet(head: bytes) -> bool:
    return head.startswith(PARQUET_MAGIC)


def read_csv_bdf(path: str | Path) -> ReadResult:
    notes = Notes(path)
    text = decode(path, Path(path).read_bytes())
    lines = text.splitlines()
    first = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first is None:
        raise ReaderError(path, "file is empty", line=1, expected="a BDF header line")
    names = [n.strip().strip('"') for n in lines[first].split(guess_delimiter(lines[first]))]
    kind = header_kind(names)
    if kind is None:
        raise ReaderError(path, "header is not BDF", line=first + 1, expected="BDF column names")
    table = Table(first, guess_delimiter(lines[first]))
    required = (
        ("frequency_hertz", "z_real_ohm", "z_imag_ohm")
        if kind == "spectra"
        else ("voltage_volt", "current_ampere")
    )
    df, have = read_mapped(path, lines, table, BDF, kind=kind, notes=notes, required=required)
    df, start = resolve_times(df)
    df = per_cycle_totals(df, notes)
    line_of = lambda row: {"line": first + 2 + row}  # noqa: E731
    if kind == "spectra":
        frame = finish_spectra(path, df, start_unix=start, line_of=line_of)
    else:
        if "test_time_second" not in df.columns and "unix_time_second" in df.columns:
            df = df.with_columns(
                (pl.col("unix_time_second") - pl.col("unix_time_second").first()).alias(
                    "test_time_second"
                )
            )
        if "cycle_count" in df.columns:
            check_cycles(path, df["cycle_count"], have["cycle_count"], first + 2)
        frame = finish_samples(path, df, start_unix=start, line_of=line_of)
    meta = {"start_time_known": "unix_time_second" in have or start is not None}
    return ReadResult(kind, frame, "bdf-csv", meta, notes.items)


_TOTALS = (
    "charging_capacity_ampere_hour",
    "discharging_capacity_ampere_hour",
    "charging_energy_watt_hour",
    "discharging_energy_watt_hour",
)


def _scaled(rename: dict[str, str]) -> list[pl.Expr]:
    """Unit factors of the renamed parquet columns (applied pressure in Pa to MPa)."""
    out = []
    for source, target in rename.items():
        col = next((BDF[n] for n in BDF if key(n) == key(source)), None)
        if col is not None and target != "_skip" and (col.scale != 1.0 or col.offset):
            out.append((pl.col(target) * col.scale + col.offset).alias(target))
    return out


def per_cycle_totals(df: pl.DataFrame, notes: Notes) -> pl.DataFrame:
    """Capacities and energies as per-cycle running totals (the canonical frames' meaning).

    The current BDF specification's ``charging_capacity_ah`` (and its siblings) may run on over
    the whole test; where every cycle after the first starts at or above the total the one
    before it ended with, that total is taken off each cycle. Totals that restart each cycle
    stay as they are.
    """
    have = [c for c in _TOTALS if c in df.columns]
    if not have or "cycle_count" not in df.columns or df["cycle_count"].n_unique() < 2:
        return df
    converted = []
    for name in have:
        ends = df.group_by("cycle_count", maintain_order=True).agg(
            pl.col(name).first().alias("_first"), pl.col(name).last().alias("_last")
        )
        before = ends["_last"].shift(1)
        # each cycle starts at (or, sampled after its first step began, above) the total the
        # cycle before it ended with; totals that restart start near zero, below it
        runs_on = (ends["_first"] >= before - (1e-9 + 1e-6 * before.abs()))[1:]
        if runs_on.all() and (before[1:] > 0).any():
            base = ends.select("cycle_count", before.fill_null(0.0).alias("_base"))
            df = (
                df.join(base, on="cycle_count", how="left", maintain_order="left")
                .with_columns((pl.col(name) - pl.col("_base")).alias(name))
                .drop("_base")
            )
            converted.append(name)
    if converted:
        notes.warn(
            f"{', '.join(converted)} run on over the test; read as per-cycle totals (each "
            "cycle's start taken off)"
        )
    return df


def read_parquet_bdf(path: str | Path) -> ReadResult:
    notes = Notes(path)
    try:
        df = pl.read_parquet(path)
    except (Exception, PanicException) as exc:  # a damaged page can even panic polars' decoder
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReaderError(
            path, f"not a readable parquet file: {reason}", expected="parquet"
        ) from None
    kind = header_kind(df.columns)
    if kind is None:
        raise ReaderError(
            path,
            f"parquet columns {df.columns[:8]} are not BDF",
            expected="BDF column names such as test_time_second, voltage_volt, current_ampere",
        )
    rename = {c: BDF[n].target for c in df.columns for n in BDF if key(n) == key(c)}
    unknown = [c for c in df.columns if c not in rename]
    for c in unknown:
        notes.warn(f"unknown column {c!r} skipped")
    df = df.select([pl.col(c).alias(t) for c, t in rename.items() if t != "_skip"])
    df = per_cycle_totals(df.with_columns(_scaled(rename)), notes)
    line_of = lambda row: {}  # noqa: E731
    if kind == "spectra":
        frame = finish_spectra(path, df, line_of=line_of)
    else:
        if "cycle_count" in df.columns:
            check_cycles(path, df["cycle_count"].cast(pl.Int64), "cycle_count", None)
        frame = finish_samples(path, df, line_of=line_of)
    meta = {"start_time_known": "unix_time_second" in df.columns}
    return ReadResult(kind, frame, "bdf-parquet", meta, notes.items)
