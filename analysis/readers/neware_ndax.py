"""Neware BTS .ndax files (BTS 7.6 to 8.x): a zip of XML metadata and binary ``.ndc`` tables.

What the reader relies on (little-endian; ndc versions 14, 16 and 17; the layouts are those the
public readers fastnda and NewareNDA describe, checked here against real files of each version):

* every ``.ndc`` starts with ``u16 file type, u16 version`` and a 4096-byte header, then pages of
  4096 bytes, each ``u16 page type, u16 record count``, a bit mask of the used record slots from
  page byte 4 (bit k of the mask, least significant first, for slot k), and the slots from page
  byte 132; a table's slots are numbered from 1 across its pages, used or not;
* ``data.ndc`` (type 1): one record per sample, ``f32 voltage, f32 current`` (versions 14 and 17:
  V and A; version 16: 0.1 mV and mA); the sample number is the slot number;
* ``data_step.ndc`` (type 7): one record per executed step (37 bytes in version 14, 100 in 16
  and 17): ``i32 cycle (from 0), i32 step ID of the protocol``, step type byte at 24, ``i32``
  first sample number at 33;
* ``data_runInfo.ndc`` (type 18): every n-th sample and the first of each step (55 bytes in
  version 14, 100 in 16 and 17): ``u32 step time / ms``, ``f32`` charge and discharge capacity
  and energy of the step from byte 5 (Ah and Wh; version 16: mA s and mW s), ``i32`` sampling
  interval / ms at 29, ``u32 unix time / s`` at 33, ``i32`` step number at 37, ``i32`` sample
  number at 41, ``i16`` milliseconds at 45;
* auxiliary tables (type 5): ``data_AUX_<channel>_<type>_<n>.ndc`` in version 17, one ``f32`` per
  sample, the channel type given in ``TestInfo.xml`` (103: temperature in degC);
  ``data_<n>.ndc`` in version 16, 7-byte records (``0x65``, ``f32`` voltage / 0.1 mV, ``i16``
  temperature / 0.1 degC).

Time and capacities as BTSDA shows them: at a runInfo record, the record's own values; at the
samples after it, its time plus the sampling interval per sample, its step capacities plus the
current of each sample times the interval. Cycles are the file's own cycle field, as BTSDA's
export numbers them (checked on the real files); the count BTSDA's "charge first" statistic
gives (a cycle starts at the first charge step after a discharge or SIM step) is in the metadata
as ``charge_first_cycles``. The test time is the step times
added up, as in BTSDA's "Total Time" (a paused channel's wall clock runs on; its test time does
not).
"""

from __future__ import annotations

import io
import re
import struct
import xml.etree.ElementTree as ET
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import polars as pl

from .base import Notes, ReaderError, ReadResult, finish_samples, read_bytes, steps_to_cycle_totals
from .neware_nda import STEP_TYPES, cycles_from_steps

Getter = Callable[[str], bytes]
ZIP_MAGIC = b"PK\x03\x04"
PAGE = 4096
FIRST_SLOT = 132  # page byte of the first record slot
SUPPORTED_NDC = (14, 16, 17)
_AUX_NAME = re.compile(r"data_AUX_(\d+)_(\d+)_(\d+)\.ndc$")
_AUX16_NAME = re.compile(r"data_(\d+)\.ndc$")
TEMPERATURE_CHANNEL_TYPE = 103
# Errors the zip and XML layers raise for a damaged archive; all become ReaderError.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    NotImplementedError,
    ValueError,
    struct.error,
    KeyError,
    RuntimeError,
    IndexError,
    OverflowError,
    UnicodeDecodeError,
    LookupError,
    ET.ParseError,
)

_STEP_FIELDS = [("cycle", "<i4"), ("step_id", "<i4"), ("_a", "V16"), ("status", "u1"),
                ("_b", "V8"), ("first", "<i4")]  # fmt: skip
_RUN_FIELDS = [("step_ms", "<u4"), ("_a", "u1"), ("chg_ah", "<f4"), ("dchg_ah", "<f4"),
               ("chg_wh", "<f4"), ("dchg_wh", "<f4"), ("_b", "V8"), ("dt_ms", "<i4"),
               ("unix", "<u4"), ("step", "<i4"), ("sample", "<i4"), ("ms", "<i2")]  # fmt: skip
