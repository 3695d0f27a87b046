"""BioLogic EC-Lab binary files (.mpr): cycling (GCPL, CC-CV, ...) and impedance (PEIS/GEIS).

Structure, as far as it matters here (all integers little-endian):

* a 52-byte file header ``BIO-LOGIC MODULAR FILE\\x1a`` padded with spaces and four zero bytes;
* modules, each ``MODULE`` + short name (10 bytes) + long name (25 bytes), then either
  ``length u32, version u32, date 8 bytes`` (57-byte header) or, since EC-Lab 11.50,
  ``0xFFFFFFFF u32, length u32, version u32, u32 (10; 11 for the data module), date 8 bytes``
  (65 bytes; galvani's ``VMPmodule_hdr_v2``); ``length`` bytes of module
  data follow. The modules are ``VMP Set`` (settings), ``VMP data``, ``VMP LOG`` and a few optional
  ones (loops, external devices);
* the data module: row count u32, column count u8, that many column IDs u16, padding up to a
  version-dependent offset, then packed rows. The flag columns (mode, ox/red, error, ...) share
  one byte at the place of the first of them; every other column has the type its ID implies.

A column ID that is not in :data:`COLUMNS` cannot be sized, so the reader stops with an error naming
it and its offset, unless it is the only unknown one: then the row length fixes its width, and it
is skipped with a warning. Everything else that does not add up (lengths, counts, offsets) is an
error naming the byte offset.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from .base import (
    Notes,
    ReaderError,
    ReadResult,
    capacities_per_cycle,
    cycle_capacities,
    finish_samples,
    finish_spectra,
    sweep_numbers,
)

MAGIC = b"BIO-LOGIC MODULAR FILE\x1a"
FILE_HEADER = 52
MODULE_MARK = b"MODULE"
KNOWN_MODULES = ("VMP Set", "VMP data", "VMP LOG", "VMP loop", "VMP ExtDev", "VMP Ext")
OLE_EPOCH = datetime(1899, 12, 30, tzinfo=UTC)

# Flag columns: one shared byte, each flag a bit field of it.
FLAGS: dict[int, tuple[str, int]] = {
    1: ("mode", 0x03),
    2: ("ox/red", 0x04),
    3: ("error", 0x08),
    21: ("control changes", 0x10),
    31: ("Ns changes", 0x20),
    65: ("counter inc.", 0x80),
}

# Column ID -> (EC-Lab name, numpy type). Names are those of the .mpt export.
COLUMNS: dict[int, tuple[str, str]] = {
    4: ("time/s", "<f8"),
    5: ("control/V/mA", "<f4"),
    6: ("Ewe/V", "<f4"),
    7: ("dq/mA.h", "<f8"),
    8: ("I/mA", "<f4"),
    9: ("Ece/V", "<f4"),
    11: ("<I>/mA", "<f8"),
    13: ("(Q-Qo)/mA.h", "<f8"),
    16: ("Analog IN 1/V", "<f4"),
    17: ("Analog IN 2/V", "<f4"),
    19: ("control/V", "<f4"),
    20: ("control/mA", "<f4"),
    23: ("dQ/mA.h", "<f8"),
    24: ("cycle number", "<f8"),
    26: ("Rapp/Ohm", "<f4"),
    27: ("Ewe-Ece/V", "<f4"),
    32: ("freq/Hz", "<f4"),
    33: ("|Ewe|/V", "<f4"),
    34: ("|I|/A", "<f4"),
    35: ("Phase(Z)/deg", "<f4"),
    36: ("|Z|/Ohm", "<f4"),
    37: ("Re(Z)/Ohm", "<f4"),
    38: ("-Im(Z)/Ohm", "<f4"),
    39: ("I Range", "<u2"),
    69: ("R/Ohm", "<f4"),
    70: ("P/W", "<f4"),
    74: ("Energy/W.h", "<f8"),
    75: ("Analog OUT/V", "<f4"),
    76: ("<I>/mA", "<f4"),
    77: ("<Ewe>/V", "<f4"),
    78: ("Cs-2/µF-2", "<f4"),
    96: ("|Ece|/V", "<f4"),
    98: ("Phase(Zce)/deg", "<f4"),
    99: ("|Zce|/Ohm", "<f4"),
    100: ("Re(Zce)/Ohm", "<f4"),
    101: ("-Im(Zce)/Ohm", "<f4"),
    123: ("Energy charge/W.h", "<f8"),
    124: ("Energy discharge/W.h", "<f8"),
    125: ("Capacitance charge/µF", "<f8"),
    126: ("Capacitance discharge/µF", "<f8"),
    131: ("Ns", "<u2"),
    163: ("|Estack|/V", "<f4"),
    168: ("Rcmp/Ohm", "<f4"),
    169: ("Cs/µF", "<f4"),
    172: ("Cp/µF", "<f4"),
    173: ("Cp-2/µF-2", "<f4"),
    174: ("<Ewe>/V", "<f4"),
    178: ("(Q-Qo)/C", "<f4"),
    179: ("dQ/C", "<f4"),
    211: ("Q charge/discharge/mA.h", "<f8"),
    212: ("half cycle", "<u4"),
    213: ("z cycle", "<u4"),
    217: ("THD Ewe/%", "<f4"),
    218: ("THD I/%", "<f4"),
    220: ("NSD Ewe/%", "<f4"),
    221: ("NSD I/%", "<f4"),
    223: ("NSR Ewe/%", "<f4"),
    224: ("NSR I/%", "<f4"),
    230: ("|Ewe h2|/V", "<f4"),
    231: ("|Ewe h3|/V", "<f4"),
    241: ("|E1|/V", "<f4"),
    242: ("|E2|/V", "<f4"),
    271: ("Phase(Z1)/deg", "<f4"),
    272: ("Phase(Z2)/deg", "<f4"),
    301: ("|Z1|/Ohm", "<f4"),
    302: ("|Z2|/Ohm", "<f4"),
    326: ("P/W", "<f4"),
    430: ("Phase(Zwe-ce)/deg", "<f4"),
    431: ("|Zwe-ce|/Ohm", "<f4"),
    432: ("Re(Zwe-ce)/Ohm", "<f4"),
    433: ("-Im(Zwe-ce)/Ohm", "<f4"),
    434: ("(Q-Qo)/C", "<f4"),
    435: ("dQ/C", "<f4"),
    438: ("step time/s", "<f8"),
    441: ("<Ecv>/V", "<f4"),
    462: ("Temperature/°C", "<f4"),
    467: ("Q charge/discharge/mA.h", "<f8"),
    468: ("half cycle", "<u4"),
    469: ("z cycle", "<u4"),
    471: ("<Ece>/V", "<f4"),
    473: ("THD Ewe/%", "<f4"),
    474: ("THD I/%", "<f4"),
    476: ("NSD Ewe/%", "<f4"),
    477: ("NSD I/%", "<f4"),
    479: ("NSR Ewe/%", "<f4"),
    480: ("NSR I/%", "<f4"),
}
# Where the rows start inside the data module, by module version.
DATA_START = {0: 0x195, 1: 0x195, 2: 0x195, 3: 0x196}
MAX_DATA_START = 0x1000


@dataclass(frozen=True)
class Module:
    short_name: str
    long_name: str
    version: int
    date: str
    offset: int  # of the module's data, in the file
    length: int


def sniff(head: bytes) -> bool:
    return head.startswith(MAGIC)


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1").strip()


def modules(path: str | Path, data: bytes) -> list[Module]:
    """The modules of an .mpr file, checked against the file's length."""
    if data[: len(MAGIC)] != MAGIC:
        raise ReaderError(path, "not a BioLogic .mpr file", offset=0, expected=repr(MAGIC))
    out: list[Module] = []
    pos = FILE_HEADER
    while pos < len(data):
        if data[pos : pos + 6] != MODULE_MARK:
            raise ReaderError(
                path,
                f"found {data[pos : pos + 6]!r}",
                offset=pos,
                expected="'MODULE' (the start of the next module) or the end of the file",
            )
        if pos + 45 > len(data):
            raise ReaderError(path, "module header cut short", offset=pos, expected="57 bytes")
        short, long_ = _text(data[pos + 6 : pos + 16]), _text(data[pos + 16 : pos + 41])
        (first,) = struct.unpack_from("<I", data, pos + 41)
        if pos + (65 if first == 0xFFFFFFFF else 57) > len(data):
            raise ReaderError(path, "module header cut short", offset=pos, expected="57/65 bytes")
        if first == 0xFFFFFFFF:
            # EC-Lab >= 11.50: 0xFFFFFFFF, length, version, a fourth u32 (10, or 11 for the
            # data module), date: galvani's VMPmodule_hdr_v2
            length, version = struct.unpack_from("<II", data, pos + 45)
            date, start = data[pos + 57 : pos + 65], pos + 65
        else:
            length, version = struct.unpack_from("<II", data, pos + 41)
            date, start = data[pos + 49 : pos + 57], pos + 57
        if start + length > len(data):
            raise ReaderError(
                path,
                f"module {long_!r} announces {length} bytes, the file holds {len(data) - start}",
                offset=pos + 41,
                expected="a module length within the file (is the file truncated?)",
            )
        out.append(Module(short, long_, version, _text(date), start, length))
        pos = start + length
    return out


