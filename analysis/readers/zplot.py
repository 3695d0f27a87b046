"""Scribner ZPlot/ZView files (.z, ``ZPLOT2 ASCII``) and the Z60W text layout some Autolab
software writes (``"Z60W Data File: Version 1.1"``).

Both store one sweep with the same nine columns: Freq (Hz), Ampl, Bias, Time (s), Z' (ohm),
Z'' (ohm, negative capacitive), GD, Err, Range. ZPlot lists ``Data Points: N`` and the column
names in its header, which ends at ``End Comments``; Z60W gives a settings line, the point count
and a quoted line of names.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from .base import Notes, ReaderError, ReadResult, decode, finish_spectra

ZPLOT_MAGIC = b"ZPLOT2 ASCII"
Z60W_MAGIC = b'"Z60W Data File'
# Position of each quantity in the nine-column layout, and its canonical name.
_COLUMNS = {0: "frequency_hertz", 3: "test_time_second", 4: "z_real_ohm", 5: "z_imag_ohm"}
_N_COLUMNS = 9


def sniff_zplot(head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf").startswith(ZPLOT_MAGIC)


def sniff_z60w(head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf").startswith(Z60W_MAGIC)


def _rows(path, lines: list[str], first: int, count: int | None, notes: Notes) -> np.ndarray:
    """Parse the numeric rows from line index ``first`` (blank lines end the table)."""
    rows = []
    for i in range(first, len(lines)):
        ln = lines[i].strip()
        if not ln:
            break
        fields = [f for f in re.split(r"[\t,]\s*", ln) if f != ""]
        if len(fields) < 6:
            raise ReaderError(
                path,
                f"row has {len(fields)} fields",
                line=i + 1,
                expected=f"{_N_COLUMNS} fields: Freq, Ampl, Bias, Time, Z', Z'', GD, Err, Range",
            )
        try:
            rows.append([float(fields[j]) for j in _COLUMNS])
        except ValueError:
            raise ReaderError(
                path, f"row {ln[:50]!r} holds a value that is not a number", line=i + 1
            ) from None
    if not rows:
        raise ReaderError(path, "no data rows", line=first + 1, expected="impedance rows")
    if count is not None and count != len(rows):
        notes.warn(f"header announces {count} points, file holds {len(rows)}")
    return np.asarray(rows)


def _frame(path, arr: np.ndarray, first: int, start: float | None) -> pl.DataFrame:
    df = pl.DataFrame({name: arr[:, k] for k, name in enumerate(_COLUMNS.values())})
    return finish_spectra(path, df, start_unix=start, line_of=lambda r: {"line": first + 1 + r})


def read_zplot(path: str | Path) -> ReadResult:
    notes = Notes(path)
    lines = decode(path, Path(path).read_bytes()).splitlines()
    header: dict[str, str] = {}
    end = None
    for i, ln in enumerate(lines):
        if ln.strip() == "End Comments":
            end = i
            break
        if ":" in ln:
            k, _, v = ln.partition(":")
            header.setdefault(k.strip(), v.strip())
    if end is None:
        raise ReaderError(path, "no 'End Comments' line", expected="a ZPlot header ending there")
    names = [n.strip() for n in lines[end - 1].split("\t")] if end else []
    if len(names) != _N_COLUMNS or not names[0].startswith("Freq"):
        raise ReaderError(
            path,
            f"column names {names[:4]} are not ZPlot's",
            line=end,
            expected="Freq(Hz), Ampl, Bias, Time(Sec), Z'(a), Z''(b), GD, Err, Range",
        )
    try:
        count = int(header.get("Data Points", ""))
    except ValueError:
        count = None
    start = None
    try:
        stamp = datetime.strptime(f"{header['Date']} {header['Time']}", "%m-%d-%Y %H:%M:%S")
        start = stamp.replace(tzinfo=UTC).timestamp()
    except (KeyError, ValueError):
        pass
    arr = _rows(path, lines, end + 1, count, notes)
    meta = {
        "software": header.get("Measured Data, ZPlot", ""),
        "experiment": header.get("Experiment Type", ""),
        "start_time_known": start is not None,
    }
    return ReadResult("spectra", _frame(path, arr, end + 1, start), "zplot-z", meta, notes.items)


def read_z60w(path: str | Path) -> ReadResult:
    notes = Notes(path)
    lines = decode(path, Path(path).read_bytes()).splitlines()
    names_at = next((i for i, ln in enumerate(lines) if "Freq" in ln and "Z'" in ln), None)
    if names_at is None or names_at < 1:
        raise ReaderError(
            path, "no column-name line", expected="\"Freq (Hz) ... Z'(a) Z''(b) ...\""
        )
    try:
        count = int(lines[names_at - 1].strip())
    except ValueError:
        count = None
    arr = _rows(path, lines, names_at + 1, count, notes)
    meta = {"software": lines[0].strip().strip('"'), "start_time_known": False}
    return ReadResult("spectra", _frame(path, arr, names_at + 1, None), "z60w", meta, notes.items)
