"""Neware .nda files: BTS 7 (file versions 26, 28, 29) and the BTS 9.0 layout of version 130.

No real .nda was available to the project: the layout below is what the public descriptions of
the format say (the NewareNDA and fastnda projects), and the tests check this reader against
files written byte by byte from it (``tests/vendor_files.py``). Little-endian throughout.

Header

* bytes 0-5 ``NEWARE``; byte 14 the file version;
* ``u32`` at 16 points at a block whose ``i32`` at +26 is the channel's current range code, used
  for records that carry range 0.

Versions 26, 28, 29: 86-byte records from the first data record to the end of the file

* data record (type byte 0x55): ``u32`` record number at 2 (from 1), ``u32`` cycle at 6 (from 0),
  ``u16`` protocol step at 10 (from 1), step type at 12, step-change counter at 13, ``u64`` step
  time / ms at 14, ``i32`` voltage / 0.1 mV at 22, ``i32`` current at 26, ``i64`` charge and
  discharge capacity and energy of the step at 38, 46, 54, 62, wall-clock date at 70 (``u16``
  year, then month, day, hour, minute, second bytes; no zone: read as UTC, like the wall-clock
  columns of the text exports), ``i32`` current range code at 78;
* current (mA) is the raw integer times the range's factor (:data:`RANGE_FACTOR`); capacity (mAh)
  and energy (mWh) are the raw integers times the factor / 3600;
* auxiliary record (type byte 0x65): channel at 1, ``u32`` record number of the data record it
  belongs to at 2, ``i16`` temperature / 0.1 degC at 34.

Version 130 (BTS 9.0): a 1024-byte header, then 88-byte records

* byte 4 is the record type (0x55 data; 0x58, 0x59, 0x65 auxiliary, skipped: their layout is not
  known); the first record whose type is none of these starts the closing blocks (test
  information), which are not read;
* data record: protocol step at 9 (from 1), step type at 10, ``u32`` record number at 16, ``u64``
  step time / us at 28, ``f32`` voltage / V at 36, ``f32`` current / mA at 40, ``f32`` charge
  capacity, charge energy, discharge capacity, discharge energy of the step (mA s, mW s) at 52,
  56, 60, 64 (the discharge ones stored negative, read as magnitudes), ``u64`` unix time / us
  at 68. (fastnda reads a single signed capacity at 60 and energy at 64 for these files;
  NewareNDA the four fields read here.) The records carry no cycle number:
  a cycle starts at the first charge step after a discharge step (BTSDA's "charge first").
  Files whose first record starts with 0x55 are BTS 9.1 (variable record length):
  :mod:`.neware_nda91`.

The canonical frame is that of :func:`.neware_ndax.read_ndax` (cycle from 1, step index from 0,
a new step count at every step) plus the energies; the per-step capacities and energies become
per-cycle running totals like those of the BTSDA csv export. Test time: for versions 26-29 the
step times added up (each step starts where the one before ended; the wall clock has whole
seconds only), for version 130 the unix time less that of the start of the first record's step.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import polars as pl

from .base import Notes, ReaderError, ReadResult, finish_samples, read_bytes, steps_to_cycle_totals

NDA_MAGIC = b"NEWARE"
VERSION_AT = 14
RANGE_POINTER_AT = 16
RANGE_IN_BLOCK = 26
V29_VERSIONS = (26, 28, 29)
V29_SEARCH = 1 << 20  # the first data record starts within the first MiB (after the header)
V130 = 130
SUPPORTED = (*V29_VERSIONS, V130)
V130_HEADER = 1024
DATA, AUX, V29_OTHER = 0x55, 0x65, 0xAA
V29_KINDS = (DATA, AUX, V29_OTHER)
V130_AUX = (0x58, 0x59, 0x65)
V130_TYPES = (DATA, *V130_AUX)
_V130_KNOWN = np.zeros(256, dtype=bool)
_V130_KNOWN[list(V130_TYPES)] = True

# Step type byte -> name, as BTSDA shows it.
STEP_TYPES = {
    1: "CC_Chg", 2: "CC_DChg", 3: "CV_Chg", 4: "Rest", 5: "Cycle", 7: "CCCV_Chg", 8: "CP_DChg",
    9: "CP_Chg", 10: "CR_DChg", 13: "Pause", 16: "Pulse", 17: "SIM", 19: "CV_DChg",
    20: "CCCV_DChg", 21: "Control", 22: "OCV", 26: "CPCV_DChg", 27: "CPCV_Chg",
}  # fmt: skip
CHARGE_TYPES = (1, 3, 7, 9, 27)
DISCHARGE_TYPES = (2, 8, 10, 19, 20, 26)
# Lookup tables by step type byte: known, and +1 charge / -1 discharge / 0 neither.
_KNOWN_TYPE = np.zeros(256, dtype=bool)
_KNOWN_TYPE[list(STEP_TYPES)] = True
_DIRECTION = np.zeros(256, dtype=np.int8)
_DIRECTION[list(CHARGE_TYPES)] = 1
_DIRECTION[list(DISCHARGE_TYPES)] = -1
_DIRECTION[17] = -1  # SIM ends a cycle like a discharge (BTSDA's "charge first" count)

# Current range code of a record -> factor from its raw integers to mA (and mA s, mW s).
RANGE_FACTOR = {
    -100000000: 10.0,
    **dict.fromkeys((-200000, -100000, -60000, -50000, -40000, -30000, -20000, -12000, -10000,
                     -6000, -5000, -3000, -2000, -1000), 1e-2),
    **dict.fromkeys((-500, -100), 1e-3),
    **dict.fromkeys((-50, -25, -20, -10), 1e-4),
    **dict.fromkeys((-5, -2, -1), 1e-5),
    **dict.fromkeys((1, 2, 5), 1e-4),
    **dict.fromkeys((10, 20, 25, 50), 1e-3),
    **dict.fromkeys((100, 200, 250, 500), 1e-2),
    **dict.fromkeys((1000, 6000, 10000, 12000, 20000, 30000, 40000, 50000, 60000, 100000,
                     200000), 1e-1),
}  # fmt: skip
_RANGE_CODES = np.array(sorted(RANGE_FACTOR), dtype=np.int64)
_RANGE_VALUES = np.array([RANGE_FACTOR[c] for c in sorted(RANGE_FACTOR)])

V29_RECORD = np.dtype(
    [("kind", "u1"), ("aux", "u1"), ("index", "<u4"), ("cycle", "<u4"), ("step", "<u2"),
     ("status", "u1"), ("jump", "u1"), ("step_ms", "<u8"), ("volt", "<i4"), ("curr", "<i4"),
     ("_a", "V8"), ("chg_cap", "<i8"), ("dchg_cap", "<i8"), ("chg_en", "<i8"),
     ("dchg_en", "<i8"), ("year", "<u2"), ("month", "u1"), ("day", "u1"), ("hour", "u1"),
     ("minute", "u1"), ("second", "u1"), ("_b", "V1"), ("range", "<i4"), ("_c", "V4")]
)  # fmt: skip
V29_AUX = np.dtype(
    [("kind", "u1"), ("channel", "u1"), ("index", "<u4"), ("_a", "V16"), ("volt", "<i4"),
     ("_b", "V8"), ("temp", "<i2"), ("_c", "V50")]
)  # fmt: skip
V130_RECORD = np.dtype(
    [("tag", "V4"), ("kind", "u1"), ("_a", "V4"), ("step", "u1"), ("status", "u1"),
     ("_b", "V5"), ("index", "<u4"), ("_c", "V8"), ("step_us", "<u8"), ("volt", "<f4"),
     ("curr", "<f4"), ("_d", "V8"), ("chg_cap", "<f4"), ("chg_en", "<f4"), ("dchg_cap", "<f4"),
     ("dchg_en", "<f4"), ("unix_us", "<u8"), ("_e", "V12")]
)  # fmt: skip
assert V29_RECORD.itemsize == V29_AUX.itemsize == 86
assert V130_RECORD.itemsize == 88
V29_SIZE, V130_SIZE = 86, 88
_YEAR_2201 = 7_289_654_400.0  # 2201-01-01 UTC, s
_FIELD_AT = {name: V29_RECORD.fields[name][1] for name in V29_RECORD.names}
_FIELD_AT_130 = {name: V130_RECORD.fields[name][1] for name in V130_RECORD.names}


def sniff(head: bytes) -> bool:
    return head.startswith(NDA_MAGIC)


def read_nda(path: str | Path) -> ReadResult:
    return parse_nda(path, read_bytes(path))


def parse_nda(path: str | Path, data: bytes) -> ReadResult:
    """:func:`read_nda` on the file's bytes (``path`` names it in messages)."""
    notes = Notes(path)
    if not data.startswith(NDA_MAGIC):
        raise ReaderError(path, f"starts with {data[:6]!r}", offset=0, expected="b'NEWARE'")
    if len(data) <= VERSION_AT:
        raise ReaderError(
            path,
            f"the header ends after {len(data)} bytes",
            offset=len(data),
            expected=f"the file version at byte offset {VERSION_AT}",
        )
    version = data[VERSION_AT]
    if version not in SUPPORTED:
        raise ReaderError(
            path,
            f"nda file version {version} is not supported",
            offset=VERSION_AT,
            expected=f"version {', '.join(map(str, SUPPORTED))} (BTS 7, BTS 9.0); "
            "export other versions from BTSDA as csv or xlsx",
        )
    meta: dict = {"instrument": "Neware", "nda_version": int(version)}
    if version == V130:
        frame = _read_130(path, data, notes, meta)
    else:
        frame = _read_29(path, data, notes, meta)
    return ReadResult("samples", frame, "neware-nda", meta, notes.items)