def _layout(
    path: str | Path, data: bytes, mod: Module, notes: Notes
) -> tuple[int, np.dtype, list[int], dict[str, int]]:
    """Row count, row dtype, column IDs and flag masks of the data module."""
    base = mod.offset
    if mod.length < 5:
        raise ReaderError(path, "data module too short", offset=base, expected="row/column counts")
    n_rows, n_cols = struct.unpack_from("<IB", data, base)
    ids_end = 5 + 2 * n_cols
    if ids_end > mod.length:
        raise ReaderError(path, f"{n_cols} column IDs do not fit", offset=base + 4)
    ids = list(struct.unpack_from(f"<{n_cols}H", data, base + 5))
    if len(set(ids)) != len(ids):
        raise ReaderError(path, f"column IDs repeat: {ids}", offset=base + 5)
    fields: list[tuple[str, str]] = []
    masks: dict[str, int] = {}
    unknown: list[tuple[int, int]] = []
    for k, cid in enumerate(ids):
        if cid in FLAGS:
            if "flags" not in (f[0] for f in fields):
                fields.append(("flags", "u1"))
            name, mask = FLAGS[cid]
            masks[name] = mask
        elif cid in COLUMNS:
            name, typ = COLUMNS[cid]
            if name in (f[0] for f in fields):
                name = f"{name}#{cid}"
            fields.append((name, typ))
        else:
            unknown.append((cid, k))
            fields.append((f"unknown#{cid}", "?"))
    known_width = sum(np.dtype(t).itemsize for _, t in fields if t != "?")
    start = DATA_START.get(mod.version)
    if start is None:
        raise ReaderError(
            path,
            f"data module version {mod.version} is not supported",
            offset=mod.offset - 16,
            expected=f"one of {sorted(DATA_START)}",
        )
    if unknown:
        if len(unknown) > 1 or n_rows == 0:
            cids = ", ".join(str(c) for c, _ in unknown)
            raise ReaderError(
                path,
                f"column ID(s) {cids} unknown; their widths cannot be told apart",
                offset=base + 5 + 2 * unknown[0][1],
                expected=f"IDs from the table in {__name__}",
            )
        width, rest = divmod(mod.length - start, n_rows)
        width -= known_width
        if rest or width not in (1, 2, 4, 8):
            raise ReaderError(
                path,
                f"column ID {unknown[0][0]} unknown and the row length does not reveal its width",
                offset=base + 5 + 2 * unknown[0][1],
                expected="a known column ID",
            )
        cid = unknown[0][0]
        notes.warn(f"unknown column ID {cid} ({width}-byte) skipped")
        fields = [(n, f"V{width}" if t == "?" else t) for n, t in fields]
    row = np.dtype(fields)
    need = n_rows * row.itemsize
    if start + need != mod.length:
        # Fall back on the layout the lengths imply, if it is a plausible header size.
        alt = mod.length - need
        if ids_end <= alt <= MAX_DATA_START:
            start = alt
        else:
            raise ReaderError(
                path,
                f"{n_rows} rows of {row.itemsize} bytes do not fit the data module of "
                f"{mod.length} bytes",
                offset=base,
                expected="a row count matching the module length (is the file truncated?)",
            )
    return n_rows, row, ids, masks | {"_start": start}


