"""Readers on files the project writes itself (BDF, generic csv, three-column EIS) and on the
generic-csv files in ../shared/data/cycling/bad."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from cellbench.analysis.readers import (
    Col,
    ReaderError,
    ReaderWarning,
    detect_format,
    read,
    read_csv,
    read_samples,
    read_spectra,
)
from cellbench.core.schema import validate_frame


def _samples_frame(n: int = 50) -> pl.DataFrame:
    t = np.arange(n, dtype=float) * 10.0
    cycle = (np.arange(n) // 20 + 1).astype(np.int32)
    return pl.DataFrame(
        {
            "test_time_second": t,
            "unix_time_second": 1.7e9 + t,
            "voltage_volt": 3.5 + 0.001 * np.arange(n),
            "current_ampere": np.where(np.arange(n) % 20 < 10, 0.1, -0.1),
            "cycle_count": cycle,
            "step_index": (np.arange(n) % 20 >= 10).astype(np.int32),
        }
    )


# ------------------------------------------------------------------------ three-column EIS csv


def test_eis_csv3_real_file(shared_data):
    path = shared_data / "eis" / "exampleData.csv"
    assert detect_format(path) == "eis-csv3"
    df = read_spectra(path)
    validate_frame("spectra", df)
    assert df.height == 66
    assert df["frequency_hertz"].max() == pytest.approx(1e4, rel=1e-3)
    assert df["frequency_hertz"].min() == pytest.approx(3.1623e-3, rel=1e-3)
    assert df["z_imag_ohm"][0] < 0  # low-frequency capacitive point keeps the instrument sign


def test_eis_csv3_bad_line_named(tmp_path):
    path = tmp_path / "z.csv"
    path.write_text("1,2,-3\n10,2,-1\n100,abc,0\n")
    with pytest.raises(ReaderError, match=r"z\.csv: line 3:.*not three numbers"):
        read_csv3_direct(path)


def read_csv3_direct(path):
    return read(path, format="eis-csv3")


def test_samples_of_spectra_file_is_clear_error(tmp_path):
    path = tmp_path / "z.txt"
    path.write_text("1\t2\t-3\n10\t2\t-1\n")
    with pytest.raises(ReaderError, match="holds impedance spectra"):
        read_samples(path)


# ------------------------------------------------------------------------------------ BDF


def test_bdf_csv_round_trip_machine_names(tmp_path):
    src = _samples_frame()
    path = tmp_path / "run.csv"
    src.write_csv(path)
    result = read(path)
    assert (result.format, result.kind) == ("bdf-csv", "samples")
    df = result.frame
    validate_frame("samples", df)
    assert df["current_ampere"].to_list() == src["current_ampere"].to_list()
    assert df["unix_time_second"][3] == pytest.approx(1.7e9 + 30.0)
    # step count is derived: a new step wherever the step index or cycle changes
    assert df["step_count"].max() == 5


def test_bdf_csv_human_names_and_unknown_column_warns(tmp_path):
    path = tmp_path / "human.csv"
    path.write_text(
        "Test Time / s,Voltage / V,Current / A,Cycle Count / 1,Mystery / x\n"
        "0,3.0,0.5,1,7\n1,3.1,0.5,1,7\n2,3.0,-0.5,2,7\n"
    )
    with pytest.warns(ReaderWarning, match="unknown column 'Mystery / x' skipped"):
        result = read(path)
    assert result.frame["cycle_count"].to_list() == [1, 1, 2]
    assert "Mystery / x" not in result.frame.columns
    assert any("Mystery" in w for w in result.warnings)
    assert result.metadata["start_time_known"] is False


def test_bdf_parquet_round_trip_and_detection_ignores_extension(tmp_path):
    src = _samples_frame()
    path = tmp_path / "run.dat"  # the extension says nothing; the magic bytes decide
    src.write_parquet(path)
    assert detect_format(path) == "bdf-parquet"
    df = read_samples(path)
    assert df.height == src.height
    assert df["voltage_volt"].to_list() == src["voltage_volt"].to_list()


def test_bdf_spectra_csv(tmp_path):
    path = tmp_path / "spec.csv"
    pl.DataFrame(
        {"frequency_hertz": [1e3, 1e2], "z_real_ohm": [1.0, 1.5], "z_imag_ohm": [-0.1, -0.4]}
    ).write_csv(path)
    df = read_spectra(path)
    assert df["sweep_index"].to_list() == [0, 0]
    assert df["z_imag_ohm"].to_list() == [-0.1, -0.4]


def test_damaged_parquet_is_reader_error(tmp_path):
    path = tmp_path / "x.parquet"
    _samples_frame().write_parquet(path)
    data = path.read_bytes()
    path.write_bytes(data[:4] + b"\0" * 64 + data[68:])
    with pytest.raises(ReaderError, match=r"x\.parquet"):
        read(path)


# ------------------------------------------------------------------- generic csv with a map


def test_generic_csv_column_map_units_and_sign(tmp_path):
    path = tmp_path / "lab.csv"
    path.write_text(
        "# exported by a lab script\n"
        "t (h);U (V);I (mA);Zyklus;Q (mAh)\n"
        "0,0;3,50;100,0;1;0,0\n"
        "0,5;3,70;100,0;1;50,0\n"
        "1,0;3,60;-50,0;2;25,0\n"
    )
    cmap = {
        "t (h)": Col("test_time_second", 3600.0),
        "U (V)": Col("voltage_volt"),
        # this lab's instrument writes discharge as positive: flip the sign
        "I (mA)": Col("current_ampere", -1e-3),
        "Zyklus": Col("cycle_count"),
        "Q (mAh)": Col("step_capacity_ampere_hour", 1e-3),
    }
    result = read_csv(path, cmap, decimal_comma=True)
    df = result.frame
    assert df["test_time_second"].to_list() == [0.0, 1800.0, 3600.0]
    assert df["current_ampere"].to_list() == pytest.approx([-0.1, -0.1, 0.05])
    assert df["step_capacity_ampere_hour"].to_list() == pytest.approx([0.0, 0.05, 0.025])
    assert df["cycle_count"].to_list() == [1, 1, 2]


def test_generic_csv_map_from_json_file(tmp_path):
    path = tmp_path / "lab.csv"
    path.write_text("time,volts,amps\n0,3.0,0.1\n1,3.1,0.1\n")
    mapfile = tmp_path / "map.json"
    mapfile.write_text(
        '{"time": "test_time_second", "volts": ["voltage_volt"], "amps": ["current_ampere", 1, 0]}'
    )
    df = read_csv(path, mapfile).frame
    assert df["voltage_volt"].to_list() == [3.0, 3.1]


def test_generic_csv_map_to_unknown_target_is_error(tmp_path):
    path = tmp_path / "lab.csv"
    path.write_text("time,volts,amps\n0,3.0,0.1\n")
    cmap = {"time": Col("test_time_second"), "volts": Col("volts_v"), "amps": Col("current_ampere")}
    with pytest.raises(ReaderError, match="'volts_v', which is not a samples column"):
        read_csv(path, cmap)


def test_unrecognised_file_names_what_is_expected(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text("hello,world\nthis,is\nnot,data\n")
    with pytest.raises(ReaderError, match=r"notes\.csv: byte offset 0: format not recognised"):
        read(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mpr"
    path.write_bytes(b"")
    with pytest.raises(ReaderError, match="empty"):
        read(path)


# ------------------------------------------------------------- shared_data/cycling/bad


def test_prime_good_small_reads(shared_data):
    path = shared_data / "cycling" / "bad" / "custom_good_small.csv"
    with pytest.warns(ReaderWarning, match="states no units"):
        result = read(path)
    df = result.frame
    validate_frame("samples", df)
    assert result.format == "prime-csv"
    assert df.height == 60
    assert df["step_index"].unique().sort().to_list() == [0, 1]
    assert df["voltage_volt"].max() == pytest.approx(1.54)
    # date_stamp 43374.42 (Excel days) is 2018-10-01 about 10:05 UTC
    assert df["unix_time_second"][0] == pytest.approx((43374.42 - 25569) * 86400, abs=600)
    assert result.metadata["mass"] == "0.0012"


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("custom_missing_column.csv", r"line 20: no column for voltage_volt"),
        ("custom_missing_cycle.csv", r"line 41, column 'cycle': cycle number skips from 1 to 3"),
        ("custom_nan_inf.csv", r"line 24, column 'voltage': empty value"),
        ("custom_truncated.csv", r"line 80, column 'current': row has 5 of the header's 10"),
    ],
)
def test_bad_files_clear_errors(shared_data, name, pattern):
    path = shared_data / "cycling" / "bad" / name
    with pytest.warns(ReaderWarning), pytest.raises(ReaderError, match=pattern) as info:
        read(path)
    assert name in str(info.value)


def test_nan_and_inf_named_by_line(shared_data, tmp_path):
    """The NaN/inf file's later problems, one at a time: inf and -inf are named where they sit."""
    src = (shared_data / "cycling" / "bad" / "custom_nan_inf.csv").read_text().splitlines()
    src[23] = src[23].replace(";;", ";1.14;")
    path = tmp_path / "inf.csv"
    path.write_text("\n".join(src) + "\n")
    with (
        pytest.warns(ReaderWarning),
        pytest.raises(
            ReaderError, match=r"line 28, column 'voltage': 'inf' is not a finite number"
        ),
    ):
        read(path)
    src[27] = src[27].replace(";inf;", ";1.14;")
    path.write_text("\n".join(src) + "\n")
    with pytest.warns(ReaderWarning), pytest.raises(ReaderError, match=r"line 32.*'-inf'"):
        read(path)
    src[31] = src[31].replace(";-inf;", ";1.14;")
    path.write_text("\n".join(src) + "\n")
    with pytest.warns(ReaderWarning):
        assert math.isfinite(read(path).frame["voltage_volt"].sum())


def test_bdf_csv_channel_names_kept(tmp_path):
    src = _samples_frame(4).with_columns(pl.Series("channel", ["ch1", "ch1", "", "ch2"]))
    path = tmp_path / "ch.csv"
    src.write_csv(path)
    assert read_samples(path)["channel"].to_list() == ["ch1", "ch1", "", "ch2"]
