"""Cycler text exports and the Arbin database: Neware csv, Arbin csv and .res, Maccor text.

Each is a table read through its column map (:mod:`.columns`) plus what the vendor does its own
way: Maccor writes current without sign (the mode column C/D gives it) and the test time in a unit
its header does not name; Neware and Maccor count capacity per step, which becomes the per-cycle
running totals of the data model; Arbin's .res is a Microsoft Access database, read with
``mdb-export`` from mdbtools.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
from polars.exceptions import PanicException

from .base import (
    Notes,
    ReaderError,
    ReadResult,
    capacities_per_cycle,
    decode,
    step_count_from,
)
from .columns import ARBIN, MACCOR, NEWARE_CSV, Col, key
from .generic import read_csv
from .tabular import guess_delimiter

JET_MAGIC = b"\x00\x01\x00\x00Standard Jet DB"
ACE_MAGIC = b"\x00\x01\x00\x00Standard ACE DB"
MDB_EXPORT = "mdb-export"
ARBIN_TABLE = "Channel_Normal_Table"
MDB_TIMEOUT_SECOND = 600  # a large .res exports in seconds; a hung mdb-export is stopped


def _header_names(head: bytes, max_lines: int = 40) -> list[list[str]]:
    out = []
    for line in decode("", head).splitlines()[:max_lines]:
        d = guess_delimiter(line)
        out.append([key(n.strip('"')) for n in line.split(d)])
    return out


def _has(head: bytes, names: tuple[str, ...]) -> bool:
    want = {key(n) for n in names}
    return any(want <= set(row) for row in _header_names(head))


# ------------------------------------------------------------------------------------ helpers


def step_to_cycle_capacity(df: pl.DataFrame, source: str, target: str) -> pl.DataFrame:
    """Per-step running capacity ``source`` (restarting at every step) to the per-cycle running
    total ``target``: each step adds to what the cycle's earlier steps ended with."""
    if "step_count" not in df.columns:
        df = df.with_columns(
            step_count_from(pl.col("step_index"), pl.col("cycle_count")).alias("step_count")
        )
    ends = (
        df.group_by("step_count", maintain_order=True)
        .agg(pl.col("cycle_count").first(), pl.col(source).last().alias("_end"))
        .with_columns(
            (pl.col("_end").cum_sum().over("cycle_count") - pl.col("_end")).alias("_before")
        )
        .select("step_count", "_before")
    )
    return (
        df.join(ends, on="step_count", how="left", maintain_order="left")
        .with_columns((pl.col(source) + pl.col("_before")).alias(target))
        .drop("_before")
    )


# ---------------------------------------------------------------------------------- Neware csv


def sniff_neware_csv(head: bytes) -> bool:
    return _has(head, ("Cycle Index", "Step Index", "Step Type")) and (
        _has(head, ("Chg. Cap.(Ah)",)) or _has(head, ("Chg. Cap.(mAh)",))
    )


def _neware_post(df: pl.DataFrame, notes: Notes) -> pl.DataFrame:
    df = df.with_columns(
        step_count_from(pl.col("step_index"), pl.col("cycle_count")).alias("step_count")
    )
    for name in ("charging_capacity_ampere_hour", "discharging_capacity_ampere_hour"):
        if name in df.columns:
            df = step_to_cycle_capacity(df.rename({name: "_step"}), "_step", name).drop("_step")
    for name in ("charging_energy_watt_hour", "discharging_energy_watt_hour"):
        if name in df.columns:
            df = step_to_cycle_capacity(df.rename({name: "_step"}), "_step", name).drop("_step")
    return df


def read_neware_csv(path: str | Path) -> ReadResult:
    """BTSDA csv export: one row per record, capacities per step, current signed."""
    return read_csv(
        path,
        NEWARE_CSV,
        format_name="neware-csv",
        postprocess=_neware_post,
        metadata={"instrument": "Neware"},
    )


# ----------------------------------------------------------------------------------- Arbin


def sniff_arbin_csv(head: bytes) -> bool:
    return (
        _has(head, ("Data_Point", "Cycle_Index", "Step_Index"))
        or _has(head, ("Cycle_Index", "Step_Index", "Test_Time(s)"))
        or _has(head, ("Data_Point", "Test_Time(s)", "Current(A)", "Voltage(V)"))
    )


def _arbin_post(df: pl.DataFrame, notes: Notes) -> pl.DataFrame:
    """An export without cycle and step columns: steps and cycles from the current (see
    :mod:`cellbench.analysis.segment`), capacities integrated over the derived cycles (the
    file's running totals do not restart with them), both said in a warning."""
    if "cycle_count" in df.columns or "step_index" in df.columns:
        return df
    from cellbench.analysis.segment import segment  # analysis-level; imported on use

    counters = [c for c in df.columns if c.endswith(("_ampere_hour", "_watt_hour"))]
    notes.warn(
        "no Cycle_Index or Step_Index column: steps and cycles derived from the current "
        "(a cycle starts at the first charge after a discharge); capacities integrated over "
        "those cycles" + (f" instead of the file's {', '.join(counters)}" if counters else "")
    )
    segmented = segment(df.drop(counters)).drop("step_type")
    return capacities_per_cycle(segmented)


