"""Cycler exports on the real files in ../shared/data/cycling: Arbin .res, Neware csv, Maccor.

Per-cycle capacities: the canonical running totals come from the vendor's own counters; they must
agree within 0.1 % with the charge integrated from the recorded current and time, an independent
route through the same file.
"""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from cellbench.analysis.readers import ReaderError, detect_format, read
from cellbench.analysis.readers import cyclers as cyclers_mod
from cellbench.analysis.readers.base import capacities_per_cycle
from cellbench.core.schema import validate_frame

needs_mdbtools = pytest.mark.skipif(
    shutil.which("mdb-export") is None,
    reason="mdb-export (mdbtools) not installed: Arbin .res files cannot be read here",
)


def _per_cycle(df: pl.DataFrame) -> pl.DataFrame:
    return (
        df.group_by("cycle_count")
        .agg(
            pl.col("charging_capacity_ampere_hour").max().alias("chg"),
            pl.col("discharging_capacity_ampere_hour").max().alias("dchg"),
        )
        .sort("cycle_count")
    )


def _check_against_integration(df: pl.DataFrame) -> None:
    vendor = _per_cycle(df)
    integrated = _per_cycle(
        capacities_per_cycle(
            df.drop("charging_capacity_ampere_hour", "discharging_capacity_ampere_hour")
        )
    )
    for col in ("chg", "dchg"):
        v, i = vendor[col].to_numpy(), integrated[col].to_numpy()
        big = v > 1e-6
        assert big.any()
        assert i[big] == pytest.approx(v[big], rel=1e-3)


@pytest.mark.parametrize(
    ("name", "fmt", "rows", "cycles"),
    [
        pytest.param(
            "20160805_test001_45_cc_01.res", "arbin-res", 10261, None, marks=needs_mdbtools
        ),
        ("neware_uio.csv", "neware-csv", 9065, [1, 2, 3, 4]),
        ("maccor_002.txt", "maccor-txt", 7446, [1, 2]),
    ],
)
def test_real_cycler_files(shared_data, name, fmt, rows, cycles):
    path = shared_data / "cycling" / name
    assert detect_format(path) == fmt
    result = read(path)
    df = result.frame
    validate_frame("samples", df)
    assert df.height == rows
    assert result.warnings == []
    if cycles:
        assert df["cycle_count"].unique().sort().to_list() == cycles
    assert df["current_ampere"].min() < 0 < df["current_ampere"].max()  # charge and discharge
    _check_against_integration(df)


@needs_mdbtools
def test_arbin_res_matches_its_own_table(shared_data):
    path = shared_data / "cycling" / "20160805_test001_45_cc_01.res"
    raw = pl.read_csv(
        cyclers_mod.mdb_export(path, "Channel_Normal_Table").encode(), infer_schema_length=None
    )
    vendor = raw.group_by("Cycle_Index").agg(pl.col("Charge_Capacity").max()).sort("Cycle_Index")
    result = read(path)
    ours = _per_cycle(result.frame)
    assert ours["chg"].to_list() == pytest.approx(vendor["Charge_Capacity"].to_list(), rel=1e-9)
    assert result.metadata["Test_Name"] == "20160805_sic006_45_cc_01-01-003"
    # Start_DateTime 42587.678 (Excel days) = 2016-08-05 16:16 (cycler's local clock)
    assert result.frame["unix_time_second"][0] == pytest.approx(1470413782.99 + 300.01, abs=1.0)


def test_arbin_res_without_mdbtools_names_the_tool(shared_data, monkeypatch):
    monkeypatch.setattr(cyclers_mod.shutil, "which", lambda name: None)
    path = shared_data / "cycling" / "20160805_test001_45_cc_01.res"
    with pytest.raises(ReaderError, match=r"needs 'mdb-export' from mdbtools"):
        read(path)


def test_neware_csv_step_capacity_becomes_cycle_total(shared_data):
    path = shared_data / "cycling" / "neware_uio.csv"
    raw = pl.read_csv(path, infer_schema_length=None)
    steps = raw.group_by("Cycle Index", "Step Index", maintain_order=True).agg(
        pl.col("DChg. Cap.(Ah)").last()
    )
    vendor = steps.group_by("Cycle Index").agg(pl.col("DChg. Cap.(Ah)").sum()).sort("Cycle Index")
    ours = _per_cycle(read(path).frame)
    assert ours["dchg"].to_list() == pytest.approx(vendor["DChg. Cap.(Ah)"].to_list(), rel=1e-9)


