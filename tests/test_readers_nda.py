"""Neware .nda (BTS 7 versions 26/28/29, BTS 9.0 version 130): files written byte by byte from
the documented layout (no real .nda is available), read back through detection and the CLI."""

from __future__ import annotations

import json
import struct
import warnings

import numpy as np
import polars as pl
import pytest
from vendor_files import (
    NDA_START_UNIX,
    nda_protocol,
    nda_v29_bytes,
    nda_v91_bytes,
    nda_v130_bytes,
)

from cellbench.analysis.readers import ReaderError, ReaderWarning, detect_format, read
from cellbench.analysis.readers.neware_nda import parse_nda
from cellbench.cli.main import main
from cellbench.core.schema import validate_frame

P = nda_protocol()


def _read(data: bytes, name: str = "t.nda"):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReaderWarning)
        return parse_nda(name, data)


def _per_cycle(values: np.ndarray, cycle: np.ndarray) -> np.ndarray:
    """Running total of the charge (or energy) of each record's second, restarting per cycle."""
    out = np.zeros_like(values)
    for c in np.unique(cycle):
        m = cycle == c
        out[m] = np.cumsum(values[m])
    return out


def _expected_totals(cycle: np.ndarray) -> dict[str, np.ndarray]:
    i, v = P["curr"], P["volt"]
    charge, discharge = np.clip(i, 0, None), np.clip(-i, 0, None)
    return {
        "charging_capacity_ampere_hour": _per_cycle(charge, cycle) / 3.6e6,
        "discharging_capacity_ampere_hour": _per_cycle(discharge, cycle) / 3.6e6,
        "charging_energy_watt_hour": _per_cycle(charge * v, cycle) / 3.6e6,
        "discharging_energy_watt_hour": _per_cycle(discharge * v, cycle) / 3.6e6,
    }


def _v29_record_at(k: int) -> int:
    """Byte offset of the k-th data record of a writer's v29 file (with aux records)."""
    return 2048 + 2 * 86 * k


def _common_checks(df: pl.DataFrame) -> None:
    validate_frame("samples", df)
    assert df.height == P["index"].size == 140
    np.testing.assert_allclose(df["test_time_second"].to_numpy(), P["test_time"], atol=1e-9)
    np.testing.assert_allclose(df["voltage_volt"].to_numpy(), P["volt"], atol=1e-6)
    # mA -> A, charge positive
    np.testing.assert_allclose(df["current_ampere"].to_numpy(), P["curr"] / 1000, atol=1e-9)
    assert df["current_ampere"].max() == pytest.approx(0.5)
    assert df["current_ampere"].min() == pytest.approx(-0.5)
    assert df["step_index"].to_list() == list(P["step"] - 1)
    # rest, CC charge, CV charge, rest, CC discharge: five steps per cycle, two cycles
    assert df["step_count"].to_list() == list(np.repeat(np.arange(1, 11), [10, 20, 10, 10, 20] * 2))


def test_v29_round_trip():
    result = _read(nda_v29_bytes())
    df = result.frame
    _common_checks(df)
    assert result.format == "neware-nda"
    assert result.metadata["nda_version"] == 29
    assert result.metadata["server_version"] == "BTSServer(7.6.0.R3)"
    assert result.metadata["step_types"] == ["CC_Chg", "CC_DChg", "CV_Chg", "Rest"]
    # the file's cycle (from 0) + 1, as read_ndax does
    assert df["cycle_count"].to_list() == list(P["cycle"] + 1)
    for name, want in _expected_totals(P["cycle"] + 1).items():
        np.testing.assert_allclose(df[name].to_numpy(), want, rtol=1e-6, atol=1e-9, err_msg=name)
    # 20 s at 0.5 A + CV 10 s averaging 297.5 mA, per cycle
    ends = df.group_by("cycle_count").agg(pl.col("^.*capacity.*$").last())
    assert ends["charging_capacity_ampere_hour"].to_list() == pytest.approx([0.003604] * 2, 1e-3)
    assert ends["discharging_capacity_ampere_hour"].to_list() == pytest.approx([0.002778] * 2, 1e-3)
    # wall clock (whole seconds, UTC) and aux temperature
    np.testing.assert_allclose(df["unix_time_second"].to_numpy(), NDA_START_UNIX + P["test_time"])
    np.testing.assert_allclose(
        df["temperature_celsius"].to_numpy(), 25.0 + 0.1 * (np.arange(140) % 50), atol=1e-9
    )


