"""Neware .nda files of BTS 9.1: file version 130 with variable-length records.

The layout is the one the public reader fastnda describes (``_read_nda_130_91``; its code was
read, not copied): after the 1024-byte header, records of one length that the file chooses
(52 bytes, 56 with an auxiliary temperature, more with further auxiliary channels), each
starting with the same two identifier bytes, the first of them ``0x55``. Little-endian:

* ``u1`` protocol step at 2 (from 1), ``u1`` step type at 3, ``u32`` record number at 8;
* ``u32`` test time / s at 12 and its ``u32`` nanoseconds at 16;
* ``f32`` current / mA at 20, ``f32`` voltage / V at 24;
* ``f32`` capacity / mA s at 28 and ``f32`` energy / mW s at 32 of the step, positive on charge
  and negative on discharge;
* ``u32`` cycle at 36 (from 0);
* ``u32`` unix time / s at 44 and its ``u32`` nanoseconds at 48;
* ``f32`` temperature / degC at 52, where the records are 56 bytes or longer.

The record length is where the identifier repeats; records with another identifier (the
closing blocks) end the data. The frame is that of :mod:`.neware_nda` for BTS 9.0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from .base import Notes, ReaderError

HEADER = 1024
MIN_RECORD, MAX_RECORD = 52, 512
_FIELDS = [
    ("ident", "V2"), ("step", "u1"), ("status", "u1"), ("_a", "V4"), ("index", "<u4"),
    ("test_s", "<u4"), ("test_ns", "<u4"), ("curr", "<f4"), ("volt", "<f4"), ("cap", "<f4"),
    ("energy", "<f4"), ("cycle", "<u4"), ("_b", "V4"), ("unix_s", "<u4"), ("unix_ns", "<u4"),
]  # fmt: skip
_BASE = np.dtype(_FIELDS)
assert _BASE.itemsize == MIN_RECORD
FIELD_AT = {name: _BASE.fields[name][1] for name in _BASE.names}


def is_bts91(data: bytes) -> bool:
    """Version-130 files whose first record starts with 0x55 (BTS 9.0 records start 0x12)."""
    return len(data) > HEADER and data[HEADER] == 0x55


def record_length(path: str | Path, data: bytes) -> int:
    """The record length: the smallest at which the identifier repeats for the first records."""
    ident = data[HEADER : HEADER + 2]
    n_data = len(data) - HEADER
    for size in range(MIN_RECORD, MAX_RECORD + 1):
        check = min(3, n_data // size)
        if check >= 2 or (check == 1 and n_data == size):
            at = [HEADER + k * size for k in range(check)]
            if all(data[a : a + 2] == ident for a in at):
                return size
    raise ReaderError(
        path,
        f"the record identifier {ident.hex()} does not repeat at a record length of "
        f"{MIN_RECORD}-{MAX_RECORD} bytes",
        offset=HEADER,
        expected="BTS 9.1 records of one length, each starting with the same two bytes",
    )


def read_91(path: str | Path, data: bytes, notes: Notes, meta: dict, finish) -> pl.DataFrame:
    """The samples of a BTS 9.1 file; ``finish`` is :func:`.neware_nda._finish`."""
    from .neware_nda import _check_steps, _in_order, _step_starts

    size = record_length(path, data)
    n = (len(data) - HEADER) // size
    slots = np.frombuffer(data, dtype=np.uint8, count=n * size, offset=HEADER).reshape(n, size)
    ident = slots[0, :2]
    mine = np.all(slots[:, :2] == ident, axis=1)
    end = int(np.argmin(mine)) if not mine.all() else n
    offsets = HEADER + size * np.arange(end, dtype=np.int64)
    if end < n:
        if mine[end:].any():
            at = HEADER + size * end
            raise ReaderError(
                path,
                f"a record without the identifier {ident.tobytes().hex()} between data records",
                offset=at,
                expected=f"{size}-byte records starting {ident.tobytes().hex()}",
            )
        meta["closing_block_offset"] = HEADER + size * end
    elif (len(data) - HEADER) % size:
        notes.warn(
            f"torn final record at byte offset {HEADER + size * n} "
            f"({(len(data) - HEADER) % size} of {size} bytes) dropped"
        )
    extra = [("temp", "<f4")] if size >= 56 else []
    rest = size - MIN_RECORD - 4 * len(extra)
    dtype = np.dtype([*_FIELDS, *extra, *([("_c", f"V{rest}")] if rest else [])])
    rec = np.ascontiguousarray(slots[:end]).view(dtype).reshape(-1)
    rec, offsets = _in_order(path, rec, offsets, notes, FIELD_AT["index"])
    _check_steps(path, rec, offsets, FIELD_AT)
    for name in ("curr", "volt", "cap", "energy"):
        bad = ~np.isfinite(rec[name])
        if bad.any():
            row = int(np.argmax(bad))
            raise ReaderError(
                path,
                f"value {float(rec[name][row])!r} is not a finite number",
                offset=int(offsets[row]) + FIELD_AT[name],
                expected="a finite number",
            )
    step = rec["step"].astype(np.int64)
    cycle = rec["cycle"].astype(np.int64) + 1
    step_count = np.cumsum(_step_starts(step, cycle))
    cap = rec["cap"].astype(np.float64) / 3.6e6  # mA s to Ah
    energy = rec["energy"].astype(np.float64) / 3.6e6  # mW s to Wh
    columns = {
        "test_time_second": rec["test_s"] + rec["test_ns"].astype(np.float64) / 1e9,
        "unix_time_second": rec["unix_s"] + rec["unix_ns"].astype(np.float64) / 1e9,
        "voltage_volt": rec["volt"].astype(np.float64),
        "current_ampere": rec["curr"].astype(np.float64) / 1000.0,
        "cycle_count": cycle,
        "step_index": step - 1,
        "step_count": step_count,
        "charging_capacity_ampere_hour": np.clip(cap, 0.0, None),
        "discharging_capacity_ampere_hour": np.clip(-cap, 0.0, None),
        "charging_energy_watt_hour": np.clip(energy, 0.0, None),
        "discharging_energy_watt_hour": np.clip(-energy, 0.0, None),
    }
    temperature = None
    if size >= 56:
        temperature = rec["temp"].astype(np.float64)
        temperature = np.where(np.isfinite(temperature), temperature, np.nan)
    meta.update(
        {
            "bts": "9.1",
            "record_length": size,
            "start_time_known": True,
            "clock": "unix time of each record (s + ns)",
        }
    )
    return finish(path, columns, offsets, temperature, meta, rec["status"])