def _ole_start(data: bytes, mods: list[Module]) -> float | None:
    """The acquisition start (unix s): an OLE date in the LOG module near the modules' dates."""
    log = next((m for m in mods if m.short_name == "VMP LOG"), None)
    if log is None:
        return None
    days = []
    for m in mods:
        for fmt in ("%m/%d/%y", "%m.%d.%y", "%m-%d-%y"):
            try:
                d = datetime.strptime(m.date, fmt).replace(tzinfo=UTC)
                days.append((d - OLE_EPOCH).days)
                break
            except ValueError:
                continue
    if not days:
        return None
    lo, hi = min(days) - 1, max(days) + 2
    blob = data[log.offset : log.offset + log.length]
    if len(blob) < 8:
        return None
    # Every 8-byte window as a double: one strided view instead of a loop over offsets.
    windows = np.lib.stride_tricks.sliding_window_view(np.frombuffer(blob, np.uint8), 8)
    values = np.ascontiguousarray(windows).view("<f8").ravel()
    hits = np.flatnonzero((values >= lo) & (values <= hi))
    if hits.size == 0:
        return None
    return (OLE_EPOCH + timedelta(days=float(values[hits[0]]))).timestamp()


def _columns(path, data: bytes, mod: Module, notes: Notes):
    """The data module's columns by EC-Lab name, and row index -> error location."""
    n_rows, row, _, masks = _layout(path, data, mod, notes)
    start = mod.offset + masks.pop("_start")
    rec = np.frombuffer(data, dtype=row, count=n_rows, offset=start)
    return _Columns(rec, masks), lambda r: {"offset": start + int(r) * row.itemsize}