@pytest.mark.parametrize("version", [26, 28])
def test_v26_v28_share_the_v29_layout(version):
    df = _read(nda_v29_bytes(version=version)).frame
    _common_checks(df)


@pytest.mark.parametrize("code", [100, -1000, 10])
def test_v29_current_range_scales_current_capacity_energy(code):
    """The same test written with another current range: same values in A, Ah, Wh."""
    base = _read(nda_v29_bytes()).frame
    other = _read(nda_v29_bytes(range_code=code, header_range=code)).frame
    for name in ("current_ampere", "charging_capacity_ampere_hour", "discharging_energy_watt_hour"):
        np.testing.assert_allclose(other[name].to_numpy(), base[name].to_numpy(), atol=1e-9)


def test_v29_range_zero_uses_the_header_range():
    """Records with range 0 take the channel's range from the header block (u32 at 16 -> +26)."""
    base = _read(nda_v29_bytes()).frame
    data = bytearray(nda_v29_bytes())
    for k in range(140):
        struct.pack_into("<i", data, _v29_record_at(k) + 78, 0)
    df = _read(bytes(data)).frame
    assert df.equals(base)
    struct.pack_into("<i", data, 192 + 26, 100)  # a range ten times finer
    df = _read(bytes(data)).frame
    np.testing.assert_allclose(df["current_ampere"], base["current_ampere"] / 10, atol=1e-12)
    struct.pack_into("<i", data, 192 + 26, 0)
    with pytest.raises(ReaderError, match=r"byte offset 16: .*current range 0"):
        parse_nda("t.nda", bytes(data))


def test_v29_without_aux_has_no_temperature():
    df = _read(nda_v29_bytes(temperature=False)).frame
    assert "temperature_celsius" not in df.columns
    _common_checks(df)


def test_v130_round_trip():
    with pytest.warns(ReaderWarning, match="14 auxiliary records skipped"):
        result = parse_nda("t.nda", nda_v130_bytes())
    df = result.frame
    _common_checks(df)
    assert result.metadata["nda_version"] == 130
    assert "temperature_celsius" not in df.columns
    np.testing.assert_allclose(df["unix_time_second"].to_numpy(), NDA_START_UNIX + P["test_time"])
    # no cycle in the records: a cycle starts at the first charge after a discharge, so the rest
    # opening the protocol's second loop still belongs to cycle 1
    cycle = np.where(P["index"] > 80, 2, 1)
    assert df["cycle_count"].to_list() == list(cycle)
    for name, want in _expected_totals(cycle).items():
        np.testing.assert_allclose(df[name].to_numpy(), want, rtol=1e-5, atol=1e-9, err_msg=name)


def test_v130_without_closing_block_or_aux():
    df = _read(nda_v130_bytes(aux_every=0, closing=False)).frame
    _common_checks(df)


def test_nda_and_its_v130_twin_agree_on_shared_columns():
    a = _read(nda_v29_bytes()).frame
    b = _read(nda_v130_bytes(aux_every=0)).frame
    shared = ["test_time_second", "unix_time_second", "voltage_volt", "current_ampere",
              "step_index", "step_count"]  # fmt: skip
    for name in shared:
        np.testing.assert_allclose(a[name].to_numpy(), b[name].to_numpy(), atol=1e-6)


# -------------------------------------------------------------------- detection and the CLI


@pytest.mark.parametrize("make", [nda_v29_bytes, nda_v130_bytes])
def test_detected_by_content_whatever_the_extension(tmp_path, make):
    path = tmp_path / "exported.dat"
    path.write_bytes(make())
    assert detect_format(path) == "neware-nda"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReaderWarning)
        result = read(path)
    assert result.format == "neware-nda"
    assert result.frame.height == 140


