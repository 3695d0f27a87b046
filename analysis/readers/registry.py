"""The formats cellbench reads, and detection of a file's format from its first bytes.

Each :class:`Format` has a ``sniff(head)`` that looks at the first 64 KiB (magic bytes, the first
header lines) and a ``read(path)``. Detection tries binary signatures first, then text formats with
their own header, then the generic tables; the file name's extension only breaks ties between
formats whose content is ambiguous (it is never enough on its own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import (
    bdf,
    biologic_mpr,
    biologic_mpt,
    cyclers,
    eis_tables,
    eis_text,
    gamry,
    generic,
    neware_nda,
    neware_ndax,
    xlsx,
    zplot,
)
from .base import ReaderError, ReadResult, read_head

HEAD_BYTES = 65536


@dataclass(frozen=True)
class Format:
    """One file format: name, the kind of frame it gives, how to recognise it, how to read it."""

    name: str
    kind: str  # "samples", "spectra", or "either" (decided by the file's contents)
    description: str
    sniff: Callable[[bytes], bool]
    read: Callable[[str | Path], ReadResult]
    extensions: tuple[str, ...] = ()
    # For files that can hold both kinds (an .mpr with GCPL and PEIS): read(path, kind).
    read_kind: Callable[[str | Path, str], ReadResult] | None = None
    # A signature that no other format shares (magic bytes, a first line of its own):
    # detection stops at it without asking the text sniffers.
    exclusive: bool = False


FORMATS: list[Format] = [
    Format(
        "bdf-parquet",
        "either",
        "Battery Data Format, parquet",
        bdf.sniff_parquet,
        bdf.read_parquet_bdf,
        (".parquet",),
        exclusive=True,
    ),
    Format(
        "biologic-mpr",
        "either",
        "BioLogic EC-Lab binary (.mpr): GCPL, CC-CV and other cycling; PEIS/GEIS",
        biologic_mpr.sniff,
        biologic_mpr.read_mpr,
        (".mpr",),
        biologic_mpr.read_mpr,
        exclusive=True,
    ),
    Format(
        "neware-ndax",
        "samples",
        "Neware BTS 8 .ndax (zip of XML and ndc tables, ndc version 17)",
        neware_ndax.sniff,
        neware_ndax.read_ndax,
        (".ndax",),
        exclusive=True,
    ),
    Format(
        "arbin-res",
        "samples",
        "Arbin .res (Microsoft Access database; needs mdb-export from mdbtools)",
        cyclers.sniff_access,
        cyclers.read_arbin_res,
        (".res",),
        exclusive=True,
    ),
    Format(
        "neware-nda",
        "samples",
        "Neware .nda (BTS 7 file versions 26, 28, 29; BTS 9.0 version 130)",
        neware_nda.sniff,
        neware_nda.read_nda,
        (".nda",),
        exclusive=True,
    ),
    Format(
        "cycler-xlsx",
        "samples",
        "Excel workbook export of Neware, Arbin or Landt/Lanhe (no spreadsheet library needed)",
        xlsx.sniff,
        xlsx.read_xlsx,
        (".xlsx",),
        exclusive=True,
    ),
    Format(
        "gamry-dta",
        "spectra",
        "Gamry Framework data file (EXPLAIN), impedance ZCURVE; aborted sweeps kept",
        gamry.sniff,
        gamry.read_dta,
        (".dta",),
        exclusive=True,
    ),
    Format(
        "biologic-mpt",
        "either",
        "BioLogic EC-Lab text export: PEIS/GEIS or cycling (GCPL, CC-CV, ...)",
        biologic_mpt.sniff,
        biologic_mpt.read_mpt,
        (".mpt",),
        exclusive=True,
    ),
    Format(
        "zplot-z",
        "spectra",
        "Scribner ZPlot/ZView .z (ZPLOT2 ASCII)",
        zplot.sniff_zplot,
        zplot.read_zplot,
        (".z",),
        exclusive=True,
    ),
    Format(
        "z60w",
        "spectra",
        "Z60W text layout (Autolab / Scribner Z60)",
        zplot.sniff_z60w,
        zplot.read_z60w,
        (".txt",),
        exclusive=True,
    ),
    Format(
        "maccor-txt",
        "samples",
        "Maccor text export (tab separated; TestTime unit from the wall clock)",
        cyclers.sniff_maccor,
        cyclers.read_maccor,
        (".txt",),
    ),
    Format(
        "neware-csv",
        "samples",
        "Neware BTSDA csv export",
        cyclers.sniff_neware_csv,
        cyclers.read_neware_csv,
        (".csv",),
    ),
    Format(
        "arbin-csv",
        "samples",
        "Arbin MITS Pro csv export",
        cyclers.sniff_arbin_csv,
        cyclers.read_arbin_csv,
        (".csv",),
    ),
    Format(
        "prime-csv",
        "samples",
        "PRIME INSTRUMENT FILE generic export (semicolon separated)",
        generic.sniff_prime,
        generic.read_prime,
        (".csv",),
        exclusive=True,
    ),
    Format(
        "bdf-csv",
        "either",
        "Battery Data Format, csv (machine or human-readable names)",
        bdf.sniff_csv,
        bdf.read_csv_bdf,
        (".csv",),
    ),
    *(
        Format(name, "spectra", what, eis_tables.sniffer(name), eis_tables.read_eis_table, ext)
        for name, what, ext in (
            ("chi-txt", "CH Instruments impedance text export", (".txt",)),
            ("parstat-txt", "Parstat / VersaStudio impedance text export", (".txt",)),
            ("autolab-txt", "Nova (Autolab) impedance ASCII export", (".txt", ".csv")),
            ("eis-table", "impedance text table with frequency, Z', Z'' named in a header", ()),
        )
    ),
    Format(
        "eis-csv3",
        "spectra",
        "impedance, three columns without header: frequency / Hz, Z' / ohm, Z'' / ohm",
        eis_text.sniff_csv3,
        eis_text.read_csv3,
        (".csv", ".txt"),
    ),
]


def by_name(name: str) -> Format:
    for f in FORMATS:
        if f.name == name:
            return f
    raise ValueError(f"unknown format {name!r}; known: {[f.name for f in FORMATS]}")


def detect_format(path: str | Path) -> str:
    """The name of the file's format, decided from its content (see :data:`FORMATS`)."""
    path = Path(path)
    if not path.is_file():
        raise ReaderError(path, "no such file" if not path.exists() else "not a file")
    head = read_head(path, HEAD_BYTES)
    if not head:
        raise ReaderError(path, "file is empty", offset=0, expected="a cycler or impedance file")
    for f in FORMATS:
        if f.exclusive and f.sniff(head):
            return f.name
    matches = [f for f in FORMATS if not f.exclusive and f.sniff(head)]
    if not matches:
        names = ", ".join(f.name for f in FORMATS)
        raise ReaderError(
            path,
            "format not recognised from its content",
            offset=0,
            expected=f"one of: {names}; for other csv exports give a column map "
            "(--column-map MAP.json; readers.read_csv in Python)",
        )
    ext = path.suffix.lower()
    for f in matches:
        if ext in f.extensions:
            return f.name
    return matches[0].name