class _Columns(Mapping):
    """The data module's columns by name, each unpacked from the packed rows when first asked
    for (a read needs a handful of the file's tens of columns)."""

    def __init__(self, rec: np.ndarray, masks: dict[str, int]):
        self._rec, self._masks, self._done = rec, masks, {}
        names = [n for n in rec.dtype.names if not n.startswith("unknown#")]
        self._names = [m for n in names for m in (masks if n == "flags" else [n])]

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._done:
            if name in self._masks:
                mask = self._masks[name]
                shift = (mask & -mask).bit_length() - 1
                self._done[name] = (self._rec["flags"] & mask) >> shift
            elif name in self._names:
                self._done[name] = self._rec[name]
            else:
                raise KeyError(name)
        return self._done[name]

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    @property
    def rows(self) -> int:
        return self._rec.size


def _counter(path, values: np.ndarray, name: str, locate) -> np.ndarray:
    """A float or integer counter column as int64; a value that is no whole number is an error."""
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values) | (np.abs(values) > 2**31) | (values != np.round(values))
        if bad.any():
            row = int(np.argmax(bad))
            raise ReaderError(
                path,
                f"{name} value {values[row]!r} is not a whole number",
                expected="a counter",
                **locate(row),
            )
    return values.astype(np.int64)


def vendor_columns(path: str | Path) -> dict[str, np.ndarray]:
    """Every column of the data module by its EC-Lab name, in the vendor's units (for checks)."""
    data = Path(path).read_bytes()
    mod = next((m for m in modules(path, data) if m.short_name == "VMP data"), None)
    if mod is None:
        raise ReaderError(path, "no 'VMP data' module", expected="a data module")
    return dict(_columns(path, data, mod, Notes(path))[0])