_STEP = np.dtype([*_STEP_FIELDS, ("_c", "V63")])  # versions 16, 17: 100 bytes
_STEP14 = np.dtype(_STEP_FIELDS)  # 37 bytes
_RUN = np.dtype([*_RUN_FIELDS, ("_c", "V53")])  # versions 16, 17: 100 bytes
_RUN14 = np.dtype([*_RUN_FIELDS, ("_c", "V8")])  # 55 bytes
_DATA = np.dtype([("v", "<f4"), ("i", "<f4")])
_AUX17 = np.dtype("<f4")
_AUX16 = np.dtype([("kind", "u1"), ("v", "<f4"), ("t", "<i2")])
assert (_STEP.itemsize, _STEP14.itemsize, _RUN.itemsize, _RUN14.itemsize) == (100, 37, 100, 55)

# (file type, version) -> record dtype
_LAYOUT = {
    **{(1, v): _DATA for v in SUPPORTED_NDC},
    (7, 14): _STEP14, (7, 16): _STEP, (7, 17): _STEP,
    (18, 14): _RUN14, (18, 16): _RUN, (18, 17): _RUN,
    (5, 16): _AUX16, (5, 17): _AUX17, (5, 14): _AUX17,
}  # fmt: skip
# version -> (voltage to V, current to A, runInfo capacity to Ah and energy to Wh)
_SCALE = {14: (1.0, 1.0, 1.0), 16: (1e-4, 1e-3, 1.0 / 3.6e6), 17: (1.0, 1.0, 1.0)}


def sniff(head: bytes) -> bool:
    """A zip whose first member names are those of an .ndax (the local headers are in order)."""
    return head.startswith(ZIP_MAGIC) and (b"data.ndc" in head or b"Step.xml" in head or
                                           b"TestInfo.xml" in head)  # fmt: skip


def ndc_version(path: str | Path, name: str, blob: bytes, want_type: int) -> int:
    """The ndc version of a table, after checking its file type and size."""
    if len(blob) < 4:
        raise ReaderError(path, f"{name}: {len(blob)} bytes", offset=0, expected="an ndc header")
    ftype, version = struct.unpack_from("<HH", blob, 0)
    if ftype != want_type:
        raise ReaderError(path, f"{name}: file type {ftype}", offset=0, expected=f"{want_type}")
    if version not in SUPPORTED_NDC:
        raise ReaderError(
            path,
            f"{name}: ndc version {version} is not supported",
            offset=2,
            expected=f"version {', '.join(map(str, SUPPORTED_NDC))} (BTS 7.6 to 8.x); "
            "export other versions from BTSDA as csv or xlsx",
        )
    if len(blob) < PAGE or (len(blob) - PAGE) % PAGE:
        raise ReaderError(
            path,
            f"{name}: {len(blob)} bytes is not a header and whole pages",
            offset=len(blob) - (len(blob) - PAGE) % PAGE if len(blob) >= PAGE else 0,
            expected=f"4096 + n * {PAGE} bytes",
        )
    return int(version)


