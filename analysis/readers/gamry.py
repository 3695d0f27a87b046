"""Gamry Framework data files (.DTA, the "EXPLAIN" format): impedance sweeps (EISPOT, EISGALV).

A DTA file is a list of ``NAME<TAB>TYPE<TAB>value...`` lines. Curves are ``NAME<TAB>TABLE[<TAB>n]``
followed by a tab-indented line of column names, a line of units and the rows. The impedance
curve is ``ZCURVE``; an interrupted sweep ends its table early and adds
``EXPERIMENTABORTED TOGGLE T``: the points measured are kept and the abort is reported.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from .base import Notes, ReaderError, ReadResult, decode, finish_spectra

MAGIC = b"EXPLAIN"
# Gamry column -> (canonical column, scale)
_ZCURVE = {
    "Time": ("test_time_second", 1.0),
    "Freq": ("frequency_hertz", 1.0),
    "Zreal": ("z_real_ohm", 1.0),
    "Zimag": ("z_imag_ohm", 1.0),
    "Idc": ("dc_current_ampere", 1.0),
    "Vdc": ("dc_voltage_volt", 1.0),
    "Temp": ("temperature_celsius", 1.0),
}
_ZCURVE_IGNORED = {"Pt", "Zsig", "Zmod", "Zphz", "IERange", "Vref", "Ach", "Zphz2"}


def sniff(head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf").startswith(MAGIC)


def _number(text: str) -> float:
    """A Gamry number; Framework writes the Windows locale's decimal comma (``109,009``) where
    the system uses one (fields are tab-separated, so a comma is never a thousands mark)."""
    text = text.strip()
    if "," in text and "." not in text:
        text = text.replace(",", ".")
    return float(text)


def _start(values: dict[str, str]) -> float | None:
    date, time = values.get("DATE"), values.get("TIME")
    if not date or not time:
        return None
    time = time.split(",")[0].split(".")[0] if time.count(":") == 2 else time
    for fmt in ("%m/%d/%Y %H:%M:%S", "%d.%m.%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M:%S"):
        try:
            stamp = datetime.strptime(f"{date} {time}", fmt).replace(tzinfo=UTC)
            return stamp.timestamp()
        except ValueError:
            continue
    return None


def _planned_points(values: dict[str, str]) -> int | None:
    """Points a logarithmic sweep from FREQINIT to FREQFINAL at PTSPERDEC would have."""
    try:
        f0, f1 = _number(values["FREQINIT"]), _number(values["FREQFINAL"])
        per_decade = _number(values["PTSPERDEC"])
    except (KeyError, ValueError):
        return None
    if f0 <= 0 or f1 <= 0 or per_decade <= 0:
        return None
    return round(float(abs(np.log10(f0 / f1))) * per_decade) + 1


def read_dta(path: str | Path) -> ReadResult:
    notes = Notes(path)
    lines = decode(path, Path(path).read_bytes()).splitlines()
    values: dict[str, str] = {}
    z_at = None
    for i, ln in enumerate(lines):
        if not ln or ln[0] == "\t":
            continue
        parts = ln.split("\t")
        if len(parts) == 2:
            values.setdefault(parts[0], parts[1])
        elif len(parts) >= 3 and parts[1] != "TABLE":
            values.setdefault(parts[0], parts[2])
        if parts[0] == "ZCURVE" and len(parts) >= 2 and parts[1] == "TABLE":
            if z_at is not None:
                notes.warn(f"line {i + 1}: second ZCURVE table ignored")
                continue
            z_at = i
    tag = values.get("TAG", "")
    if z_at is None:
        raise ReaderError(
            path,
            f"no ZCURVE table (experiment {tag or 'unknown'})",
            expected="a Gamry impedance file (EISPOT or EISGALV) with a ZCURVE table",
        )
    if z_at + 2 >= len(lines):
        raise ReaderError(path, "ZCURVE table has no column names", line=z_at + 2)
    names = lines[z_at + 1].strip("\t").split("\t")
    index = {}
    for j, name in enumerate(names):
        name = name.strip()
        if name in _ZCURVE:
            index[_ZCURVE[name][0]] = (j, _ZCURVE[name][1], name)
        elif name not in _ZCURVE_IGNORED:
            notes.warn(f"line {z_at + 2}: unknown ZCURVE column {name!r} skipped")
    for need in ("frequency_hertz", "z_real_ohm", "z_imag_ohm"):
        if need not in index:
            raise ReaderError(
                path,
                f"ZCURVE has no column for {need}",
                line=z_at + 2,
                expected="Freq, Zreal, Zimag",
            )
    rows: list[list[float]] = []
    first_row = z_at + 3
    for i in range(first_row, len(lines)):
        ln = lines[i]
        if not ln.startswith("\t"):
            break  # the next block (EXPERIMENTABORTED, another curve) ends the table
        fields = ln[1:].split("\t")
        row = []
        for j, scale, name in index.values():
            if j >= len(fields):
                raise ReaderError(
                    path,
                    f"row has {len(fields)} of {len(names)} fields",
                    line=i + 1,
                    column=name,
                    expected="a complete row",
                )
            try:
                row.append(_number(fields[j]) * scale)
            except ValueError:
                raise ReaderError(
                    path, f"{fields[j]!r} is not a number", line=i + 1, column=name
                ) from None
        rows.append(row)
    if not rows:
        raise ReaderError(path, "ZCURVE table has no rows", line=first_row + 1)
    arr = np.asarray(rows, dtype=float)
    df = pl.DataFrame({t: arr[:, k] for k, t in enumerate(index)})
    aborted = values.get("EXPERIMENTABORTED", "F") == "T"
    planned = _planned_points(values)
    if aborted:
        of = f" of {planned} planned" if planned else ""
        notes.warn(f"experiment aborted: {len(rows)} points{of} were recorded")
    start = _start(values)
    meta = {
        "technique": tag,
        "title": values.get("TITLE", ""),
        "instrument": values.get("PSTAT", ""),
        "aborted": aborted,
        "planned_points": planned,
        "start_time_known": start is not None,
    }
    frame = finish_spectra(
        path, df, start_unix=start, line_of=lambda row: {"line": first_row + 1 + row}
    )
    return ReadResult("spectra", frame, "gamry-dta", meta, notes.items)