def test_maccor_sign_and_time_unit(shared_data):
    result = read(shared_data / "cycling" / "maccor_002.txt")
    df = result.frame
    assert result.metadata["test_time_unit_second"] == 60.0
    assert result.metadata["Description"] == "SIMBA-Capacity_test"
    # record 2305 (line 2305 of the file): mode D, 0.00016190 A unsigned -> -0.16190 mA
    row = df.row(2305 - 16, named=True)  # data starts on line 16 (header, blank line)
    assert row["current_ampere"] == pytest.approx(-0.00016190)
    assert row["test_time_second"] == pytest.approx(1273.411833 * 60)


def test_arbin_csv_export(tmp_path):
    path = tmp_path / "arbin.csv"
    path.write_text(
        "Data_Point,Test_Time(s),Date_Time,Step_Time(s),Step_Index,Cycle_Index,Current(A),"
        "Voltage(V),Charge_Capacity(Ah),Discharge_Capacity(Ah)\n"
        "1,0,08/05/2016 16:17:35,0,1,1,0.5,3.0,0,0\n"
        "2,3600,08/05/2016 17:17:35,3600,1,1,0.5,4.0,0.5,0\n"
        "3,7200,08/05/2016 18:17:35,3600,2,1,-0.5,3.5,0.5,0.5\n"
    )
    result = read(path)
    assert result.format == "arbin-csv"
    df = result.frame
    assert df["step_index"].to_list() == [0, 0, 1]
    assert df["unix_time_second"][0] == pytest.approx(1470413855.0)
    assert df["discharging_capacity_ampere_hour"][-1] == 0.5


def test_neware_nda_of_an_unknown_version_names_it(tmp_path):
    """Reading .nda is tested in test_readers_nda.py; a version it does not know is refused."""
    path = tmp_path / "old.nda"
    path.write_bytes(b"NEWARE" + b"\0" * 200)
    assert detect_format(path) == "neware-nda"
    with pytest.raises(ReaderError, match=r"old\.nda: byte offset 14: nda file version 0 is not"):
        read(path)


def test_biologic_mpt_cycling(tmp_path):
    """A GCPL text export: mA and mA.h to A and Ah, cycle number from 0 to cycles from 1, and
    per-cycle totals from dq."""
    names = ["mode", "ox/red", "Ns", "time/s", "Ewe/V", "I/mA", "dq/mA.h", "(Q-Qo)/mA.h",
             "half cycle", "cycle number"]  # fmt: skip
    rows = []
    for k in range(40):
        half = k // 10
        cur = 2.0 if half % 2 == 0 else -2.0
        dq = 0.0 if k == 0 else cur * 60 / 3600
        rows.append([1, 1, half % 2, k * 60.0, 3.5, cur, dq, 0.0, half, half // 2])
    header = ["EC-Lab ASCII FILE", "Nb header lines : 5", "", "Galvanostatic Cycling with "
              "Potential Limitation", "Acquisition started on : 05/17/2024 09:30:00"]  # fmt: skip
    lines = [header[0], header[1], header[3], header[4], "\t".join(names)]
    lines += ["\t".join(str(v) for v in r) for r in rows]
    path = tmp_path / "gcpl.mpt"
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")
    result = read(path)
    assert (result.format, result.kind) == ("biologic-mpt", "samples")
    df = result.frame
    assert df["cycle_count"].unique().sort().to_list() == [1, 2]
    assert df["current_ampere"][0] == pytest.approx(2e-3)
    per = _per_cycle(df)
    assert per["chg"].to_list() == pytest.approx([9 * 2 * 60 / 3600 * 1e-3, 10 * 2 / 60 * 1e-3])
    assert per["dchg"].to_list() == pytest.approx([10 * 2 / 60 * 1e-3] * 2)
    assert result.metadata["start_time_known"]
    assert result.metadata["technique"].startswith("Galvanostatic Cycling")
