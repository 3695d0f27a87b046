"""Neware BTS .ndax files (BTS 8.x): a zip of XML metadata and binary ``.ndc`` tables.

What the reader relies on (little-endian; ndc version 17, as written by BTS 8.0):

* every ``.ndc`` starts with ``u16 file type, u16 version`` and a 4096-byte header, then pages of
  4096 bytes, each ``u16 page type, u16 record count`` and a header of its own;
* ``data.ndc`` (type 1): one record per sample, ``f32 voltage / V, f32 current / A`` from page
  byte 132; samples are numbered from 1 in file order;
* ``data_step.ndc`` (type 7): one record per executed step (100 bytes from page byte 132):
  ``i32 cycle (from 0), i32 step ID of the protocol``, status byte at 24, ``i32`` first sample
  number at 33;
* ``data_runInfo.ndc`` (type 18): every n-th sample (the protocol's record interval; 100 bytes
  from page byte 232): ``i32 step time / ms``, ``f32`` charge and discharge capacity of the step
  (Ah) and energies (Wh), ``i32 unix time / s`` at 33, ``i32`` step number at 37, ``i32`` sample
  number at 41, ``i16`` milliseconds at 45;
* ``data_AUX_<channel>_<type>_<n>.ndc`` (type 5): ``f32`` per sample from page byte 132, the
  channel type given in ``TestInfo.xml`` (103: temperature in degC).

BTS writes the time only with the runInfo records, so the time of the samples between two of them
is interpolated linearly in sample number (the cycler samples at a fixed interval within a
step); the result says how many samples that concerns.
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

from .base import Notes, ReaderError, ReadResult, capacities_per_cycle, finish_samples

Getter = Callable[[str], bytes]
ZIP_MAGIC = b"PK\x03\x04"
PAGE = 4096
SUPPORTED_NDC = (17,)
_AUX_NAME = re.compile(r"data_AUX_(\d+)_(\d+)_(\d+)\.ndc$")
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

_STEP = np.dtype(
    [("cycle", "<i4"), ("step_id", "<i4"), ("_a", "V16"), ("status", "u1"), ("_b", "V8"),
     ("first", "<i4"), ("_c", "V63")]
)  # fmt: skip
_RUN = np.dtype(
    [("step_ms", "<i4"), ("_a", "u1"), ("chg_ah", "<f4"), ("dchg_ah", "<f4"), ("chg_wh", "<f4"),
     ("dchg_wh", "<f4"), ("_b", "V12"), ("unix", "<i4"), ("step", "<i4"), ("sample", "<i4"),
     ("ms", "<i2"), ("_c", "V53")]
)  # fmt: skip
# (record dtype, first byte of the records in a page, bytes left unused at the page's end)
_LAYOUT = {
    1: (np.dtype([("v", "<f4"), ("i", "<f4")]), 132, 4),
    5: (np.dtype("<f4"), 132, 4),
    7: (_STEP, 132, 64),
    18: (_RUN, 232, 64),
}


def sniff(head: bytes) -> bool:
    """A zip whose first member names are those of an .ndax (the local headers are in order)."""
    return head.startswith(ZIP_MAGIC) and (b"data.ndc" in head or b"Step.xml" in head or
                                           b"TestInfo.xml" in head)  # fmt: skip


def ndc_records(path: str | Path, name: str, blob: bytes, want_type: int) -> np.ndarray:
    """All record slots of an .ndc table (empty slots included; callers filter them)."""
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
            expected=f"version {' or '.join(map(str, SUPPORTED_NDC))} (BTS 8.0)",
        )
    if len(blob) < PAGE or (len(blob) - PAGE) % PAGE:
        raise ReaderError(
            path,
            f"{name}: {len(blob)} bytes is not a header and whole pages",
            offset=len(blob) - (len(blob) - PAGE) % PAGE if len(blob) >= PAGE else 0,
            expected=f"4096 + n * {PAGE} bytes",
        )
    dtype, first, tail = _LAYOUT[want_type]
    pages = np.frombuffer(blob, dtype=np.uint8, offset=PAGE).reshape(-1, PAGE)
    body = np.ascontiguousarray(pages[:, first : PAGE - tail])
    per_page = body.shape[1] // dtype.itemsize
    body = np.ascontiguousarray(body[:, : per_page * dtype.itemsize])
    return body.view(dtype).reshape(-1)


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


def _aux_files(names: list[str]) -> list[tuple[str, int, int]]:
    out = []
    for n in names:
        m = _AUX_NAME.search(n)
        if m:
            out.append((n, int(m.group(1)), int(m.group(2))))
    return sorted(out, key=lambda x: (x[1], x[2]))


def read_ndax(path: str | Path) -> ReadResult:
    return parse_ndax(path, Path(path).read_bytes())


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
                expected="an .ndax from BTS 8 (data, data_step and data_runInfo tables)",
            )
    data = ndc_records(path, "data.ndc", get("data.ndc"), 1)
    # Samples fill the slots in order; a voltage of exactly 0 marks the unused rest of the table.
    used = np.flatnonzero(data["v"] != 0)
    n = int(used[-1]) + 1 if used.size else 0
    if n == 0:
        raise ReaderError(path, "data.ndc holds no samples", expected="voltage records")
    samples = data[:n]
    steps = ndc_records(path, "data_step.ndc", get("data_step.ndc"), 7)
    steps = steps[steps["first"] != 0]
    runs = ndc_records(path, "data_runInfo.ndc", get("data_runInfo.ndc"), 18)
    runs = runs[runs["sample"] != 0]
    if steps.size == 0 or runs.size == 0:
        raise ReaderError(path, "no step or runInfo records", expected="at least one of each")
    steps = _within(path, "data_step.ndc", steps, "first", n, notes)
    runs = _within(path, "data_runInfo.ndc", runs, "sample", n, notes)

    index = np.arange(1, n + 1)
    # Step of every sample: the last step that started at or before it.
    which = np.searchsorted(steps["first"], index, side="right") - 1
    if which[0] < 0:
        raise ReaderError(
            path, "the first step starts after the first sample", expected="step 1 at sample 1"
        )
    unix_anchor = runs["unix"].astype(np.float64) + runs["ms"].astype(np.float64) / 1000.0
    unix = _interpolate(runs["sample"].astype(np.float64), unix_anchor, index.astype(np.float64))
    interpolated = n - len(np.unique(runs["sample"]))
    if interpolated:
        notes.warn(
            f"{interpolated} of {n} samples carry no time in the file; their time is interpolated "
            "linearly in sample number between the runInfo records"
        )
    frame = pl.DataFrame(
        {
            "test_time_second": unix - unix[0],
            "unix_time_second": unix,
            "voltage_volt": samples["v"].astype(np.float64),
            "current_ampere": samples["i"].astype(np.float64),
            "cycle_count": steps["cycle"][which].astype(np.int64) + 1,
            "step_index": steps["step_id"][which].astype(np.int64) - 1,
            "step_count": which.astype(np.int64) + 1,
        }
    )
    meta = _metadata(path, names, get)
    temperature = _temperature(path, get, names, meta, n, notes)
    if temperature is not None:
        frame = frame.with_columns(pl.Series("temperature_celsius", temperature))
    frame = capacities_per_cycle(frame)
    frame = finish_samples(path, frame, line_of=lambda r: {})
    meta.update(
        {
            "instrument": "Neware",
            "ndc_version": int(struct.unpack_from("<H", get("data.ndc"), 2)[0]),
            "samples_with_time": n - interpolated,
            "start_time_known": True,
        }
    )
    return ReadResult("samples", frame, "neware-ndax", meta, notes.items)


def _within(path, name: str, rec: np.ndarray, field: str, n: int, notes: Notes) -> np.ndarray:
    """Records whose sample numbers rise from 1; those past the last sample (a data table cut
    short) are dropped with a warning."""
    values = rec[field]
    bad = np.flatnonzero(np.diff(values) < 0)
    if values[0] < 1 or bad.size:
        row = int(bad[0]) + 1 if bad.size else 0
        raise ReaderError(
            path,
            f"{name}: record {row} points at sample {int(values[row])}",
            expected="sample numbers rising from 1",
        )
    past = values > n
    if past.any():
        notes.warn(f"{name}: {int(past.sum())} records after the last sample ({n}) dropped")
        rec = rec[~past]
        if rec.size == 0:
            raise ReaderError(path, f"{name}: no record within the {n} samples")
    return rec


def _interpolate(x: np.ndarray, y: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Piecewise-linear y(at) through (x, y); beyond the ends, the nearest segment's slope."""
    x, keep = np.unique(x, return_index=True)
    y = y[keep]
    out = np.interp(at, x, y)
    if x.size >= 2:
        lo, hi = at < x[0], at > x[-1]
        out[lo] = y[0] + (at[lo] - x[0]) * (y[1] - y[0]) / (x[1] - x[0])
        out[hi] = y[-1] + (at[hi] - x[-1]) * (y[-1] - y[-2]) / (x[-1] - x[-2])
    return out


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


def _temperature(path, get: Getter, names: list[str], meta: dict, n: int, notes: Notes):
    """The first auxiliary temperature channel (channel type 103), one value per sample."""
    aux_info = meta.get("aux", [])
    for name, channel, kind in _aux_files(names):
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
        values = ndc_records(path, name, get(name), 5)
        if values.size < n:
            notes.warn(f"{name} has {values.size} values for {n} samples; skipped")
            continue
        temp = values[:n].astype(np.float64)
        if not np.all(np.isfinite(temp)):
            notes.warn(f"{name} holds non-finite temperatures; skipped")
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
