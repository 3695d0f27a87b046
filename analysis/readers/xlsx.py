"""Cycler exports saved as Excel workbooks (.xlsx): Neware, Arbin and Landt/Lanhe.

An .xlsx is a zip of XML parts (Office Open XML, ECMA-376): ``xl/workbook.xml`` names the sheets,
``xl/_rels/workbook.xml.rels`` maps them to ``xl/worksheets/sheetN.xml``, and text cells point
into ``xl/sharedStrings.xml``. This module reads cell values with the standard library only
(no spreadsheet dependency), turns the sheet whose header a cycler map knows into tab-separated
text and hands that to the same column-mapped reader as the csv exports, so an xlsx gets every
check a csv gets; line numbers in errors are the sheet's row numbers.
"""

from __future__ import annotations

import io
import re
import struct
import xml.etree.ElementTree as ET
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from .base import Notes, ReaderError, ReadResult, capacities_per_cycle
from .columns import ARBIN, LANDT, NEWARE_CSV
from .cyclers import _neware_post
from .generic import read_csv

ZIP_MAGIC = b"PK\x03\x04"
_NS = {
    "m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
    "rel": "http://schemas.openxmlformats.org/package/2006/relationships",
}
_M = "{" + _NS["m"] + "}"
_REF = re.compile(r"([A-Z]+)(\d+)")
HEADER_ROWS = 30  # a cycler's header row sits within the first rows of its sheet
_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError, ValueError, IndexError,
           ET.ParseError, struct.error, UnicodeDecodeError, NotImplementedError,
           OverflowError, RuntimeError)  # fmt: skip


def sniff(head: bytes) -> bool:
    """A zip whose member names include the workbook's ``xl/`` parts."""
    return head.startswith(ZIP_MAGIC) and b"xl/" in head


def _column_index(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + (ord(ch) - 64)
    return n - 1


def sheets(zf: zipfile.ZipFile) -> list[tuple[str, str]]:
    """(sheet name, part name) in workbook order."""
    wb = ET.fromstring(zf.read("xl/workbook.xml"))
    rels = ET.fromstring(zf.read("xl/_rels/workbook.xml.rels"))
    target = {r.get("Id"): r.get("Target", "") for r in rels.findall("rel:Relationship", _NS)}
    out = []
    for s in wb.findall("m:sheets/m:sheet", _NS):
        rid = s.get("{" + _NS["r"] + "}id")
        part = target.get(rid, "")
        part = part.lstrip("/")
        if not part.startswith("xl/"):
            part = "xl/" + part
        out.append((s.get("name", ""), part))
    return out


def shared_strings(zf: zipfile.ZipFile) -> list[str]:
    if "xl/sharedStrings.xml" not in zf.namelist():
        return []
    root = ET.fromstring(zf.read("xl/sharedStrings.xml"))
    return ["".join(t.text or "" for t in si.iter(_M + "t")) for si in root.findall("m:si", _NS)]


def rows(zf: zipfile.ZipFile, part: str, strings: list[str], limit: int | None = None
         ) -> Iterator[tuple[int, list[str]]]:  # fmt: skip
    """(row number, cell texts) of a worksheet, streaming; empty cells are ''."""
    with zf.open(part) as fh:
        for _, elem in ET.iterparse(fh, events=("end",)):
            if elem.tag != _M + "row":
                continue
            number = int(elem.get("r", "0"))
            cells: list[str] = []
            for c in elem.findall(_M + "c"):
                m = _REF.match(c.get("r", ""))
                col = _column_index(m.group(1)) if m else len(cells)
                kind = c.get("t", "n")
                if kind == "inlineStr":
                    text = "".join(t.text or "" for t in c.iter(_M + "t"))
                else:
                    v = c.find(_M + "v")
                    text = v.text or "" if v is not None else ""
                    if kind == "s" and text:
                        text = strings[int(text)]
                if col >= len(cells):
                    cells.extend([""] * (col - len(cells) + 1))
                cells[col] = text
            elem.clear()
            yield number, cells
            if limit is not None and number >= limit:
                return


# Which map reads a sheet, told by names its header row must hold.
_VENDORS = (
    ("neware-xlsx", NEWARE_CSV, ("Cycle Index", "Step Index", "Voltage(V)")),
    ("arbin-xlsx", ARBIN, ("Cycle_Index", "Step_Index")),
    ("landt-xlsx", LANDT, ("TestTime", "Voltage/V")),
)


def _vendor(header: list[str]):
    names = {h.strip().casefold() for h in header}
    for fmt, cmap, need in _VENDORS:
        if all(n.casefold() in names for n in need):
            return fmt, cmap
    return None


def read_xlsx(path: str | Path) -> ReadResult:
    return parse_xlsx(path, Path(path).read_bytes())


def parse_xlsx(path: str | Path, data: bytes) -> ReadResult:
    """:func:`read_xlsx` on the workbook's bytes (``path`` names it in messages)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return _read(path, zf)
    except ReaderError:
        raise
    except _ERRORS as exc:
        raise ReaderError(path, f"damaged workbook: {type(exc).__name__}: {exc}") from None


def _read(path, zf: zipfile.ZipFile) -> ReadResult:
    strings = shared_strings(zf)
    seen = []
    for name, part in sheets(zf):
        seen.append(name)
        head = list(rows(zf, part, strings, limit=HEADER_ROWS))
        for k, (_, cells) in enumerate(head):
            found = _vendor(cells)
            if found is None:
                continue
            fmt, cmap = found
            lines = _as_lines(zf, part, strings)
            notes = Notes(path)
            if len(seen) > 1 or k:
                notes.warn(f"data read from sheet {name!r}")
            post = {"neware-xlsx": _neware_post, "landt-xlsx": _integrate}.get(fmt)
            return read_csv(
                path,
                cmap,
                header_line=_header_index(lines, cells),
                delimiter="\t",
                format_name=fmt,
                notes=notes,
                metadata={"sheet": name, "line_numbers": "rows of the sheet"},
                postprocess=post,
                text="\n".join(lines),
            )
    raise ReaderError(
        path,
        f"no sheet with a cycler header among {seen}",
        expected="a Neware, Arbin or Landt export (e.g. Cycle_Index/Step_Index, TestTime)",
    )


def _integrate(df, notes: Notes):
    """Landt capacities carry no sign: the per-cycle totals come from the current instead."""
    return capacities_per_cycle(df)


def _as_lines(zf, part: str, strings: list[str]) -> list[str]:
    """The sheet as tab-separated lines, line k being sheet row k (gaps become empty lines)."""
    out: list[str] = []
    for number, cells in rows(zf, part, strings):
        while len(out) < number - 1:
            out.append("")
        out.append("\t".join(c.replace("\t", " ").replace("\n", " ") for c in cells))
    return out


def _header_index(lines: list[str], header: list[str]) -> int:
    want = "\t".join(c.replace("\t", " ").replace("\n", " ") for c in header)
    return lines.index(want)