# ------------------------------------------------------------------------------ shared steps


def _slots(data: bytes, start: int, size: int) -> np.ndarray:
    """The whole ``size``-byte records from ``start`` as rows of bytes."""
    n = (len(data) - start) // size
    return np.frombuffer(data, dtype=np.uint8, count=n * size, offset=start).reshape(n, size)


def _first_bad(path, mask: np.ndarray, offsets: np.ndarray, field_at: int, problem, expected):
    if mask.any():
        row = int(np.argmax(mask))
        raise ReaderError(
            path, problem(row), offset=int(offsets[row]) + field_at, expected=expected
        )


def _check_steps(path, rec: np.ndarray, offsets: np.ndarray, at: dict[str, int]) -> None:
    status = rec["status"]
    _first_bad(
        path,
        ~_KNOWN_TYPE[status],
        offsets,
        at["status"],
        lambda r: f"step type code {int(status[r])} is not known",
        expected=f"a Neware step type ({', '.join(map(str, sorted(STEP_TYPES)))})",
    )
    step = rec["step"].astype(np.int64)
    _first_bad(
        path,
        step < 1,
        offsets,
        at["step"],
        lambda r: f"protocol step {int(step[r])}",
        expected="step numbers from 1",
    )


def _in_order(path, rec: np.ndarray, offsets: np.ndarray, notes: Notes, at: int):
    """Records by record number: a record number seen before is dropped, disorder sorted."""
    index = rec["index"].astype(np.int64)
    _first_bad(
        path,
        index < 1,
        offsets,
        at,
        lambda r: f"record number {int(index[r])}",
        expected="record numbers from 1",
    )
    if index.size > 1 and np.all(index[1:] > index[:-1]):
        return rec, offsets
    _, first = np.unique(index, return_index=True)  # sorted by record number, first occurrence
    if first.size < index.size:
        notes.warn(f"{index.size - first.size} records repeat a record number; dropped")
    if np.any(np.diff(first) < 0):
        notes.warn("records are not in the order of their record numbers; sorted")
    return rec[first], offsets[first]


