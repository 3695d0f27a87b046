"""BioLogic .mpr: the real GCPL+GEIS file in ../shared/data and files built from known numbers."""

from __future__ import annotations

import struct

import numpy as np
import polars as pl
import pytest
from vendor_files import gcpl_columns, mpr_file

from cellbench.analysis.readers import (
    ReaderError,
    ReaderWarning,
    detect_format,
    read,
    read_samples,
    read_spectra,
)
from cellbench.analysis.readers.biologic_mpr import vendor_columns
from cellbench.core.schema import validate_frame


@pytest.fixture(scope="module")
def biol(shared_data):
    return shared_data / "cycling" / "biol.mpr"


def test_real_mpr_samples(biol):
    result = read(biol)
    df = result.frame
    validate_frame("samples", df)
    assert (result.format, result.kind) == ("biologic-mpr", "samples")
    assert df.height == 23561
    assert df["test_time_second"][-1] == pytest.approx(76139.104, abs=1e-2)
    assert df["step_index"].max() == 11  # Ns, the technique sequence number
    assert df["voltage_volt"].min() == pytest.approx(0.12335, abs=1e-4)
    assert result.metadata["data_version"] == 2
    assert result.metadata["kinds"] == ["samples", "spectra"]
    # OLE date in the LOG module: 2017-03-15, the data module header date (03.15.17)
    assert 1489536000 <= df["unix_time_second"][0] <= 1489622400


def test_real_mpr_capacity_matches_vendor(biol):
    """Per cycle, the canonical charge in minus charge out equals the vendor's own running
    Q charge/discharge at the end of each half cycle (a column independent of dq)."""
    df = read_samples(biol)
    vendor = vendor_columns(biol)
    q = pl.DataFrame(
        {"half": vendor["half cycle"].astype(np.int64), "q": vendor["Q charge/discharge/mA.h"]}
    )
    vendor_net_ah = q.group_by("half").agg(pl.col("q").last())["q"].sum() * 1e-3
    per_cycle = df.group_by("cycle_count").agg(
        pl.col("charging_capacity_ampere_hour").last()
        - pl.col("discharging_capacity_ampere_hour").last()
    )
    ours = per_cycle["charging_capacity_ampere_hour"].sum()
    assert ours == pytest.approx(vendor_net_ah, rel=1e-3)
    assert df["charging_capacity_ampere_hour"].max() == pytest.approx(4.9769e-3, rel=1e-3)


def test_real_mpr_spectra(biol):
    sp = read_spectra(biol)
    validate_frame("spectra", sp)
    counts = sp.group_by("sweep_index").len().sort("sweep_index")["len"].to_list()
    assert counts == [64, 64, 64, 64, 54]
    assert sp["frequency_hertz"].max() == pytest.approx(100019.5, rel=1e-5)
    # Z from |Z| and phase: capacitive arc has negative Z''
    assert sp["z_imag_ohm"].median() < 0
    first = sp.row(0, named=True)
    assert np.hypot(first["z_real_ohm"], first["z_imag_ohm"]) == pytest.approx(6.572359, rel=1e-6)


def test_built_gcpl_capacities_and_cycles(tmp_path):
    path = tmp_path / "gcpl.bin"  # no .mpr extension: detected from the magic bytes
    path.write_bytes(mpr_file(gcpl_columns(n_cycles=3, per_half=20, current_ma=2.0)))
    assert detect_format(path) == "biologic-mpr"
    df = read_samples(path)
    assert df["cycle_count"].unique().sort().to_list() == [1, 2, 3]
    assert df["current_ampere"][0] == pytest.approx(2e-3)
    per = (
        df.group_by("cycle_count")
        .agg(
            pl.col("charging_capacity_ampere_hour").max(),
            pl.col("discharging_capacity_ampere_hour").max(),
        )
        .sort("cycle_count")
    )
    # 20 records of 10 s at 2 mA, first record of the file carries dq = 0
    assert per["discharging_capacity_ampere_hour"].to_list() == pytest.approx(
        [20 * 2e-3 * 10 / 3600] * 3
    )
    assert per["charging_capacity_ampere_hour"][1] == pytest.approx(20 * 2e-3 * 10 / 3600)


def test_built_peis_spectra_and_new_header(tmp_path):
    freq = np.logspace(5, -1, 13)
    cols = {
        4: np.arange(13.0),
        32: freq,
        37: np.linspace(1, 3, 13),
        38: np.linspace(0, 1, 13),
        469: np.zeros(13),
    }
    path = tmp_path / "peis.mpr"
    path.write_bytes(mpr_file(cols, new_header=True, version=3))
    result = read(path)
    assert result.kind == "spectra"
    assert result.frame["z_imag_ohm"].to_list() == pytest.approx(-np.linspace(0, 1, 13), abs=1e-7)
    assert result.frame["frequency_hertz"].to_list() == pytest.approx(freq, rel=1e-6)