def ndc_table(
    path: str | Path, name: str, blob: bytes, want_type: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """The used records of an .ndc table, their slot numbers (from 1) and the ndc version."""
    version = ndc_version(path, name, blob, want_type)
    dtype = _LAYOUT[(want_type, version)]
    pages = np.frombuffer(blob, dtype=np.uint8, offset=PAGE).reshape(-1, PAGE)
    per_page = (PAGE - FIRST_SLOT - 1) // dtype.itemsize
    mask = pages[:, 4 : 4 + -(-per_page // 8)]
    used = np.unpackbits(mask, axis=1, bitorder="little")[:, :per_page].ravel().astype(bool)
    body = pages[:, FIRST_SLOT : FIRST_SLOT + per_page * dtype.itemsize]
    slots = np.flatnonzero(used)
    rows = np.ascontiguousarray(body).reshape(-1, dtype.itemsize)[slots]
    return np.ascontiguousarray(rows).view(dtype).reshape(-1), slots + 1, version


def ndc_records(path: str | Path, name: str, blob: bytes, want_type: int) -> np.ndarray:
    """The used records of an .ndc table, in file order."""
    return ndc_table(path, name, blob, want_type)[0]


def _xml(path: str | Path, names: list[str], get: Getter, name: str) -> ET.Element | None:
    if name not in names:
        return None
    raw = get(name)
    m = re.match(rb'<\?xml[^>]*encoding="([^"]+)"', raw)
    enc = m.group(1).decode("ascii", "replace").lower() if m else "utf-8"
    enc = "gb18030" if enc in ("gb2312", "gbk") else enc
    text = raw.decode(enc, errors="replace")
    text = re.sub(r"^<\?xml[^>]*\?>", "", text.lstrip("\ufeff"))
    return ET.fromstring(text)


def read_ndax(path: str | Path) -> ReadResult:
    return parse_ndax(path, read_bytes(path))


def parse_ndax(path: str | Path, data: bytes) -> ReadResult:
    """:func:`read_ndax` on the archive's bytes (``path`` names it in messages)."""
    notes = Notes(path)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return _read(path, zf.namelist(), zf.read, notes)
    except ReaderError:
        raise
    except _ZIP_ERRORS as exc:
        raise ReaderError(
            path, f"damaged .ndax archive: {type(exc).__name__}: {exc}", expected="a zip archive"
        ) from None


def _read(path: str | Path, names: list[str], get: Getter, notes: Notes) -> ReadResult:
    for need in ("data.ndc", "data_step.ndc", "data_runInfo.ndc"):
        if need not in names:
            raise ReaderError(
                path,
                f"no {need} in the archive (members: {names[:8]})",
                expected="an .ndax from BTS 7.6 or later (data, data_step and data_runInfo tables)",
            )
    samples, index, version = ndc_table(path, "data.ndc", get("data.ndc"), 1)
    n = samples.size
    if n == 0:
        raise ReaderError(path, "data.ndc holds no samples", expected="voltage records")
    steps, _, _ = ndc_table(path, "data_step.ndc", get("data_step.ndc"), 7)
    runs, _, _ = ndc_table(path, "data_runInfo.ndc", get("data_runInfo.ndc"), 18)
    steps = _rising(path, "data_step.ndc", steps[steps["first"] > 0], "first", index[-1], notes)
    runs = _rising(path, "data_runInfo.ndc", runs[runs["sample"] > 0], "sample", index[-1], notes)
    # A sample can carry two runInfo records (the first sample of a test: step time 0 and 1 s);
    # the first is the sample's own, as BTSDA shows it.
    runs = runs[np.unique(runs["sample"], return_index=True)[1]]
    if steps["first"][0] > index[0] or runs["sample"][0] > index[0]:
        raise ReaderError(
            path,
            f"sample {int(index[0])} comes before the first step and runInfo record "
            f"(sample {int(steps['first'][0])}, {int(runs['sample'][0])})",
            expected="step 1 and a runInfo record at the first sample",
        )
    # Step of every sample: the last step that started at or before it; likewise its runInfo
    # record. Both tables rise, so each covers a run of samples: repeat its values over them.
    step_rows = _rows_covered(steps["first"], index)
    run_rows = _rows_covered(runs["sample"], index)
    which = np.repeat(np.arange(steps.size), step_rows)
    v_scale, i_scale, q_scale = _SCALE[version]
    volt = samples["v"].astype(np.float64) * v_scale
    current = samples["i"].astype(np.float64) * i_scale

    def run_at(field: str, scale: float = 1.0) -> np.ndarray:  # at every sample's record
        return np.repeat(runs[field].astype(np.float64) * scale, run_rows)

    dt = run_at("dt_ms", 1e-3)
    after = index - run_at("sample")  # samples since the runInfo record
    unix = np.repeat(runs["unix"] + runs["ms"] / 1000.0, run_rows) + after * dt
    step_time = run_at("step_ms", 1e-3) + after * dt
    # Charge and energy since the runInfo record: each later sample adds current x interval.
    dq, de = current * dt / 3600.0, current * volt * dt / 3600.0
    at_run = after == 0
    dq[at_run] = de[at_run] = 0.0
    q, e = _since_record(dq, run_rows), _since_record(de, run_rows)
    step_count = which.astype(np.int64) + 1
    status = steps["status"]
    charge_first = cycles_from_steps(status)
    cycle = np.repeat(steps["cycle"].astype(np.int64) + 1, step_rows)
    columns = {
        "test_time_second": _total_time(step_time, step_count),
        "unix_time_second": unix,
        "voltage_volt": volt,
        "current_ampere": current,
        "cycle_count": cycle,
        "step_index": np.repeat(steps["step_id"].astype(np.int64) - 1, step_rows),
        "step_count": step_count,
    }
    # the step's counters at its runInfo record, then each later sample's share
    for field, name, inc in (("chg_ah", "charging_capacity_ampere_hour", q),
                             ("dchg_ah", "discharging_capacity_ampere_hour", -q),
                             ("chg_wh", "charging_energy_watt_hour", e),
                             ("dchg_wh", "discharging_energy_watt_hour", -e)):  # fmt: skip
        per_step = np.abs(run_at(field, q_scale)) + np.maximum(inc, 0.0)
        columns[name] = steps_to_cycle_totals(per_step, step_count, cycle)
    frame = pl.DataFrame(columns)
    meta = _metadata(path, names, get)
    temperature = _temperature(path, get, names, meta, index, notes)
    if temperature is not None:
        frame = frame.with_columns(pl.Series("temperature_celsius", temperature))
    frame = finish_samples(path, frame, line_of=lambda r: {})
    unknown = sorted({int(s) for s in np.unique(status)} - set(STEP_TYPES))
    if unknown:
        notes.warn(f"data_step.ndc: step type codes {unknown} are not known; read as neither "
                   "charge nor discharge")  # fmt: skip
    meta.update(
        {
            "instrument": "Neware",
            "ndc_version": version,
            "samples_with_time": int(at_run.sum()),
            "start_time_known": True,
            "step_types": [STEP_TYPES.get(int(c), str(int(c))) for c in np.unique(status)],
            "cycles": "the file's cycle field (from 0) + 1, as BTSDA's export numbers them",
            "charge_first_cycles": int(charge_first[-1]),
        }
    )
    return ReadResult("samples", frame, "neware-ndax", meta, notes.items)


def _since_record(d: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Running sum of ``d`` restarting at every runInfo record (``rows`` samples each)."""
    total = np.cumsum(d)
    starts = np.r_[0, np.cumsum(rows)[:-1]]
    keep = rows > 0
    before = np.zeros(rows.size)
    before[keep] = total[starts[keep]] - d[starts[keep]]
    return total - np.repeat(before, rows)


def _total_time(step_time: np.ndarray, step_count: np.ndarray) -> np.ndarray:
    """Test time as BTSDA's Total Time: each step starts where the steps before it ended."""
    last = np.r_[np.flatnonzero(np.diff(step_count)), step_count.size - 1]
    before = np.r_[0.0, np.cumsum(step_time[last])[:-1]]
    starts = np.r_[0, last[:-1] + 1]
    return step_time + np.repeat(before, last - starts + 1)


def _rising(path, name: str, rec: np.ndarray, field: str, last: int, notes: Notes) -> np.ndarray:
    """Records whose sample numbers rise from 1; those past the last sample (a data table cut
    short) are dropped with a warning."""
    if rec.size == 0:
        raise ReaderError(path, f"{name} holds no records", expected="at least one record")
    values = rec[field]
    bad = np.flatnonzero(np.diff(values) < 0)
    if bad.size:
        row = int(bad[0]) + 1
        raise ReaderError(
            path,
            f"{name}: record {row} points at sample {int(values[row])}, "
            f"before sample {int(values[row - 1])} of the record before it",
            expected="sample numbers rising from 1",
        )
    past = values > last
    if past.any():
        notes.warn(f"{name}: {int(past.sum())} records after the last sample ({last}) dropped")
        rec = rec[~past]
        if rec.size == 0:
            raise ReaderError(path, f"{name}: no record within the {last} samples")
    return rec


def _metadata(path, names: list[str], get: Getter) -> dict:
    meta: dict = {}
    info = _xml(path, names, get, "TestInfo.xml")
    test = info.find("config/TestInfo") if info is not None else None
    if test is not None:
        for key in ("StartTime", "StepName", "DevType", "DevID", "UnitID", "ChlID", "SN"):
            if key in test.attrib:
                meta[key] = test.attrib[key]
        meta["aux"] = [dict(child.attrib) for child in test if child.tag.lower().startswith("aux")]
    version = _xml(path, names, get, "VersionInfo.xml")
    if version is not None:
        node = version.find("config/ZwjVersion")
        if node is not None:
            meta["server_version"] = node.attrib.get("CurrSvrVer", "")
            meta["client_version"] = node.attrib.get("CurrClientVer", "")
    return meta


def _rows_covered(starts: np.ndarray, index: np.ndarray) -> np.ndarray:
    """How many of the samples (numbers ``index``, rising) each record covers: from its own
    sample number (``starts``, rising, the first at or before ``index[0]``) to the next's."""
    pos = np.searchsorted(index, starts, side="left")
    pos[0] = 0
    return np.diff(np.r_[pos, index.size])


def _on_samples(values: np.ndarray, slots: np.ndarray, index: np.ndarray) -> np.ndarray | None:
    """Values of an auxiliary table (by slot number) at the samples' numbers; None if the table
    does not cover them."""
    if slots.size >= index.size and np.array_equal(slots[: index.size], index):
        return values[: index.size]  # the usual case: the same slots as data.ndc
    pos = np.clip(np.searchsorted(slots, index), 0, max(slots.size - 1, 0))
    if slots.size == 0 or not np.all(slots[pos] == index):
        return None
    return values[pos]


def _temperature(path, get: Getter, names: list[str], meta: dict, index, notes: Notes):
    """The first auxiliary temperature channel, one value per sample."""
    aux_info = meta.get("aux", [])
    tables = sorted(
        (int(m.group(1)), int(m.group(2)), n) for n in names if (m := _AUX_NAME.search(n))
    )
    for channel, kind, name in tables:
        # The file name carries the channel and its type less 100 (data_AUX_144_3_1: type 103).
        types = [
            int(a["ChlType"])
            for a in aux_info
            if a.get("RealChlID") == str(channel) and a.get("ChlType", "").isdigit()
        ]
        chl_type = next((t for t in types if t - 100 == kind), None)
        if chl_type != TEMPERATURE_CHANNEL_TYPE:
            notes.warn(f"auxiliary table {name} (channel type {chl_type}) skipped")
            continue
        values, slots, _ = ndc_table(path, name, get(name), 5)
        temp = _on_samples(values.astype(np.float64), slots, index)
        if temp is None:
            notes.warn(f"{name} has {values.size} values for {index.size} samples; skipped")
            continue
        if not np.all(np.isfinite(temp)):
            notes.warn(f"{name} holds non-finite temperatures; skipped")
            continue
        return temp
    for name in sorted(n for n in names if _AUX16_NAME.search(n)):
        values, slots, version = ndc_table(path, name, get(name), 5)
        if version != 16:
            notes.warn(f"auxiliary table {name} of ndc version {version} skipped")
            continue
        temp = _on_samples(values["t"].astype(np.float64) / 10.0, slots, index)
        if temp is None or not np.any(temp != 0):
            notes.warn(f"auxiliary table {name} holds no temperature for the samples; skipped")
            continue
        return temp
    return None


def read_members(path: str | Path, members: Mapping[str, bytes]) -> ReadResult:
    """Read an .ndax given as its members (name -> bytes), without the zip layer."""
    notes = Notes(path)
    try:
        return _read(path, list(members), members.__getitem__, notes)
    except ReaderError:
        raise
    except _ZIP_ERRORS as exc:
        raise ReaderError(path, f"damaged .ndax member: {type(exc).__name__}: {exc}") from None