def _step_starts(*keys: np.ndarray) -> np.ndarray:
    """True where a new step starts: the first record and wherever one of ``keys`` changes."""
    new = np.zeros(keys[0].size, dtype=bool)
    new[0] = True
    for k in keys:
        new[1:] |= k[1:] != k[:-1]
    return new


def _elapsed(step_time: np.ndarray, step_count: np.ndarray) -> np.ndarray:
    """Test time from step times: each step starts where the steps before it ended."""
    last = np.r_[np.flatnonzero(np.diff(step_count)), step_count.size - 1]
    ends = step_time[last]
    before = np.r_[0.0, np.cumsum(ends)[:-1]]
    return step_time + before[step_count - 1]


def _factors(path, data: bytes, codes: np.ndarray, offsets: np.ndarray, at: int, start: int):
    """Factor from raw integers to mA for every record's range code (0: the header's range)."""
    codes = codes.astype(np.int64)
    if (codes == 0).any():
        codes = np.where(codes == 0, _header_range(path, data, start), codes)
    pos = np.clip(np.searchsorted(_RANGE_CODES, codes), 0, _RANGE_CODES.size - 1)
    _first_bad(
        path,
        _RANGE_CODES[pos] != codes,
        offsets,
        at,
        lambda r: f"current range code {int(codes[r])} is not known",
        expected="a Neware range code such as 1000 (factor 0.1) or -1000 (factor 0.01)",
    )
    return _RANGE_VALUES[pos]


