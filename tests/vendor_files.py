"""Builders of small vendor files for the reader tests and the fuzzers.

They write the structures the readers document (module headers, column IDs, packed rows) from
numbers the test chooses, so that the expected values are known exactly.
"""

from __future__ import annotations

import struct

import numpy as np

MPR_MAGIC = b"BIO-LOGIC MODULAR FILE\x1a" + b" " * 25 + b"\0\0\0\0"
MPR_TYPES = {
    4: "<f8",
    6: "<f4",
    7: "<f8",
    8: "<f4",
    24: "<f8",
    32: "<f4",
    37: "<f4",
    38: "<f4",
    131: "<u2",
    468: "<u4",
    469: "<u4",
}


def mpr_module(short: str, data: bytes, version: int = 0, *, new_header: bool = False) -> bytes:
    head = b"MODULE" + short.encode().ljust(10) + short.encode().ljust(25)
    if new_header:
        head += struct.pack("<III", 0xFFFFFFFF, len(data), version)
    else:
        head += struct.pack("<II", len(data), version)
    return head + b"03/16/17" + data


def mpr_data(
    columns: dict[int, np.ndarray],
    *,
    flags: np.ndarray | None = None,
    version: int = 2,
    extra: dict[int, str] | None = None,
) -> bytes:
    """A VMP data module body: counts, IDs, padding to the version's data offset, packed rows."""
    types = {**MPR_TYPES, **(extra or {})}
    ids = ([1] if flags is not None else []) + list(columns)
    n = len(next(iter(columns.values())))
    fields = ([("flags", "u1")] if flags is not None else []) + [
        (str(c), types[c]) for c in columns
    ]
    rows = np.zeros(n, dtype=np.dtype(fields))
    if flags is not None:
        rows["flags"] = flags
    for c, v in columns.items():
        rows[str(c)] = v
    head = struct.pack("<IB", n, len(ids)) + struct.pack(f"<{len(ids)}H", *ids)
    start = 0x195 if version < 3 else 0x196
    return head.ljust(start, b"\0") + rows.tobytes()


def mpr_file(
    columns: dict[int, np.ndarray],
    *,
    version: int = 2,
    new_header: bool = False,
    extra: dict[int, str] | None = None,
    log_ole_day: float | None = 42810.5,
) -> bytes:
    settings = mpr_module("VMP Set", b"\0" * 64)
    data = mpr_module(
        "VMP data", mpr_data(columns, version=version, extra=extra), version, new_header=new_header
    )
    log = b""
    if log_ole_day is not None:
        log = mpr_module("VMP LOG", b"\0" * 17 + struct.pack("<d", log_ole_day) + b"\0" * 40)
    return MPR_MAGIC + settings + data + log


def gcpl_columns(n_cycles: int = 3, per_half: int = 20, current_ma: float = 1.0):
    """A galvanostatic cycling table: charge then discharge per cycle, 10 s per record."""
    n = 2 * n_cycles * per_half
    t = np.arange(n) * 10.0
    half = np.arange(n) // per_half
    current = np.where(half % 2 == 0, current_ma, -current_ma)
    dq = current * 10.0 / 3600.0  # mA.h per record
    dq[0] = 0.0
    volt = 3.0 + 0.01 * (np.arange(n) % per_half) * np.where(half % 2 == 0, 1, -1)
    return {
        4: t,
        6: volt,
        8: current,
        7: dq,
        24: (half // 2).astype(float),
        131: (half % 2).astype(np.uint16),
    }
