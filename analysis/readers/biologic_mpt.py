"""BioLogic EC-Lab text export (.mpt): impedance (PEIS/GEIS) and cycling (GCPL, CC-CV, ...).

Layout: ``EC-Lab ASCII FILE``, ``Nb header lines : N``, the technique's settings, then on line N
the tab-separated column names and the records. Numbers use the Windows locale of the PC that
exported the file, so a decimal comma is recognised. A file with ``freq/Hz`` is impedance.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from .base import (
    Notes,
    ReaderError,
    ReadResult,
    capacities_per_cycle,
    decode,
    finish_samples,
    finish_spectra,
)
from .columns import BIOLOGIC, BIOLOGIC_EIS, key
from .tabular import Table, check_cycles, line_locator, read_mapped

MAGIC = b"EC-Lab ASCII FILE"
_NB_HEADER = re.compile(r"Nb header lines\s*:\s*(\d+)")
_STARTED = re.compile(r"Acquisition started on\s*:\s*(.+)$", re.MULTILINE)
_START_FORMATS = (
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S.%f",
    "%d.%m.%Y %H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
)


def sniff(head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf").startswith(MAGIC)


def start_time(text: str) -> float | None:
    """``Acquisition started on`` as unix seconds (the PC's local time, read as UTC)."""
    m = _STARTED.search(text)
    if not m:
        return None
    stamp = m.group(1).strip()
    for fmt in _START_FORMATS:
        try:
            return datetime.strptime(stamp, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


def technique(lines: list[str]) -> str:
    """The technique name EC-Lab writes on its own line after the header count."""
    for ln in lines[2:6]:
        if ln.strip():
            return ln.strip()
    return ""


def read_mpt(path: str | Path) -> ReadResult:
    notes = Notes(path)
    text = decode(path, Path(path).read_bytes())
    lines = text.splitlines()
    m = _NB_HEADER.search("\n".join(lines[:3]))
    if not m:
        raise ReaderError(
            path, "no 'Nb header lines' count", line=2, expected="Nb header lines : N"
        )
    n_header = int(m.group(1))
    if n_header < 1 or n_header > len(lines):
        raise ReaderError(
            path,
            f"header count {n_header} but the file has {len(lines)} lines",
            line=2,
            expected="a header count within the file",
        )
    header = n_header - 1
    names = [key(n) for n in lines[header].split("\t")]
    kind = "spectra" if key("freq/Hz") in names else "samples"
    first_data = lines[header + 1] if header + 1 < len(lines) else ""
    decimal_comma = "," in first_data and "." not in first_data
    table = Table(header, "\t", decimal_comma)
    required = (
        ("frequency_hertz", "z_real_ohm", "z_imag_ohm")
        if kind == "spectra"
        else ("test_time_second", "voltage_volt", "current_ampere")
    )
    cmap = BIOLOGIC_EIS if kind == "spectra" else BIOLOGIC
    df, have = read_mapped(path, lines, table, cmap, kind=kind, notes=notes, required=required)
    start = start_time(text)
    meta = {
        "technique": technique(lines),
        "start_time_known": start is not None,
        "instrument": "BioLogic",
    }
    locate = line_locator(table)
    if kind == "spectra":
        df = df.drop("_dq", strict=False)
        if "sweep_index" not in df.columns and "cycle_count" in df.columns:
            df = df.with_columns((pl.col("cycle_count") - 1).alias("sweep_index"))
        frame = finish_spectra(path, df, start_unix=start, line_of=locate)
        return ReadResult(kind, frame, "biologic-mpt", meta, notes.items)
    if "cycle_count" in df.columns:
        check_cycles(path, df["cycle_count"], have["cycle_count"], header + 2)
    df = capacities_per_cycle(df)
    frame = finish_samples(path, df, start_unix=start, line_of=locate)
    return ReadResult(kind, frame, "biologic-mpt", meta, notes.items)
