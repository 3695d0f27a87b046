"""Generic delimited text through a column map, and the "PRIME INSTRUMENT FILE" export.

:func:`read_csv` is the entry point for exports no built-in reader knows: the user states which of
their columns is which (see :mod:`.columns`) and gets the same checks as every other reader.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
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
from .columns import PRIME, Col, from_json, key
from .tabular import Table, check_cycles, guess_delimiter, line_locator, read_mapped, resolve_times

PRIME_MARK = b"# PRIME INSTRUMENT FILE"


def load_column_map(source: str | Path | Mapping[str, object]) -> dict[str, Col]:
    """A column map from a dict (``Col`` values or JSON-style lists) or a JSON file."""
    if isinstance(source, Mapping):
        if all(isinstance(v, Col) for v in source.values()):
            return dict(source)  # type: ignore[arg-type]
        return from_json(source)
    try:
        data = json.loads(Path(source).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ReaderError(source, f"column map is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ReaderError(
            source, "column map must be a JSON object", expected="{name: [bdf, scale]}"
        )
    try:
        return from_json(data)
    except ValueError as exc:
        raise ReaderError(source, str(exc)) from None


def find_header(path: str | Path, lines: list[str], cmap: Mapping[str, Col]) -> int:
    """Index of the first line that names at least two of the map's columns."""
    known = {key(n) for n in cmap}
    for i, line in enumerate(lines[:500]):
        d = guess_delimiter(line)
        names = {key(n.strip('"')) for n in line.split(d)}
        if len(names & known) >= 2:
            return i
    raise ReaderError(
        path,
        "no header line naming the mapped columns in the first 500 lines",
        expected=f"a line with some of {sorted(cmap)[:8]}",
    )


def read_csv(
    path: str | Path,
    column_map: Mapping[str, object] | str | Path,
    *,
    kind: str = "samples",
    header_line: int | None = None,
    delimiter: str | None = None,
    decimal_comma: bool = False,
    skip_after_header: int = 0,
    format_name: str = "csv",
    notes: Notes | None = None,
    metadata: dict | None = None,
    postprocess: Callable[[pl.DataFrame, Notes], pl.DataFrame] | None = None,
    text: str | None = None,
) -> ReadResult:
    """Read a delimited text export whose columns ``column_map`` explains.

    ``header_line`` is the 0-based index of the header (found from the map's names when None);
    ``kind`` is ``"samples"`` (needs voltage and current, and a time or date column) or
    ``"spectra"`` (frequency, Z', Z''). Cycle numbers must rise by one. ``postprocess`` lets a
    vendor reader finish the frame (signs from a mode column, step to cycle capacities) before
    the checks. ``text`` is the file's content when it comes from elsewhere than ``path``
    (a table exported from a database); errors still name ``path``.
    """
    if kind not in ("samples", "spectra"):
        raise ValueError(f"kind must be 'samples' or 'spectra', got {kind!r}")
    cmap = load_column_map(column_map)
    notes = notes or Notes(path)
    if text is None:
        text = decode(path, Path(path).read_bytes())
    lines = text.splitlines()
    if header_line is None:
        header_line = find_header(path, lines, cmap)
    if header_line >= len(lines):
        raise ReaderError(path, "file ends before the header", line=len(lines))
    table = Table(
        header_line,
        delimiter or guess_delimiter(lines[header_line]),
        decimal_comma,
        skip_after_header=skip_after_header,
    )
    required = (
        ("voltage_volt", "current_ampere")
        if kind == "samples"
        else ("frequency_hertz", "z_real_ohm", "z_imag_ohm")
    )
    df, have = read_mapped(path, lines, table, cmap, kind=kind, notes=notes, required=required)
    time_targets = {"test_time_second", "_datetime", "_excel_days", "_hms"}
    if kind == "samples" and not (time_targets & set(have)):
        raise ReaderError(
            path,
            "no time column",
            line=header_line + 1,
            expected="a column mapped to test_time_second, _hms, _datetime or _excel_days",
        )
    df, start = resolve_times(df)
    if postprocess is not None:
        df = postprocess(df, notes)
    if kind == "samples" and "_dq" in df.columns:
        df = capacities_per_cycle(df)
    df = df.drop([c for c in df.columns if c.startswith("_")])
    meta = dict(metadata or {})
    meta["start_time_known"] = start is not None or "unix_time_second" in have
    if start is not None:
        meta.setdefault("start_unix_time_second", start)
    locate = line_locator(table)
    if kind == "spectra":
        frame = finish_spectra(path, df, start_unix=start, line_of=locate)
    else:
        if "cycle_count" in df.columns:
            column = have.get("cycle_count", "cycle_count (derived)")
            check_cycles(path, df["cycle_count"], column, table.first_line)
        frame = finish_samples(path, df, start_unix=start, line_of=locate)
    return ReadResult(kind, frame, format_name, meta, notes.items)


def sniff_prime(head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf").startswith(PRIME_MARK)


def read_prime(path: str | Path) -> ReadResult:
    """The PRIME export: sections opened by ``# PRIME INSTRUMENT FILE`` lines (header key/values,
    a log, then the data table under its own header line)."""
    notes = Notes(path)
    lines = decode(path, Path(path).read_bytes()).splitlines()
    marks = [i for i, ln in enumerate(lines) if ln.startswith("# PRIME INSTRUMENT FILE")]
    if not marks or marks[-1] + 1 >= len(lines):
        raise ReaderError(
            path, "no data section", expected="a '# PRIME INSTRUMENT FILE' data block"
        )
    meta: dict[str, object] = {}
    end_header = marks[1] if len(marks) > 1 else marks[-1]
    for ln in lines[1:end_header]:
        parts = [p for p in ln.split(";") if p.strip()]
        if len(parts) >= 2:
            meta[parts[0].strip()] = parts[1].strip()
    notes.warn("PRIME export states no units; current read as mA and capacity as mAh")
    return read_csv(
        path,
        PRIME,
        header_line=marks[-1] + 1,
        delimiter=";",
        format_name="prime-csv",
        notes=notes,
        metadata=meta,
    )