def _header_range(path, data: bytes, start: int) -> int:
    pointer = struct.unpack_from("<I", data, RANGE_POINTER_AT)[0]
    at = pointer + RANGE_IN_BLOCK
    code = struct.unpack_from("<i", data, at)[0] if pointer > 0 and at + 4 <= start else None
    if code is None or code == 0 or code not in RANGE_FACTOR:
        raise ReaderError(
            path,
            "records carry current range 0 and the header gives no known range "
            f"(block pointer {pointer}, range {code})",
            offset=RANGE_POINTER_AT,
            expected="a pointer to the channel block with a Neware range code at +26",
        )
    return code


def cycles_from_steps(kinds: np.ndarray) -> np.ndarray:
    """Cycle (from 1) of every step from the steps' type codes, as BTSDA counts by default
    ("charge first"): a cycle starts at the first charge step after a discharge or SIM step;
    rests and other steps stay in the cycle they follow."""
    kind = _DIRECTION[np.asarray(kinds, dtype=np.uint8)]
    active = np.flatnonzero(kind != 0)
    k = kind[active]
    bump = np.zeros(kind.size, dtype=np.int64)
    bump[active[1:]] = (k[1:] == 1) & (k[:-1] == -1)
    return 1 + np.cumsum(bump)


def _cycles_from_steps(status: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Cycle of every record when the file has none (see :func:`cycles_from_steps`)."""
    first = np.flatnonzero(starts)
    per_step = cycles_from_steps(status[first])
    return np.repeat(per_step, np.diff(np.r_[first, status.size]))


def _finish(path, columns: dict, offsets: np.ndarray, temperature, meta: dict, status):
    # the records carry per-step running totals; the canonical frame per-cycle ones
    for name in ("charging_capacity_ampere_hour", "discharging_capacity_ampere_hour",
                 "charging_energy_watt_hour", "discharging_energy_watt_hour"):  # fmt: skip
        columns[name] = steps_to_cycle_totals(
            columns[name], columns["step_count"], columns["cycle_count"]
        )
    frame = pl.DataFrame(columns)
    if temperature is not None:
        column = pl.Series("temperature_celsius", temperature)
        frame = frame.with_columns(column.fill_nan(None) if np.isnan(temperature).any() else column)
    frame = finish_samples(path, frame, line_of=lambda r: {"offset": int(offsets[r])})
    meta["step_types"] = [STEP_TYPES[int(c)] for c in np.unique(status)]
    meta["records"] = frame.height
    return frame


def _torn(path, data: bytes, start: int, size: int, notes: Notes, looks_like_record) -> None:
    tail = (len(data) - start) % size
    if not tail:
        return
    at = len(data) - tail
    if looks_like_record(data[at:]):
        notes.warn(f"torn final record at byte offset {at} ({tail} of {size} bytes) dropped")
        return
    raise ReaderError(
        path,
        f"the record region from byte offset {start} is {len(data) - start} bytes, "
        f"not a whole number of {size}-byte records",
        offset=at,
        expected=f"{size}-byte records to the end of the file",
    )


# ------------------------------------------------------------------------- versions 26-29


def _v29_start(path, data: bytes) -> int:
    """Byte offset of the first data record: 0x55 0x00, a record number from 1, a known step
    type, and a record (0x55, 0x65) or the end of the file 86 bytes on."""
    pos = data.find(b"\x55\x00", VERSION_AT + 1, V29_SEARCH)
    while pos != -1 and pos + V29_SIZE <= len(data):
        index, _cycle, step, status = struct.unpack_from("<IIHB", data, pos + 2)
        nxt = pos + V29_SIZE
        follows = nxt >= len(data) or data[nxt] in V29_KINDS
        if index >= 1 and step >= 1 and status in STEP_TYPES and follows:
            _no_damaged_record_before(path, data, pos)
            return pos
        pos = data.find(b"\x55\x00", pos + 1, V29_SEARCH)
    raise ReaderError(
        path,
        f"no data record found in the first {V29_SEARCH} bytes",
        offset=VERSION_AT + 1,
        expected="86-byte records after the header, the first starting 0x55 0x00",
    )


def _no_damaged_record_before(path, data: bytes, start: int) -> None:
    """A data record's signature in the records just before the first valid one (walking back
    over auxiliary records) is a damaged first record, not header: raise rather than read the
    file without it."""
    prev = start - V29_SIZE
    while prev > VERSION_AT and data[prev] == AUX:
        prev -= V29_SIZE
    if prev > VERSION_AT and data[prev] == DATA and data[prev + 1] == 0:
        index, _cycle, step, status = struct.unpack_from("<IIHB", data, prev + 2)
        raise ReaderError(
            path,
            f"damaged first record (record number {index}, step {step}, step type {status})",
            offset=prev,
            expected="a record number from 1, a step from 1 and a known step type",
        )


def _read_29(path, data: bytes, notes: Notes, meta: dict) -> pl.DataFrame:
    start = _v29_start(path, data)
    meta.update(_versions(data[:start]))
    _torn(path, data, start, V29_SIZE, notes, lambda t: t[0] in V29_KINDS)
    slots = _slots(data, start, V29_SIZE)
    kind = slots[:, 0]
    offsets = start + V29_SIZE * np.arange(kind.size, dtype=np.int64)
    _first_bad(
        path,
        (kind != DATA) & (kind != AUX) & (kind != V29_OTHER),
        offsets,
        0,
        lambda r: f"record type byte 0x{int(kind[r]):02x}",
        expected=f"0x55 (data), 0x65 (auxiliary) or 0xaa every 86 bytes from byte offset {start}",
    )
    other = kind == V29_OTHER
    if other.any():  # BTSDA's own export skips these records too (same row count)
        meta["skipped_0xaa_records"] = int(other.sum())
        slots, kind, offsets = slots[~other], kind[~other], offsets[~other]
    is_data = kind == DATA
    rec = np.ascontiguousarray(slots[is_data]).view(V29_RECORD).reshape(-1)
    offsets = offsets[is_data]
    rec, offsets = _in_order(path, rec, offsets, notes, _FIELD_AT["index"])
    _check_steps(path, rec, offsets, _FIELD_AT)
    factor = _factors(path, data, rec["range"], offsets, _FIELD_AT["range"], start)
    unix = _wall_clock(path, rec, offsets)

    step = rec["step"].astype(np.int64)
    cycle = rec["cycle"].astype(np.int64) + 1
    step_count = np.cumsum(_step_starts(step, cycle, rec["jump"]))
    step_time = rec["step_ms"].astype(np.float64) / 1000.0
    to_ah = factor / 3600.0 / 1000.0  # raw * factor = mA s (mW s)
    columns = {
        "test_time_second": _elapsed(step_time, step_count),
        "unix_time_second": unix,
        "voltage_volt": rec["volt"].astype(np.float64) / 10000.0,
        "current_ampere": rec["curr"].astype(np.float64) * factor / 1000.0,
        "cycle_count": cycle,
        "step_index": step - 1,
        "step_count": step_count,
        "charging_capacity_ampere_hour": rec["chg_cap"].astype(np.float64) * to_ah,
        "discharging_capacity_ampere_hour": rec["dchg_cap"].astype(np.float64) * to_ah,
        "charging_energy_watt_hour": rec["chg_en"].astype(np.float64) * to_ah,
        "discharging_energy_watt_hour": rec["dchg_en"].astype(np.float64) * to_ah,
    }
    aux = np.ascontiguousarray(slots[~is_data]).view(V29_AUX).reshape(-1)
    temperature = _temperature(rec["index"], aux, notes, meta)
    meta.update(
        {
            "start_time_known": True,
            "clock": "wall-clock time of each record (whole seconds, no zone: read as UTC)",
            "first_record_offset": start,
        }
    )
    return _finish(path, columns, offsets, temperature, meta, rec["status"])


def _wall_clock(path, rec: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Unix seconds of the records' date fields (read as UTC)."""
    year, month, day = (rec[k].astype(np.int64) for k in ("year", "month", "day"))
    hour, minute, second = (rec[k].astype(np.int64) for k in ("hour", "minute", "second"))
    bad = (year < 1970) | (year > 2200) | (month < 1) | (month > 12) | (day < 1) | (day > 31)
    bad |= (hour > 23) | (minute > 59) | (second > 60)
    _first_bad(
        path,
        bad,
        offsets,
        _FIELD_AT["year"],
        lambda r: f"date {year[r]}-{month[r]}-{day[r]} {hour[r]}:{minute[r]}:{second[r]}",
        expected="a date and time from 1970 to 2200",
    )
    months = (year - 1970) * 12 + month - 1
    days = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64) + day - 1
    return (days * 86400 + hour * 3600 + minute * 60 + second).astype(np.float64)