def _first(cols: dict[str, np.ndarray], *names: str) -> np.ndarray | None:
    for n in names:
        if n in cols:
            return cols[n]
    return None


def read_mpr(path: str | Path, kind: str | None = None) -> ReadResult:
    """Read an .mpr file; ``kind`` picks samples or spectra from a file holding both.

    The file is mapped, not copied: the rows are read where the page cache holds them (the
    frame's columns are copies; the mapping closes when the last view of it goes)."""
    try:
        with open(path, "rb") as f:
            data = (
                mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                if os.fstat(f.fileno()).st_size
                else b""
            )
    except (OSError, ValueError) as exc:
        raise ReaderError(path, f"cannot read the file: {exc}") from None
    return parse_mpr(path, data, kind)


def parse_mpr(path: str | Path, data: bytes, kind: str | None = None) -> ReadResult:
    """:func:`read_mpr` on the file's bytes (``path`` names it in messages)."""
    notes = Notes(path)
    mods = modules(path, data)
    data_mods = [m for m in mods if m.short_name == "VMP data"]
    if not data_mods:
        raise ReaderError(path, "no 'VMP data' module", expected="a data module")
    if len(data_mods) > 1:
        notes.warn(f"{len(data_mods)} data modules; the first is read")
    for m in mods:
        if m.short_name not in KNOWN_MODULES:
            notes.warn(f"module {m.long_name!r} at offset {m.offset} skipped")
    cols, locate = _columns(path, data, data_mods[0], notes)
    n = cols.rows
    start = _ole_start(data, mods)
    freq = _first(cols, "freq/Hz")
    is_eis = freq > 0 if freq is not None else np.zeros(n, dtype=bool)
    n_eis = int(is_eis.sum())
    if kind is None:
        # An impedance technique (PEIS, GEIS) also logs a few points without a frequency (the
        # waits and drift checks of a GEIS): read as spectra when most points are impedance.
        kind = "spectra" if n and 2 * n_eis >= n else "samples"
    meta = {
        "instrument": "BioLogic",
        "modules": [m.long_name for m in mods],
        "data_version": data_mods[0].version,
        "columns": [c for c in cols if c not in FLAGS_NAMES],
        "impedance_points": n_eis,
        "start_time_known": start is not None,
        "kinds": [k for k, has in (("samples", n_eis < n), ("spectra", n_eis > 0)) if has],
    }
    time = _first(cols, "time/s")
    if time is None:
        raise ReaderError(path, "no time/s column (ID 4)", offset=data_mods[0].offset + 5)
    if kind == "spectra":
        frame = _spectra(path, cols, is_eis, start, locate)
    else:
        frame = _samples(path, cols, start, notes, locate)
    return ReadResult(kind, frame, "biologic-mpr", meta, notes.items)


FLAGS_NAMES = {name for name, _ in FLAGS.values()}


