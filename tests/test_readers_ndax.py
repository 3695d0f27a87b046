"""Neware .ndax: the real BTS 8 file in ../shared/data and archives built from known numbers."""

from __future__ import annotations

import zipfile

import numpy as np
import polars as pl
import pytest
from vendor_files import ndax_bytes, ndax_members

from cellbench.analysis.readers import ReaderError, ReaderWarning, detect_format, read
from cellbench.analysis.readers.neware_ndax import ndc_records
from cellbench.core.schema import validate_frame

NDAX = "20260302_IFE_BTS85_2_9_8_1.ndax"


@pytest.fixture(scope="module")
def real(shared_data):
    path = shared_data / "cycling" / NDAX
    with pytest.warns(ReaderWarning, match="channel type 102"):
        return path, read(path)


def test_real_ndax_frame(real):
    path, result = real
    df = result.frame
    validate_frame("samples", df)
    assert detect_format(path) == "neware-ndax"
    assert df.height == 252951
    # every runInfo record's sample (the first record of each page too)
    assert result.metadata["samples_with_time"] == 4373
    assert result.metadata["ndc_version"] == 17
    # 1 s per sample within the steps, exactly (the runInfo interval); 70 h of formation
    t = df["test_time_second"].to_numpy()
    assert t[:4].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert np.median(np.diff(t)) == 1.0
    assert df["test_time_second"][-1] == 252946.0  # the step times added up (BTSDA Total Time)
    assert df["step_index"].unique().sort().to_list() == [0, 1, 2, 3, 4]
    assert df["voltage_volt"].max() == pytest.approx(4.748652, rel=1e-6)
    # StartTime 2026-02-27 11:17:33 local (UTC+1) = 10:17:33 UTC
    assert df["unix_time_second"][0] == pytest.approx(1772187453.977, abs=1e-6)
    assert df["temperature_celsius"].min() == pytest.approx(25.634, abs=1e-3)


def test_real_ndax_capacity_matches_vendor(real):
    """Per cycle, the charge agrees with the sum of the cycler's own step capacities
    (runInfo) within 0.1 %."""
    path, result = real
    with zipfile.ZipFile(path) as zf:
        runs = ndc_records(path, "data_runInfo.ndc", zf.read("data_runInfo.ndc"), 18)
        steps = ndc_records(path, "data_step.ndc", zf.read("data_step.ndc"), 7)
    runs = runs[runs["sample"] != 0]
    steps = steps[steps["first"] != 0]
    assert runs.size == 4374 and steps.size == 5
    cycle_of_step = {k + 1: int(c) + 1 for k, c in enumerate(steps["cycle"])}
    vendor = (
        pl.DataFrame({"step": runs["step"], "chg": runs["chg_ah"], "dchg": runs["dchg_ah"]})
        .group_by("step")
        .agg(pl.col("chg").last(), pl.col("dchg").last())
        .with_columns(pl.col("step").replace_strict(cycle_of_step).alias("cycle"))
        .group_by("cycle")
        .agg(pl.col("chg").sum(), pl.col("dchg").sum())
        .sort("cycle")
    )
    ours = (
        result.frame.group_by("cycle_count")
        .agg(pl.col("charging_capacity_ampere_hour").max())
        .sort("cycle_count")
    )
    assert ours["cycle_count"].to_list() == vendor["cycle"].to_list()
    assert ours["charging_capacity_ampere_hour"].to_numpy() == pytest.approx(
        vendor["chg"].to_numpy(), rel=1e-3
    )
    assert vendor["chg"][0] > 1.0  # the formation charge of a 1 Ah cell


def test_built_ndax(tmp_path):
    path = tmp_path / "small.zip"
    path.write_bytes(ndax_bytes(ndax_members(n=600, record_every=10)))
    assert detect_format(path) == "neware-ndax"
    df = read(path).frame
    assert df.height == 600
    # step times added up: the charge step starts at step time 0 where the rest ended (99 s)
    expected = np.r_[np.arange(100.0), 99.0 + np.arange(500.0)]
    assert df["test_time_second"].to_list() == pytest.approx(expected)
    assert df["step_index"][99] == 0 and df["step_index"][100] == 1
    assert df["current_ampere"][100] == 1.0
    # the step's runInfo capacity (0 at its first sample), then 1 A x 1 s per sample
    assert df["charging_capacity_ampere_hour"][-1] == pytest.approx(499 / 3600)


def test_unsupported_ndc_version(tmp_path):
    members = ndax_members()
    data = bytearray(members["data.ndc"])
    data[2] = 13
    members["data.ndc"] = bytes(data)
    path = tmp_path / "v13.ndax"
    path.write_bytes(ndax_bytes(members))
    with pytest.raises(ReaderError, match=r"byte offset 2: data.ndc: ndc version 13 is not supp"):
        read(path)


def test_missing_member_and_damaged_zip(tmp_path):
    members = ndax_members()
    del members["data_step.ndc"]
    path = tmp_path / "nostep.ndax"
    path.write_bytes(ndax_bytes(members))
    with pytest.raises(ReaderError, match=r"no data_step\.ndc in the archive"):
        read(path)
    blob = bytearray(ndax_bytes(ndax_members()))
    blob[200:260] = b"\xff" * 60  # inside the compressed data of the first member
    path.write_bytes(bytes(blob))
    with pytest.raises(ReaderError, match=r"damaged \.ndax archive"):
        read(path)


def test_runinfo_past_the_data_dropped_with_warning(tmp_path):
    members = ndax_members(n=600)
    short = ndax_members(n=300)
    members["data.ndc"] = short["data.ndc"]
    path = tmp_path / "cut.ndax"
    path.write_bytes(ndax_bytes(members))
    with pytest.warns(ReaderWarning, match="records after the last sample .300. dropped"):
        df = read(path).frame
    assert df.height == 300