def _temperature(index: np.ndarray, aux: np.ndarray, notes: Notes, meta: dict):
    """Temperatures of the lowest auxiliary channel, per data record (NaN where none)."""
    if aux.size == 0:
        return None
    channels = np.unique(aux["channel"])
    meta["aux_channels"] = [int(c) for c in channels]
    channel = channels[0]
    if channels.size > 1:
        notes.warn(f"auxiliary channels {[int(c) for c in channels[1:]]} skipped")
    mine = aux[aux["channel"] == channel]
    keys, first = np.unique(mine["index"], return_index=True)
    values = mine["temp"][first].astype(np.float64) / 10.0
    pos = np.clip(np.searchsorted(keys, index), 0, keys.size - 1)
    found = keys[pos] == index
    if not found.any():
        notes.warn(f"auxiliary channel {int(channel)} names no data record; skipped")
        return None
    if not found.all():
        notes.warn(
            f"{int((~found).sum())} of {index.size} records have no temperature on auxiliary "
            f"channel {int(channel)}; left empty"
        )
    meta["temperature_aux_channel"] = int(channel)
    return np.where(found, values[pos], np.nan)


def _versions(header: bytes) -> dict:
    """BTS server and client version strings, where the header carries them."""
    at = header.find(b"BTSServer")
    if at == -1:
        return {}

    def text(a: int) -> str:
        return header[a : a + 50].split(b"\0", 1)[0].decode("ascii", "replace").strip()

    return {"server_version": text(at), "client_version": text(at + 100)}