def read_arbin_csv(path: str | Path) -> ReadResult:
    """MITS Pro csv export; Charge_/Discharge_Capacity already run over the cycle."""
    return read_csv(
        path,
        ARBIN,
        format_name="arbin-csv",
        metadata={"instrument": "Arbin"},
        postprocess=_arbin_post,
    )


def sniff_access(head: bytes) -> bool:
    return head.startswith(JET_MAGIC) or head.startswith(ACE_MAGIC)


def mdb_export(path: str | Path, table: str) -> str:
    """A table of an Access database as csv text, through mdbtools' ``mdb-export``."""
    exe = shutil.which(MDB_EXPORT)
    if exe is None:
        raise ReaderError(
            path,
            "reading an Arbin .res (Microsoft Access) file needs 'mdb-export' from mdbtools, "
            "which is not on PATH",
            expected="mdbtools installed (apt install mdbtools, brew install mdbtools)",
        )
    try:
        run = subprocess.run(
            [exe, "-D", "%Y-%m-%d %H:%M:%S", str(path), table],
            capture_output=True,
            timeout=MDB_TIMEOUT_SECOND,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReaderError(path, f"mdb-export failed: {exc}") from None
    if run.returncode != 0:
        msg = run.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ReaderError(
            path,
            f"mdb-export could not read table {table}: {msg[-1] if msg else run.returncode}",
            expected=f"an Arbin .res database with a {table} table",
        )
    return run.stdout.decode("utf-8", "replace")


def in_data_point_order(path: str | Path, text: str, notes: Notes) -> str:
    """An exported Arbin table with its rows in ``Data_Point`` order (within each test):
    ``mdb-export`` returns them in the database's storage order, which is not always that."""
    try:
        table = pl.read_csv(io.BytesIO(text.encode("utf-8")), infer_schema=False)
    except (pl.exceptions.PolarsError, PanicException):
        return text  # read_csv names the problem with its line
    if "Data_Point" not in table.columns:
        return text
    keys = [c for c in ("Test_ID", "Data_Point") if c in table.columns]
    order = table.select(pl.col(k).cast(pl.Int64, strict=False) for k in keys)
    if any(order[k].null_count() for k in keys):
        return text
    if order.equals(order.sort(keys, maintain_order=True)):
        return text
    notes.warn("records were not in Data_Point order in the database; sorted by Data_Point")
    rows = order.with_row_index("_row").sort(keys, maintain_order=True)["_row"]
    return table[rows].write_csv()


def read_arbin_res(path: str | Path) -> ReadResult:
    """Arbin .res: ``Channel_Normal_Table`` for the records, ``Global_Table`` for the test."""
    notes = Notes(path)
    text = mdb_export(path, ARBIN_TABLE)
    if not text.strip():
        raise ReaderError(path, f"{ARBIN_TABLE} is empty", expected="data records")
    meta: dict = {"instrument": "Arbin", "table": ARBIN_TABLE}
    try:
        glob = pl.read_csv(mdb_export(path, "Global_Table").encode(), infer_schema=False)
        if glob.height:
            row = glob.row(0, named=True)
            for k in ("Test_Name", "Schedule_File_Name", "Start_DateTime", "MASS", "Capacity"):
                if row.get(k) is not None:
                    meta[k] = row[k]
            if glob.height > 1:
                notes.warn(f"Global_Table lists {glob.height} tests; all records are read")
    except (ReaderError, pl.exceptions.PolarsError, PanicException) as exc:
        notes.warn(f"Global_Table not read: {exc}")
    # The exported table goes through the same checks as the csv exports; line numbers in
    # errors count the table's rows (line 2 = first record).
    meta["line_numbers"] = f"rows of {ARBIN_TABLE} as exported by mdb-export"
    text = in_data_point_order(path, text, notes)
    return read_csv(
        path,
        ARBIN,
        header_line=0,
        delimiter=",",
        format_name="arbin-res",
        notes=notes,
        metadata=meta,
        text=text,
    )


# ----------------------------------------------------------------------------------- Maccor


def sniff_maccor(head: bytes) -> bool:
    return _has(head, ("Rec", "Cycle C", "Step", "TestTime")) or _has(
        head, ("Rec#", "Cyc#", "Step", "Amp-hr")
    )


_TIME_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0}


