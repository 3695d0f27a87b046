"""Impedance text exports with a header line: CH Instruments, Parstat/VersaStudio, Nova (Autolab).

They differ in their preamble, delimiter and column names (see ``EIS_TABLE`` in :mod:`.columns`)
but not in structure, so one reader serves them. Parstat files interleave DC records (frequency 0)
with the impedance points; only the impedance points are kept.
"""

from __future__ import annotations

from pathlib import Path

from .base import Notes, ReaderError, ReadResult, decode, finish_spectra
from .columns import EIS_TABLE, key
from .tabular import Table, guess_delimiter, read_mapped

_LOOKUP = {key(n): c.target for n, c in EIS_TABLE.items()}
_NEEDED = {"frequency_hertz", "z_real_ohm", "z_imag_ohm"}


def _split(line: str) -> tuple[str, list[str]]:
    d = guess_delimiter(line)
    return d, [n.strip() for n in line.split(d)]


def find_header(lines: list[str]) -> int | None:
    """Index of the first line naming frequency, Z' and Z'' in a known way."""
    for i, ln in enumerate(lines[:60]):
        _, names = _split(ln)
        if {_LOOKUP.get(key(n)) for n in names} >= _NEEDED:
            return i
    return None


def vendor(text_head: str, header: str) -> str:
    if "CHI" in text_head[:600] or "A.C. Impedance" in text_head[:600]:
        return "chi-txt"
    if "Zre (ohms)" in header:
        return "parstat-txt"
    if "Ω" in header or "-Z''" in header:
        return "autolab-txt"
    return "eis-table"


def sniffer(name: str):
    """A sniff function accepting the impedance tables of vendor ``name`` (see :func:`vendor`)."""

    def sniff(head: bytes) -> bool:
        text = decode("", head)
        lines = text.splitlines()
        at = find_header(lines)
        return at is not None and vendor(text, lines[at]) == name

    return sniff


def read_eis_table(path: str | Path) -> ReadResult:
    notes = Notes(path)
    text = decode(path, Path(path).read_bytes())
    lines = text.splitlines()
    at = find_header(lines)
    if at is None:
        raise ReaderError(
            path,
            "no impedance header line in the first 60 lines",
            expected="a line naming frequency, Z' and Z'' (e.g. Freq/Hz, Z'/ohm, Z\"/ohm)",
        )
    delimiter, _ = _split(lines[at])
    # CH Instruments writes Z"/ohm: a double quote that is a unit, not a quote.
    quote = None if lines[at].count('"') % 2 else '"'
    table = Table(at, delimiter, quote=quote)
    # Tolerate the blank line some exports put between header and rows.
    body = [ln for ln in lines[at + 1 :] if ln.strip()]
    dropped_blank = len(lines) - at - 1 - len(body)
    lines = [*lines[: at + 1], *body]
    df, _ = read_mapped(
        path, lines, table, EIS_TABLE, kind="spectra", notes=notes, required=tuple(_NEEDED)
    )
    fmt = vendor(text, lines[at])
    dc = df["frequency_hertz"] == 0
    if dc.any():
        df = df.filter(~dc)
        if fmt != "parstat-txt":
            notes.warn(f"{int(dc.sum())} rows with frequency 0 are not impedance points; dropped")
    if df.is_empty():
        raise ReaderError(path, "no impedance points (every frequency is 0)", line=at + 2)
    # Line numbers in errors would be shifted by the blank lines removed above.
    offset = at + 2 + dropped_blank
    frame = finish_spectra(path, df, line_of=lambda r: {"line": offset + r})
    meta = {"start_time_known": False, "dc_records_dropped": int(dc.sum())}
    return ReadResult("spectra", frame, fmt, meta, notes.items)