def test_cli_inspect_and_convert(tmp_path, capsys):
    src = tmp_path / "cell.nda"
    src.write_bytes(nda_v29_bytes())
    assert main(["inspect", "--json", str(src)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["format"], info["kind"], info["rows"]) == ("neware-nda", "samples", 140)
    assert main(["inspect", str(src)]) == 0
    assert "neware-nda" in capsys.readouterr().out
    assert main(["convert", str(src), "--to", "parquet", "--out", str(tmp_path)]) == 0
    assert "(neware-nda, samples, 140 rows)" in capsys.readouterr().out
    back = read(tmp_path / "cell.parquet")
    assert back.frame.equals(_read(nda_v29_bytes()).frame)


def test_cli_inspect_of_a_damaged_nda_is_one_line_error(tmp_path, capsys):
    src = tmp_path / "cell.nda"
    src.write_bytes(nda_v29_bytes()[:20])
    assert main(["inspect", str(src)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cellbench: error: ") and "cell.nda" in err and "\n" not in err


# -------------------------------------------------------------------------------- damage


def test_bad_magic_and_unknown_version():
    with pytest.raises(ReaderError, match=r"byte offset 0: .*expected b'NEWARE'"):
        parse_nda("t.nda", b"NEWARX" + bytes(200))
    data = bytearray(nda_v29_bytes())
    data[14] = 22
    with pytest.raises(ReaderError, match=r"t\.nda: byte offset 14: nda file version 22 is not"):
        parse_nda("t.nda", bytes(data))


def test_truncated_headers():
    with pytest.raises(ReaderError, match=r"byte offset 10: the header ends after 10 bytes"):
        parse_nda("t.nda", nda_v29_bytes()[:10])
    with pytest.raises(ReaderError, match=r"byte offset 500: .*1024-byte header"):
        parse_nda("t.nda", nda_v130_bytes()[:500])
    with pytest.raises(ReaderError, match=r"no data record found"):
        parse_nda("t.nda", nda_v29_bytes()[:2048])


def test_torn_final_record_is_dropped_with_a_warning():
    data = nda_v29_bytes(temperature=False)
    with pytest.warns(ReaderWarning, match=r"torn final record at byte offset 14002 \(40 of 86"):
        df = parse_nda("t.nda", data[:-46]).frame
    assert df.height == 139
    data = nda_v130_bytes(aux_every=0, closing=False)
    with pytest.warns(ReaderWarning, match=r"torn final record .*\(50 of 88 bytes\)"):
        assert parse_nda("t.nda", data[:-38]).frame.height == 139


def test_region_not_whole_records_names_the_offset():
    data = nda_v29_bytes(temperature=False) + b"\x00" * 10
    with pytest.raises(ReaderError, match=r"byte offset 14088: .*not a whole number of 86-byte"):
        parse_nda("t.nda", data)


def test_shifted_record_names_its_offset():
    data = bytearray(nda_v29_bytes(temperature=False))
    at = 2048 + 86 * 50
    data[at:at] = b"\x07\x07\x07"  # three stray bytes: the records after them are misaligned
    data = bytes(data[:-3])
    with pytest.raises(ReaderError, match=rf"byte offset {at}: record type byte 0x07"):
        parse_nda("t.nda", data)


def test_damaged_first_record_is_not_taken_for_header():
    data = bytearray(nda_v29_bytes())
    data[2048 + 12] = 99  # step type of the first record
    with pytest.raises(ReaderError, match=r"byte offset 2048: damaged first record .*type 99"):
        parse_nda("t.nda", bytes(data))
    data = bytearray(nda_v29_bytes(temperature=False))
    struct.pack_into("<I", data, 2048 + 2, 0)  # its record number
    with pytest.raises(ReaderError, match=r"byte offset 2048: damaged first record \(record nu"):
        parse_nda("t.nda", bytes(data))


def test_absurd_range_code():
    data = bytearray(nda_v29_bytes())
    at = _v29_record_at(30)
    struct.pack_into("<i", data, at + 78, 777)
    with pytest.raises(ReaderError, match=rf"byte offset {at + 78}: current range code 777"):
        parse_nda("t.nda", bytes(data))


def test_unknown_step_type_and_bad_date():
    data = bytearray(nda_v29_bytes())
    at = _v29_record_at(12)
    data[at + 12] = 99
    with pytest.raises(ReaderError, match=rf"byte offset {at + 12}: step type code 99"):
        parse_nda("t.nda", bytes(data))
    data = bytearray(nda_v29_bytes())
    data[at + 72] = 13  # month
    with pytest.raises(ReaderError, match=rf"byte offset {at + 70}: date 2024-13-"):
        parse_nda("t.nda", bytes(data))


def test_v130_garbage_between_records_and_non_finite_values():
    data = bytearray(nda_v130_bytes(aux_every=0))
    at = 1024 + 88 * 60
    data[at + 4] = 0x33
    with pytest.raises(ReaderError, match=rf"byte offset {at + 4}: record type byte 0x33 between"):
        parse_nda("t.nda", bytes(data))
    data = bytearray(nda_v130_bytes(aux_every=0))
    struct.pack_into("<f", data, at + 36, float("nan"))
    with pytest.raises(ReaderError, match=rf"byte offset {at}: value nan in voltage_volt"):
        parse_nda("t.nda", bytes(data))
    data = bytearray(nda_v130_bytes(aux_every=0))
    struct.pack_into("<f", data, at + 60, float("inf"))
    with pytest.raises(ReaderError, match=rf"byte offset {at + 60}: value inf"):
        parse_nda("t.nda", bytes(data))
    data = bytearray(nda_v130_bytes(aux_every=0))
    struct.pack_into("<Q", data, at + 68, 2**63)
    with pytest.raises(ReaderError, match=rf"byte offset {at + 68}: unix time .* after the year"):
        parse_nda("t.nda", bytes(data))


def test_v130_discharge_counters_stored_negative_read_as_magnitudes():
    """BTS 9.0 keeps the discharge capacity and energy negative (the signed capacity fastnda
    reads at byte 60): the per-cycle discharge is the counter's magnitude, as BTSDA shows it."""
    data = nda_v130_bytes(aux_every=0)
    (raw,) = struct.unpack_from("<f", data, 1024 + 88 * 139 + 60)
    assert raw < 0  # the last record, inside the discharge step
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = parse_nda("t.nda", data).frame
    per = df.group_by("cycle_count").agg(pl.col("discharging_capacity_ampere_hour").max())
    assert per["discharging_capacity_ampere_hour"].to_list() == pytest.approx([10 / 3600] * 2)
    assert (df["discharging_energy_watt_hour"] >= 0).all()


def test_bts91_variable_length_records_read():
    """BTS 9.1 (version 130, records of the file's own length with a signed step capacity):
    the same protocol as the BTS 7 and 9.0 files gives the same frame."""
    ref = _read(nda_v29_bytes()).frame
    for temperature in (True, False):
        result = parse_nda("t.nda", nda_v91_bytes(temperature=temperature))
        df = result.frame
        assert result.metadata["record_length"] == (56 if temperature else 52)
        assert result.metadata["closing_block_offset"] == 1024 + 140 * (56 if temperature else 52)
        for col in ("test_time_second", "voltage_volt", "current_ampere", "cycle_count",
                    "step_index", "step_count", "charging_capacity_ampere_hour",
                    "discharging_capacity_ampere_hour",
                    "discharging_energy_watt_hour"):  # fmt: skip
            assert df[col].to_numpy() == pytest.approx(ref[col].to_numpy(), rel=1e-5, abs=1e-9)
        assert ("temperature_celsius" in df.columns) is temperature


def test_bts91_damage_is_named():
    data = bytearray(nda_v91_bytes())
    data[1024 + 56 * 3 : 1024 + 56 * 3 + 2] = b"\x12\x50"  # a foreign record among the data
    with pytest.raises(ReaderError, match=r"byte offset 1192: a record without the identifier"):
        parse_nda("t.nda", bytes(data))
    with pytest.raises(ReaderError, match=r"byte offset 1024: the record identifier 5501 does"):
        parse_nda("t.nda", bytes(data[:1024]) + (b"\x55\x01" + bytes(600)) * 2)


def test_repeated_and_disordered_records_warn():
    data = nda_v29_bytes(temperature=False)
    rec = data[2048 : 2048 + 86]
    with pytest.warns(ReaderWarning, match="repeat a record number"):
        df = parse_nda("t.nda", data + rec).frame
    assert df.height == 140
    body = [data[2048 + 86 * k : 2048 + 86 * (k + 1)] for k in range(140)]
    body[3], body[4] = body[4], body[3]
    with pytest.warns(ReaderWarning, match="sorted"):
        df2 = parse_nda("t.nda", data[:2048] + b"".join(body)).frame
    assert df2.equals(_read(data).frame)
