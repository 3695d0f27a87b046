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
        struct.pack_into("<HH", out, base, 6, len(chunk) // size)
        out[base + first : base + first + len(chunk)] = chunk
    return bytes(out)


def ndax_members(n: int = 600, record_every: int = 10, start_unix: int = 1_700_000_000):
    """Members of a small .ndax: rest (100 samples), then charge 1 A, 1 s per sample."""
    from cellbench.analysis.readers.neware_ndax import _RUN, _STEP

    volt = np.linspace(3.0, 4.0, n).astype("<f4")
    cur = np.where(np.arange(n) < 100, 0.0, 1.0).astype("<f4")
    data = np.zeros(n, dtype=[("v", "<f4"), ("i", "<f4")])
    data["v"], data["i"] = volt, cur
    steps = np.zeros(2, dtype=_STEP)
    steps["cycle"] = 0
    steps["step_id"] = [1, 2]
    steps["status"] = [4, 1]
    steps["first"] = [1, 101]
    anchors = np.r_[np.arange(1, n + 1, record_every), 101]
    anchors = np.unique(anchors)
    runs = np.zeros(len(anchors), dtype=_RUN)
    runs["sample"] = anchors
    runs["step"] = np.where(anchors < 101, 1, 2)
    runs["unix"] = start_unix + anchors - 1
    charged = np.clip(anchors - 101, 0, None) / 3600.0  # Ah at 1 A, 1 s per sample
    runs["chg_ah"] = charged
    runs["step_ms"] = np.where(anchors < 101, anchors - 1, anchors - 101) * 1000
    xml = (
        b'<?xml version="1.0" encoding="GB2312"?><root><config><TestInfo StartTime="x" '
        b'AuxCount="0"/></config></root>'
    )
    return {
        "TestInfo.xml": xml,
        "data.ndc": ndc_table(1, data, 132, 4),
        "data_step.ndc": ndc_table(7, steps, 132, 64),
        "data_runInfo.ndc": ndc_table(18, runs, 232, 64),
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
