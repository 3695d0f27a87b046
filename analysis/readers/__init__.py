"""Readers of vendor files into the canonical frames of :mod:`cellbench.core.schema`.

>>> from cellbench.analysis.readers import read
>>> result = read("cycling.mpr")          # doctest: +SKIP
>>> result.kind, result.format, result.frame.height   # doctest: +SKIP

Every reader returns canonical columns and units (s, V, A with charge positive, Ah, Hz, ohm) and
raises :class:`ReaderError` naming the file, the offset/line/column and what was expected. The
format is detected from the file's content (:func:`detect_format`); exports that no built-in reader
knows go through :func:`read_csv` with a column map (:mod:`.columns`).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from .base import ReaderError, ReaderWarning, ReadResult
from .columns import Col
from .generic import load_column_map, read_csv
from .registry import FORMATS, Format, by_name, detect_format

__all__ = [
    "FORMATS",
    "Col",
    "Format",
    "ReadResult",
    "ReaderError",
    "ReaderWarning",
    "detect_format",
    "load_column_map",
    "read",
    "read_csv",
    "read_samples",
    "read_spectra",
]


def read(path: str | Path, *, format: str | None = None) -> ReadResult:
    """Read any supported file; ``format`` (a name from :data:`FORMATS`) skips detection."""
    path = Path(path)
    name = format or detect_format(path)
    return by_name(name).read(path)


def _read_kind(path: str | Path, kind: str) -> pl.DataFrame:
    fmt = by_name(detect_format(path))
    result = fmt.read(path) if fmt.read_kind is None else fmt.read_kind(path, kind)
    if result.kind != kind:
        other = "impedance spectra" if result.kind == "spectra" else "cycling samples"
        want = "impedance spectra" if kind == "spectra" else "cycling samples"
        raise ReaderError(path, f"{result.format} file holds {other}", expected=f"a file of {want}")
    return result.frame


def read_samples(path: str | Path) -> pl.DataFrame:
    """Cycling samples (``samples`` columns: s, V, A charge-positive, Ah) of a vendor file."""
    return _read_kind(path, "samples")


def read_spectra(path: str | Path) -> pl.DataFrame:
    """Impedance spectra (``spectra`` columns, every sweep, Hz and ohm) of a vendor file."""
    return _read_kind(path, "spectra")
