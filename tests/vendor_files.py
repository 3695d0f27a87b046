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
    if new_header:  # EC-Lab >= 11.50 (galvani's VMPmodule_hdr_v2): a fourth u32, 11 for data
        fourth = 11 if short == "VMP data" else 10
        head += struct.pack("<IIII", 0xFFFFFFFF, len(data), version, fourth)
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
    settings = mpr_module("VMP Set", b"\0" * 64, new_header=new_header)
    data = mpr_module(
        "VMP data", mpr_data(columns, version=version, extra=extra), version, new_header=new_header
    )
    log = b""
    if log_ole_day is not None:
        log_data = b"\0" * 17 + struct.pack("<d", log_ole_day) + b"\0" * 40
        log = mpr_module("VMP LOG", log_data, new_header=new_header)
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


# ----------------------------------------------------------------------------- Neware .ndax

NDC_PAGE = 4096


def ndc_table(file_type: int, records: np.ndarray, first: int, tail: int, version: int = 17):
    """An .ndc table: 4096-byte header, then pages of records starting at byte ``first``."""
    per_page = (NDC_PAGE - first - tail) // records.dtype.itemsize
    n_pages = max(1, -(-len(records) // per_page))
    out = bytearray(NDC_PAGE * (n_pages + 1))
    struct.pack_into("<HH", out, 0, file_type, version)
    raw = records.tobytes()
    size = records.dtype.itemsize
    for p in range(n_pages):
        chunk = raw[p * per_page * size : (p + 1) * per_page * size]
        base = NDC_PAGE * (p + 1)
        count = len(chunk) // size
        struct.pack_into("<HH", out, base, file_type + 1, count)
        mask = np.packbits(np.arange(per_page) < count, bitorder="little").tobytes()
        out[base + 4 : base + 4 + len(mask)] = mask  # the used slots
        out[base + first : base + first + len(chunk)] = chunk
    return bytes(out)


def ndax_members(
    n: int = 600, record_every: int = 10, start_unix: int = 1_700_000_000, version: int = 17
):
    """Members of a small .ndax: rest (100 samples), then charge 1 A, 1 s per sample; ndc
    ``version`` 14, 16 or 17 (record sizes and units of :mod:`.neware_ndax`)."""
    from cellbench.analysis.readers import neware_ndax as nx

    step_dtype, run_dtype = (nx._STEP14, nx._RUN14) if version == 14 else (nx._STEP, nx._RUN)
    v_unit, i_unit, q_unit = (1e4, 1e3, 3.6e6) if version == 16 else (1.0, 1.0, 1.0)
    volt = np.linspace(3.0, 4.0, n)
    cur = np.where(np.arange(n) < 100, 0.0, 1.0)
    data = np.zeros(n, dtype=[("v", "<f4"), ("i", "<f4")])
    data["v"], data["i"] = volt * v_unit, cur * i_unit
    steps = np.zeros(2, dtype=step_dtype)
    steps["cycle"] = 0
    steps["step_id"] = [1, 2]
    steps["status"] = [4, 1]
    steps["first"] = [1, 101]
    anchors = np.r_[np.arange(1, n + 1, record_every), 101]
    anchors = np.unique(anchors)
    runs = np.zeros(len(anchors), dtype=run_dtype)
    runs["sample"] = anchors
    runs["step"] = np.where(anchors < 101, 1, 2)
    runs["unix"] = start_unix + anchors - 1
    charged = np.clip(anchors - 101, 0, None) / 3600.0  # Ah at 1 A, 1 s per sample
    runs["chg_ah"] = charged * q_unit
    runs["step_ms"] = np.where(anchors < 101, anchors - 1, anchors - 101) * 1000
    runs["dt_ms"] = 1000
    xml = (
        b'<?xml version="1.0" encoding="GB2312"?><root><config><TestInfo StartTime="x" '
        b'AuxCount="0"/></config></root>'
    )
    return {
        "TestInfo.xml": xml,
        "data.ndc": ndc_table(1, data, 132, 1, version),
        "data_step.ndc": ndc_table(7, steps, 132, 1, version),
        "data_runInfo.ndc": ndc_table(18, runs, 132, 1, version),
    }


def ndax_bytes(members: dict[str, bytes], compression: int = 8) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    return buf.getvalue()


# --------------------------------------------------------------------------------- .xlsx


def xlsx_bytes(sheets: dict[str, list[list[object]]]) -> bytes:
    """A minimal Office Open XML workbook: text cells in the shared-string table, numbers as
    numbers, one worksheet part per sheet (what spreadsheet programs write, without styles)."""
    import io
    import zipfile
    from xml.sax.saxutils import escape

    strings: list[str] = []
    index: dict[str, int] = {}

    def cell(ref: str, value: object) -> str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return f'<c r="{ref}"><v>{value!r}</v></c>'
        text = str(value)
        if text not in index:
            index[text] = len(strings)
            strings.append(text)
        return f'<c r="{ref}" t="s"><v>{index[text]}</v></c>'

    def col(k: int) -> str:
        out = ""
        k += 1
        while k:
            k, r = divmod(k - 1, 26)
            out = chr(65 + r) + out
        return out

    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    parts = {}
    for n, rows in enumerate(sheets.values(), start=1):
        body = "".join(
            f'<row r="{i}">' + "".join(cell(f"{col(k)}{i}", v) for k, v in enumerate(r)) + "</row>"
            for i, r in enumerate(rows, start=1)
        )
        parts[f"xl/worksheets/sheet{n}.xml"] = (
            f'<worksheet xmlns="{main}"><sheetData>{body}</sheetData></worksheet>'
        )
    sheet_list = "".join(
        f'<sheet name="{escape(name)}" sheetId="{n}" r:id="rId{n}"/>'
        for n, name in enumerate(sheets, start=1)
    )
    parts["xl/workbook.xml"] = (
        f'<workbook xmlns="{main}" xmlns:r="{rel}"><sheets>{sheet_list}</sheets></workbook>'
    )
    rels = "".join(
        f'<Relationship Id="rId{n}" Target="worksheets/sheet{n}.xml" Type="{rel}/worksheet"/>'
        for n in range(1, len(sheets) + 1)
    )
    parts["xl/_rels/workbook.xml.rels"] = (
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f"{rels}</Relationships>"
    )
    sst = "".join(f"<si><t>{escape(s)}</t></si>" for s in strings)
    parts["xl/sharedStrings.xml"] = f'<sst xmlns="{main}">{sst}</sst>'
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        for name, text in parts.items():
            zf.writestr(name, text)
    return buf.getvalue()


# ------------------------------------------------------------------------------ Neware .nda
# Written field by field at the byte offsets analysis/readers/neware_nda.py documents (not through
# its dtypes), so that a wrong offset in the reader shows.

NDA_START_UNIX = 1_714_979_289  # 2024-05-06 07:08:09 UTC


def nda_protocol(cycles: int = 2) -> dict[str, np.ndarray]:
    """One record per second: rest 10 s, CC charge 500 mA 20 s, CV charge 10 s (500 mA down to
    95 mA at 4.2 V), rest 10 s, CC discharge 500 mA 20 s; per cycle, steps 1..5.

    Capacities and energies per step (mAh, mWh) as the cycler counts them: the charge passed
    during each record's second, summed from the step's start.
    """
    names = ("cycle", "step", "status", "step_time", "volt", "curr", "chg_cap", "dchg_cap",
             "chg_en", "dchg_en")  # fmt: skip
    rows: dict[str, list] = {k: [] for k in names}
    steps = [
        (4, np.full(10, 3.0), np.zeros(10)),
        (1, 3.0 + 0.06 * np.arange(20), np.full(20, 500.0)),
        (3, np.full(10, 4.2), 500.0 - 45.0 * np.arange(10)),
        (4, np.full(10, 4.15), np.zeros(10)),
        (2, 4.1 - 0.055 * np.arange(20), np.full(20, -500.0)),
    ]
    for cycle in range(cycles):
        for step, (status, volt, curr) in enumerate(steps, start=1):
            n = volt.size
            volt = np.round(volt, 4)
            charge = np.cumsum(np.abs(curr)) / 3600.0  # mAh, 1 s per record
            energy = np.cumsum(np.abs(curr) * volt) / 3600.0  # mWh
            on_charge = curr.max() > 0
            rows["cycle"] += [cycle] * n
            rows["step"] += [step] * n
            rows["status"] += [status] * n
            rows["step_time"] += list(np.arange(1, n + 1, dtype=float))
            rows["volt"] += list(volt)
            rows["curr"] += list(curr)
            zero = np.zeros(n)
            rows["chg_cap"] += list(charge if on_charge else zero)
            rows["dchg_cap"] += list(zero if on_charge else charge)
            rows["chg_en"] += list(energy if on_charge else zero)
            rows["dchg_en"] += list(zero if on_charge else energy)
    out = {k: np.asarray(v) for k, v in rows.items()}
    out["index"] = np.arange(1, out["step"].size + 1)
    out["test_time"] = out["index"].astype(float)  # every step starts where the last ended
    return out


def nda_v29_bytes(
    proto: dict[str, np.ndarray] | None = None,
    *,
    version: int = 29,
    range_code: int = 1000,
    header_range: int = 1000,
    rest_range_zero: bool = True,
    header_len: int = 2048,
    temperature: bool = True,
) -> bytes:
    """A BTS 7 .nda: header (version at 14, range block pointer at 16, BTSServer strings), then
    86-byte data records, each followed by an auxiliary temperature record (channel 1)."""
    from datetime import UTC, datetime

    p = nda_protocol() if proto is None else proto
    factor = {1000: 0.1, 100: 0.01, -1000: 0.01, 10: 1e-3}[range_code]
    header = bytearray(header_len)
    header[0:6] = b"NEWARE"
    header[14] = version
    struct.pack_into("<I", header, 16, 192)
    struct.pack_into("<i", header, 192 + 26, header_range)
    if header_len >= 512:
        header[300:320] = b"BTSServer(7.6.0.R3)\0"
        header[400:420] = b"BTSClient(7.6.1.R2)\0"
    out = bytearray(header)
    for k in range(p["index"].size):
        rec = bytearray(86)
        rec[0] = 0x55
        struct.pack_into("<IIH", rec, 2, int(p["index"][k]), int(p["cycle"][k]), int(p["step"][k]))
        rec[12] = int(p["status"][k])
        rec[13] = (int(p["step"][k]) + 5 * int(p["cycle"][k])) % 256  # step-change counter
        struct.pack_into("<Q", rec, 14, round(p["step_time"][k] * 1000))
        struct.pack_into("<ii", rec, 22, round(p["volt"][k] * 1e4), round(p["curr"][k] / factor))
        mas = [p[n][k] * 3600.0 / factor for n in ("chg_cap", "dchg_cap", "chg_en", "dchg_en")]
        struct.pack_into("<qqqq", rec, 38, *(round(v) for v in mas))
        when = datetime.fromtimestamp(NDA_START_UNIX + p["test_time"][k], tz=UTC)
        struct.pack_into("<HBBBBB", rec, 70, when.year, when.month, when.day, when.hour,
                         when.minute, when.second)  # fmt: skip
        rest = rest_range_zero and p["status"][k] == 4
        struct.pack_into("<i", rec, 78, 0 if rest else range_code)
        out += rec
        if temperature:
            aux = bytearray(86)
            aux[0], aux[1] = 0x65, 1
            struct.pack_into("<I", aux, 2, int(p["index"][k]))
            struct.pack_into("<h", aux, 34, 250 + k % 50)  # 25.0 degC + 0.1 * (k % 50)
            out += aux
    return bytes(out)


NDA_V130_TAG = b"\x12\x50\x00\x07"


def nda_v91_bytes(
    proto: dict[str, np.ndarray] | None = None, *, temperature: bool = True, closing: bool = True
) -> bytes:
    """A BTS 9.1 .nda (version 130, variable record length; the layout fastnda's
    ``_read_nda_130_91`` describes): 1024-byte header, 52-byte records (56 with a temperature)
    starting 0x55 0x01, signed step capacity and energy (negative on discharge)."""
    p = nda_protocol() if proto is None else proto
    header = bytearray(1024)
    header[0:6] = b"NEWARE"
    header[14] = 130
    out = bytearray(header)
    size = 56 if temperature else 52
    for k in range(p["index"].size):
        rec = bytearray(size)
        rec[0:2] = b"\x55\x01"
        rec[2], rec[3] = int(p["step"][k]), int(p["status"][k])
        struct.pack_into("<I", rec, 8, int(p["index"][k]))
        whole, frac = divmod(p["test_time"][k], 1.0)
        struct.pack_into("<II", rec, 12, int(whole), round(frac * 1e9))
        struct.pack_into("<ff", rec, 20, p["curr"][k], p["volt"][k])
        sign = -1.0 if p["dchg_cap"][k] > 0 else 1.0
        cap = (p["chg_cap"][k] + p["dchg_cap"][k]) * 3600.0 * sign
        energy = (p["chg_en"][k] + p["dchg_en"][k]) * 3600.0 * sign
        struct.pack_into("<ffI", rec, 28, cap, energy, int(p["cycle"][k]))
        unix = NDA_START_UNIX + p["test_time"][k]
        struct.pack_into("<II", rec, 44, int(unix), round((unix % 1.0) * 1e9))
        if temperature:
            struct.pack_into("<f", rec, 52, 25.0 + 0.1 * (k % 50))
        out += rec
    if closing:
        out += b"\x06\x00\xf0\x1d\x81\x00\x03\x00" + bytes(range(200))
    return bytes(out)


def nda_v130_bytes(
    proto: dict[str, np.ndarray] | None = None, *, aux_every: int = 10, closing: bool = True
) -> bytes:
    """A BTS 9.0 .nda (version 130): 1024-byte header, 88-byte records (type byte at 4), an
    auxiliary record (type 0x58) after every ``aux_every``-th data record, a closing block."""
    p = nda_protocol() if proto is None else proto
    header = bytearray(1024)
    header[0:6] = b"NEWARE"
    header[14] = 130
    out = bytearray(header)
    for k in range(p["index"].size):
        rec = bytearray(88)
        rec[0:4] = NDA_V130_TAG
        rec[4:8] = b"\x55\x81\x01\x06"
        rec[9], rec[10] = int(p["step"][k]), int(p["status"][k])
        struct.pack_into("<I", rec, 16, int(p["index"][k]))
        struct.pack_into("<Q", rec, 28, round(p["step_time"][k] * 1e6))
        struct.pack_into("<ff", rec, 36, p["volt"][k], p["curr"][k])
        mas = [p[n][k] * 3600.0 for n in ("chg_cap", "chg_en", "dchg_cap", "dchg_en")]
        mas[2:] = [-mas[2], -mas[3]]  # BTS 9.0 stores the discharge counters negative
        struct.pack_into("<ffff", rec, 52, *mas)
        struct.pack_into("<Q", rec, 68, round((NDA_START_UNIX + p["test_time"][k]) * 1e6))
        out += rec
        if aux_every and (k + 1) % aux_every == 0:
            aux = bytearray(88)
            aux[0:4] = NDA_V130_TAG
            aux[4] = 0x58
            struct.pack_into("<I", aux, 16, int(p["index"][k]))
            out += aux
    if closing:
        out += b"\x06\x00\xf0\x1d\x81\x00\x03\x00" + bytes(range(200))
    return bytes(out)