def _maccor_post(df: pl.DataFrame, notes: Notes) -> pl.DataFrame:
    if "_mode" not in df.columns:
        raise ReaderError("", "no mode column (Md/State)", expected="C/D/R codes")
    mode = pl.col("_mode").str.to_uppercase()
    sign = pl.when(mode.str.starts_with("D")).then(-1.0).otherwise(1.0)
    df = df.with_columns(
        (pl.col("current_ampere").abs() * sign).alias("current_ampere"),
        (pl.col("step_capacity_ampere_hour").abs() * sign).alias("step_capacity_ampere_hour"),
        step_count_from(pl.col("step_index"), pl.col("cycle_count")).alias("step_count"),
    )
    charge = pl.when(mode.str.starts_with("C")).then(pl.col("step_capacity_ampere_hour").abs())
    discharge = pl.when(mode.str.starts_with("D")).then(pl.col("step_capacity_ampere_hour").abs())
    df = df.with_columns(
        charge.otherwise(0.0).alias("_chg"), discharge.otherwise(0.0).alias("_dchg")
    )
    df = step_to_cycle_capacity(df, "_chg", "charging_capacity_ampere_hour")
    df = step_to_cycle_capacity(df, "_dchg", "discharging_capacity_ampere_hour")
    return df.drop("_chg", "_dchg")


_DAYS = re.compile(r"^\s*\d+d\s")
_COMMA_NUMBER = re.compile(r"^\s*-?\d+,\d+\s*$")
_DOT_NUMBER = re.compile(r"^\s*-?\d+\.\d+\s*$")


def _field(line: str, k: int) -> str:
    fields = line.split("\t")
    return fields[k] if k < len(fields) else ""


def _decimal_comma(row: str) -> bool:
    """A tab-separated row written with decimal commas (``0,000000``) and no decimal points."""
    fields = row.split("\t")
    return any(_COMMA_NUMBER.match(f) for f in fields) and not any(
        _DOT_NUMBER.match(f) for f in fields
    )


def _maccor_time_unit(path, lines: list[str], header: int, comma: bool = False) -> float:
    """Seconds per unit of TestTime: the one that matches the wall clock (DPT Time) best."""
    from .tabular import parse_datetimes

    names = [n.strip() for n in lines[header].split("\t")]
    clock_name = next((n for n in names if n.casefold() == "dpt time"), None)
    if "TestTime" not in names or clock_name is None:
        return 1.0
    it, idt = names.index("TestTime"), names.index(clock_name)
    rows = [ln.split("\t") for ln in lines[header + 1 :] if ln.strip()]
    rows = [r for r in rows if len(r) > max(it, idt)]
    if len(rows) < 2:
        return 60.0
    first, last = rows[0], rows[-1]
    clock = parse_datetimes(
        path, pl.Series([first[idt], last[idt]]), "DPT Time", header + 2
    ).to_numpy()

    def number(text: str) -> float:
        return float(text.replace(",", ".") if comma else text)

    try:
        elapsed = number(last[it]) - number(first[it])
    except ValueError:
        return 60.0
    if elapsed <= 0:
        return 60.0
    ratio = (clock[1] - clock[0]) / elapsed
    return min(_TIME_UNITS.values(), key=lambda u: abs(np.log(max(ratio, 1e-9) / u)))


def read_maccor(path: str | Path) -> ReadResult:
    notes = Notes(path)
    lines = decode(path, Path(path).read_bytes()).splitlines()
    header = next(
        (i for i, ln in enumerate(lines[:200]) if ln.startswith(("Rec\t", "Rec#\t"))), None
    )
    if header is None:
        raise ReaderError(path, "no 'Rec' header line", expected="a Maccor text export")
    meta: dict = {"instrument": "Maccor"}
    for ln in lines[:header]:
        k, _, v = ln.partition("\t")
        k = k.rstrip(":").strip()
        if k and v.strip():
            # Some exports pad a field with control bytes and 0xFF: keep the text before them.
            meta[k] = re.split(r"[\x00-\x1f\x7f-\xff]", v.strip())[0].strip()
    skip = 1 if header + 1 < len(lines) and not lines[header + 1].strip() else 0
    first = lines[header + 1 + skip] if header + 1 + skip < len(lines) else ""
    comma = _decimal_comma(first)
    cmap = dict(MACCOR)
    names = [n.strip() for n in lines[header].split("\t")]
    if "TestTime" in names and _DAYS.match(_field(first, names.index("TestTime"))):
        cmap["TestTime"] = Col("_hms")  # "  0d 00:00:05.05" (days, then the clock)
        meta["test_time_unit_second"] = 1.0
    else:
        unit = _maccor_time_unit(path, lines, header, comma)
        meta["test_time_unit_second"] = unit
        cmap["TestTime"] = Col("test_time_second", unit)
    if comma:
        meta["decimal_comma"] = True
    return read_csv(
        path,
        cmap,
        header_line=header,
        delimiter="\t",
        decimal_comma=comma,
        skip_after_header=skip,
        format_name="maccor-txt",
        notes=notes,
        metadata=meta,
        postprocess=_maccor_post,
    )