# ------------------------------------------------------------------------------ version 130


def _read_130(path, data: bytes, notes: Notes, meta: dict) -> pl.DataFrame:
    if len(data) < V130_HEADER:
        raise ReaderError(
            path,
            f"the header ends after {len(data)} bytes",
            offset=len(data),
            expected=f"a {V130_HEADER}-byte header, then 88-byte records",
        )
    from .neware_nda91 import is_bts91, read_91

    if is_bts91(data):
        return read_91(path, data, notes, meta, _finish)
    slots = _slots(data, V130_HEADER, V130_SIZE)
    kind = slots[:, 4]
    if kind.size == 0 or kind[0] != DATA:
        raise ReaderError(
            path,
            "no data record at the end of the header",
            offset=V130_HEADER + (4 if kind.size else 0),
            expected="an 88-byte record with type byte 0x55 at +4",
        )
    known = _V130_KNOWN[kind]
    end = int(np.argmin(known)) if not known.all() else kind.size
    offsets = V130_HEADER + V130_SIZE * np.arange(kind.size, dtype=np.int64)
    if end < kind.size:
        later = (kind[end:] == DATA) & np.all(slots[end:, :4] == slots[0, :4], axis=1)
        if later.any():
            raise ReaderError(
                path,
                f"record type byte 0x{int(kind[end]):02x} between data records",
                offset=int(offsets[end]) + 4,
                expected="0x55 (data) or an auxiliary type (0x58, 0x59, 0x65)",
            )
        meta["closing_block_offset"] = int(offsets[end])
    else:
        _torn(
            path, data, V130_HEADER, V130_SIZE, notes, lambda t: len(t) <= 4 or t[4] in V130_TYPES
        )
    region = slots[:end]
    is_data = region[:, 4] == DATA
    skipped = int((~is_data).sum())
    if skipped:
        notes.warn(
            f"{skipped} auxiliary records skipped (their layout in version 130 is not known)"
        )
    rec = np.ascontiguousarray(region[is_data]).view(V130_RECORD).reshape(-1)
    offsets = offsets[:end][is_data]
    rec, offsets = _in_order(path, rec, offsets, notes, _FIELD_AT_130["index"])
    _check_steps(path, rec, offsets, _FIELD_AT_130)
    for name in ("chg_cap", "chg_en", "dchg_cap", "dchg_en"):
        values = rec[name]
        _first_bad(
            path,
            ~np.isfinite(values),
            offsets,
            _FIELD_AT_130[name],
            lambda r, v=values: f"value {float(v[r])!r} is not a finite number",
            expected="a finite capacity or energy",
        )
    status = rec["status"]
    step = rec["step"].astype(np.int64)
    starts = _step_starts(step)
    step_count = np.cumsum(starts)
    cycle = _cycles_from_steps(status, starts)
    step_time = rec["step_us"].astype(np.float64) / 1e6
    unix = rec["unix_us"].astype(np.float64) / 1e6
    _first_bad(
        path,
        unix >= _YEAR_2201,
        offsets,
        _FIELD_AT_130["unix_us"],
        lambda r: f"unix time {unix[r]:.0f} s is after the year 2200",
        expected="a time from 1970 to 2200",
    )
    # The run starts where the first record's step started.
    test_time = unix - (unix[0] - step_time[0])
    columns = {
        "test_time_second": test_time,
        "unix_time_second": unix,
        "voltage_volt": rec["volt"].astype(np.float64),
        "current_ampere": rec["curr"].astype(np.float64) / 1000.0,
        "cycle_count": cycle,
        "step_index": step - 1,
        "step_count": step_count,
    }
    to_ah = 1.0 / 3600.0 / 1000.0  # mA s (mW s) to Ah (Wh)
    for src, name in (("chg_cap", "charging_capacity_ampere_hour"),
                      ("dchg_cap", "discharging_capacity_ampere_hour"),
                      ("chg_en", "charging_energy_watt_hour"),
                      ("dchg_en", "discharging_energy_watt_hour")):  # fmt: skip
        # BTS 9.0 stores the discharge counters negative (fastnda reads one signed capacity
        # at 60); the canonical counters are magnitudes
        columns[name] = np.abs(rec[src].astype(np.float64)) * to_ah
    meta.update(
        {
            "start_time_known": True,
            "clock": "unix time of each record (us)",
            "cycles": "derived: a cycle starts at the first charge step after a discharge step",
        }
    )
    return _finish(path, columns, offsets, None, meta, status)
