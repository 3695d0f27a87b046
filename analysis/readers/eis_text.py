"""Impedance spectra in text: the headerless three-column file (frequency / Hz, Z', Z'' / ohm).

The vendor text formats with headers live in their own modules; this one is the plain exchange
format that impedance.py and most fitting tools read and write.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl

from .base import Notes, ReaderError, ReadResult, decode, finish_spectra

_SPLIT = re.compile(r"[,;\t ]+")


def _floats(line: str) -> list[float] | None:
    parts = [p for p in _SPLIT.split(line.strip()) if p]
    try:
        return [float(p) for p in parts]
    except ValueError:
        return None


def sniff_csv3(head: bytes) -> bool:
    """Every complete line of the head is exactly three numbers."""
    lines = [ln for ln in decode("", head).splitlines()[:-1] if ln.strip()][:20]
    if not lines and head.strip():
        lines = [decode("", head).strip()]
    return bool(lines) and all((v := _floats(ln)) is not None and len(v) == 3 for ln in lines)


def read_csv3(path: str | Path) -> ReadResult:
    """Three numeric columns, no header: frequency (Hz), Z' (ohm), Z'' (ohm, negative capacitive).

    Blank lines are skipped; any other line that is not three finite numbers is an error naming it.
    """
    notes = Notes(path)
    text = decode(path, Path(path).read_bytes())
    rows: list[list[float]] = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        values = _floats(line)
        if values is None or len(values) != 3:
            raise ReaderError(
                path,
                f"{line.strip()[:60]!r} is not three numbers",
                line=i,
                expected="frequency / Hz, Z' / ohm, Z'' / ohm",
            )
        if not all(np.isfinite(values)):
            raise ReaderError(path, "value is not finite", line=i, expected="finite numbers")
        rows.append(values)
    if not rows:
        raise ReaderError(path, "no data rows", line=1, expected="frequency, Z', Z'' rows")
    arr = np.asarray(rows)
    df = pl.DataFrame(
        {"frequency_hertz": arr[:, 0], "z_real_ohm": arr[:, 1], "z_imag_ohm": arr[:, 2]}
    )
    frame = finish_spectra(path, df)
    return ReadResult("spectra", frame, "eis-csv3", {"start_time_known": False}, notes.items)