def test_unknown_column_skipped_with_warning(tmp_path):
    cols = gcpl_columns(n_cycles=1)
    cols[999] = np.full(len(cols[4]), 7.0)
    path = tmp_path / "extra.mpr"
    path.write_bytes(mpr_file(cols, extra={999: "<f4"}))
    with pytest.warns(ReaderWarning, match="unknown column ID 999 .4-byte. skipped"):
        result = read(path)
    assert result.frame.height == len(cols[4])
    assert result.frame["voltage_volt"][0] == pytest.approx(3.0)


def test_two_unknown_columns_error_names_offset(tmp_path):
    cols = gcpl_columns(n_cycles=1)
    cols[998] = np.zeros(len(cols[4]))
    cols[999] = np.zeros(len(cols[4]))
    path = tmp_path / "extra2.mpr"
    path.write_bytes(mpr_file(cols, extra={998: "<f4", 999: "<f8"}))
    with pytest.raises(ReaderError, match=r"extra2\.mpr: byte offset \d+: column ID\(s\) 998, 999"):
        read(path)


def test_unknown_version_and_truncation(tmp_path):
    data = bytearray(mpr_file(gcpl_columns(n_cycles=1)))
    at = data.index(b"MODULEVMP data")
    struct.pack_into("<I", data, at + 45, 7)  # data module version
    path = tmp_path / "v7.mpr"
    path.write_bytes(bytes(data))
    with pytest.raises(ReaderError, match="data module version 7 is not supported"):
        read(path)
    good = mpr_file(gcpl_columns(n_cycles=1))
    path.write_bytes(good[:-30])
    with pytest.raises(
        ReaderError,
        match=r"byte offset \d+: module 'VMP LOG' announces|"
        r"announces \d+ bytes",
    ):
        read(path)


def test_nan_in_binary_named_by_offset(tmp_path):
    cols = gcpl_columns(n_cycles=1)
    cols[6] = cols[6].copy()
    cols[6][5] = np.nan
    path = tmp_path / "nan.mpr"
    path.write_bytes(mpr_file(cols))
    with pytest.raises(ReaderError, match=r"byte offset \d+: value nan in voltage_volt"):
        read(path)


def test_eclab_1150_module_headers_carry_a_fourth_field(tmp_path):
    """EC-Lab >= 11.50 writes 0xFFFFFFFF, length, version and a fourth u32 before the date in
    every module header (galvani's VMPmodule_hdr_v2; 65 bytes): the modules after the first
    were misread by 4 bytes (`found b'\\x00\\x00\\x00\\x00MO'`)."""
    cols = gcpl_columns(n_cycles=2)
    path = tmp_path / "v1150.mpr"
    blob = mpr_file(cols, new_header=True, version=3)
    path.write_bytes(blob)
    at = blob.index(b"MODULE")
    assert blob[at + 41 : at + 45] == b"\xff\xff\xff\xff"
    assert blob[at + 65 :].startswith(b"\0" * 64 + b"MODULE")  # the settings module's data
    df = read(path).frame
    assert df.height == len(cols[4])
    assert df["cycle_count"].max() == 2


def _sweeps(n_sweeps: int, points: int = 41):
    freq = np.tile(np.logspace(5, -1, points), n_sweeps)
    k = np.arange(freq.size)
    return {
        4: k * 1.0,
        6: np.full(freq.size, 3.7),
        32: freq,
        37: 1.0 + 0.1 * (k % points),
        38: 0.05 * (k % points),
        469: np.zeros(freq.size),  # the sweep counter EC-Lab left at 0 for every sweep
    }


def test_multi_sweep_peis_gets_one_sweep_index_per_sweep(tmp_path):
    """61 sweeps of 41 points in one file: 61 spectra, not one of 2,501 points."""
    path = tmp_path / "peis61.mpr"
    path.write_bytes(mpr_file(_sweeps(61), new_header=True, version=3))
    df = read(path).frame
    assert df.height == 61 * 41
    assert df["sweep_index"].n_unique() == 61
    assert df["sweep_index"].to_list() == np.repeat(np.arange(61), 41).tolist()
    # a file whose cycle number counts the sweeps gives the same split
    cols = _sweeps(3)
    cols[24] = np.repeat(np.arange(3.0), 41)
    path.write_bytes(mpr_file(cols))
    assert read(path).frame["sweep_index"].to_list() == np.repeat(np.arange(3), 41).tolist()


def test_geis_with_points_outside_the_sweep_reads_as_spectra(tmp_path):
    """A GEIS file also logs points without a frequency (waits before a sweep): still spectra
    by default; the samples stay available on request."""
    cols = _sweeps(2, points=21)
    cols[32][[0, 21]] = 0.0
    path = tmp_path / "geis.mpr"
    path.write_bytes(mpr_file(cols))
    result = read(path)
    assert result.kind == "spectra"
    assert result.frame.height == 40
    assert result.frame["sweep_index"].n_unique() == 2
    assert read_samples(path).height == 42