def _samples(path, cols: dict[str, np.ndarray], start, notes: Notes, locate) -> pl.DataFrame:
    out: dict[str, np.ndarray] = {"test_time_second": cols["time/s"].astype(np.float64)}
    volt = _first(cols, "Ewe/V", "<Ewe>/V", "Ecell/V")
    if volt is None:
        raise ReaderError(path, "no voltage column (Ewe/V, <Ewe>/V)", expected="ID 6 or 77")
    out["voltage_volt"] = volt.astype(np.float64)
    cur = _first(cols, "I/mA", "<I>/mA")
    if cur is None:
        notes.warn("no current column (an open-circuit technique?): current set to 0")
        cur = np.zeros(len(volt))
    out["current_ampere"] = cur.astype(np.float64) * 1e-3
    dq = _first(cols, "dq/mA.h", "dQ/mA.h")
    if dq is not None:
        out["_dq"] = dq.astype(np.float64) * 1e-3
    cycle = _first(cols, "cycle number")
    half = _first(cols, "half cycle")
    if cycle is not None:
        out["cycle_count"] = _counter(path, cycle, "cycle number", locate) + 1
    elif half is not None:
        # EC-Lab's own cycle number: two half cycles (charge/discharge alternance) per cycle.
        out["cycle_count"] = half.astype(np.int64) // 2 + 1
    ns = _first(cols, "Ns")
    if ns is not None:
        out["step_index"] = ns.astype(np.int64)
    temp = _first(cols, "Temperature/°C")
    if temp is not None:
        out["temperature_celsius"] = temp.astype(np.float64)
    cycles = out.get("cycle_count")
    if "_dq" in out and (cycles is None or np.all(cycles[1:] >= cycles[:-1])):
        dq = out.pop("_dq")  # finite checked with the other columns below
        charge, discharge = cycle_capacities(np.where(np.isfinite(dq), dq, 0.0), cycles)
        out["charging_capacity_ampere_hour"] = charge
        out["discharging_capacity_ampere_hour"] = discharge
        return finish_samples(path, pl.DataFrame(out), start_unix=start, line_of=locate)
    df = capacities_per_cycle(pl.DataFrame(out))
    return finish_samples(path, df, start_unix=start, line_of=locate)


def _spectra(path, cols: dict[str, np.ndarray], is_eis: np.ndarray, start, locate) -> pl.DataFrame:
    if not is_eis.any():
        raise ReaderError(path, "no impedance points (no freq/Hz > 0)", expected="a PEIS/GEIS file")
    pick = {k: v[is_eis] for k, v in cols.items()}
    out: dict[str, np.ndarray] = {
        "test_time_second": pick["time/s"].astype(np.float64),
        "frequency_hertz": pick["freq/Hz"].astype(np.float64),
    }
    if "Re(Z)/Ohm" in pick and "-Im(Z)/Ohm" in pick:
        out["z_real_ohm"] = pick["Re(Z)/Ohm"].astype(np.float64)
        out["z_imag_ohm"] = -pick["-Im(Z)/Ohm"].astype(np.float64)
    elif "|Z|/Ohm" in pick and "Phase(Z)/deg" in pick:
        mag = pick["|Z|/Ohm"].astype(np.float64)
        phase = np.deg2rad(pick["Phase(Z)/deg"].astype(np.float64))
        out["z_real_ohm"] = mag * np.cos(phase)
        out["z_imag_ohm"] = mag * np.sin(phase)
    else:
        raise ReaderError(path, "no impedance columns", expected="Re(Z)/-Im(Z) or |Z|/Phase(Z)")
    out["sweep_index"] = sweep_numbers(
        out["frequency_hertz"], _first(pick, "z cycle"), _first(pick, "cycle number")
    )
    volt = _first(pick, "Ewe/V", "<Ewe>/V")
    if volt is not None:
        out["dc_voltage_volt"] = volt.astype(np.float64)
    cur = _first(pick, "I/mA", "<I>/mA")
    if cur is not None:
        out["dc_current_ampere"] = cur.astype(np.float64) * 1e-3
    cycle = _first(pick, "cycle number")
    if cycle is not None:
        out["cycle_count"] = _counter(path, cycle, "cycle number", locate) + 1
    rows = np.flatnonzero(is_eis)
    return finish_spectra(
        path, pl.DataFrame(out), start_unix=start, line_of=lambda r: locate(rows[r])
    )
