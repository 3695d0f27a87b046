"""Real files that earlier readers got wrong or refused (tests/corpus, sources in its README).

Reference values come from the vendors' own exports of the same files (BTSDA, as kept in
fastnda's tests) or from the files' own columns, as listed in ../shared/data/field/README.md.
Where no public file of a layout exists, the test says which documented layout its bytes follow.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellbench.analysis.cycling import cycle_summary
from cellbench.analysis.readers import ReaderError, ReaderWarning, detect_format, read
from cellbench.analysis.readers.neware_ndax import ndc_records
from cellbench.core.schema import validate_frame

CORPUS = Path(__file__).resolve().parent / "corpus"


def _read(name: str | Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read(CORPUS / name if isinstance(name, str) else name)


def _per_cycle(df: pl.DataFrame) -> pl.DataFrame:
    return (
        df.group_by("cycle_count")
        .agg(
            pl.col("charging_capacity_ampere_hour").max(),
            pl.col("discharging_capacity_ampere_hour").max(),
        )
        .sort("cycle_count")
    )


def _last(df: pl.DataFrame) -> tuple[float, float, float]:
    row = df.row(-1, named=True)
    return row["test_time_second"], row["voltage_volt"], row["current_ampere"]


# ------------------------------------------------------------------------------ Neware .nda


def test_nda_bts7_0xaa_records_skipped_rows_as_btsda():
    """BTS 7.6 file (version 29) with five 0xAA records among the data: BTSDA exports 439
    rows; capacities to its 0.1 mA s resolution per step."""
    result = _read("new_nda_file.nda")
    df = result.frame
    validate_frame("samples", df)
    assert result.metadata["nda_version"] == 29
    assert result.metadata["skipped_0xaa_records"] == 5
    assert df.height == 439
    t, v, i = _last(df)
    assert (t, v, i) == (pytest.approx(721.6), pytest.approx(-0.0951), 0.0)
    per = _per_cycle(df)
    assert per.height == 1
    # BTSDA: 2.5 and 25.4 mA s (export truncated to 0.1 mA s on each of the two steps)
    assert per["charging_capacity_ampere_hour"][0] == pytest.approx(6.94444e-07, abs=2 * 2.8e-8)
    assert per["discharging_capacity_ampere_hour"][0] == pytest.approx(7.05556e-06, abs=2 * 2.8e-8)


# ----------------------------------------------------------------------------- Neware .ndax


def test_ndax_ndc14_matches_btsda_export():
    result = _read("nw4-120-1-6-53.ndax")
    df = result.frame
    validate_frame("samples", df)
    assert detect_format(CORPUS / "nw4-120-1-6-53.ndax") == "neware-ndax"
    assert result.metadata["ndc_version"] == 14
    assert df.height == 18700
    t, v, i = _last(df)
    assert t == pytest.approx(173045.9, abs=1e-6)  # the test clock, exactly
    assert v == pytest.approx(3.4967, abs=5e-5)
    assert i == pytest.approx(-0.00039, abs=5e-8)
    per = _per_cycle(df)
    assert per.height == 150
    assert per["charging_capacity_ampere_hour"].sum() == pytest.approx(0.00712418, rel=1e-5)
    assert per["discharging_capacity_ampere_hour"].sum() == pytest.approx(0.00376095, rel=1e-5)
    first5 = [
        (0.00169654, 0.00032362),
        (0.000320648, 0.000232165),
        (0.000248621, 0.000171967),
        (0.000185291, 0.000150789),
        (0.000164344, 0.000143028),
    ]
    chg, dchg = per["charging_capacity_ampere_hour"], per["discharging_capacity_ampere_hour"]
    got = list(zip(chg[:5], dchg[:5], strict=True))
    assert got == [(pytest.approx(c, rel=1e-5), pytest.approx(d, rel=1e-5)) for c, d in first5]
    # the cycle summary from the file's counters gives the same per-cycle values
    summary = cycle_summary(df, capacity_source="counters")
    assert summary["charge_capacity_ampere_hour"][:5].to_list() == pytest.approx(
        [c for c, _ in first5], rel=1e-5
    )


def test_ndax_ndc16_matches_btsda_export():
    result = _read("46_1_5_60_bts16.ndax")
    df = result.frame
    validate_frame("samples", df)
    assert result.metadata["ndc_version"] == 16
    assert df.height == 84
    t, v, i = _last(df)
    assert (t, v, i) == (pytest.approx(80.0, abs=1e-9), pytest.approx(2.8848, abs=5e-5), 0.0)
    per = _per_cycle(df)
    assert per.height == 1
    assert per["charging_capacity_ampere_hour"][0] == pytest.approx(0.0166817, rel=2e-5)
    assert per["discharging_capacity_ampere_hour"][0] == pytest.approx(0.0166408, rel=2e-5)
    # 1 s per sample in the file's runInfo interval: times exact, not interpolated
    assert np.diff(df["test_time_second"].to_numpy())[:10].tolist() == [1.0] * 10


def test_ndax_step_capacities_are_the_cyclers_counters():
    """At every runInfo record the frame's per-step capacity is the record's own value (the
    reader integrated current before and came out a constant few nAh low)."""
    path = CORPUS / "nw4-120-1-6-53.ndax"
    df = _read(path.name).frame
    with zipfile.ZipFile(path) as zf:
        runs = ndc_records(path, "data_runInfo.ndc", zf.read("data_runInfo.ndc"), 18)
    runs = runs[runs["sample"] > 0]
    _, first = np.unique(runs["sample"], return_index=True)
    runs = runs[first]
    rows = runs["sample"].astype(np.int64) - 1
    # per-step values: the cycle's running total less what the cycle's earlier steps ended with
    chg = df["charging_capacity_ampere_hour"].to_numpy()
    step = df["step_count"].to_numpy()
    cycle = df["cycle_count"].to_numpy()
    last = np.r_[np.flatnonzero(np.diff(step)), step.size - 1]
    same = np.r_[False, cycle[last][1:] == cycle[last][:-1]]
    base = np.where(same, np.r_[0.0, chg[last][:-1]], 0.0)
    step_chg = (chg - np.repeat(base, np.diff(np.r_[-1, last])))[rows]
    assert np.max(np.abs(step_chg - np.abs(runs["chg_ah"]))) < 1e-9


# ---------------------------------------------------------------------------- Maccor text


def test_maccor_day_format_test_time_excerpt():
    """TestTime written as `  0d 00:00:0` and `  0d 00:00:5.05000019073486` (the first 201
    records of maccor_one.txt)."""
    df = _read("maccor_one_head.txt").frame
    assert df.height == 201
    t = df["test_time_second"].to_numpy()
    assert t[:3].tolist() == pytest.approx([0.0, 5.0, 5.05000019073486])
    assert np.all(np.diff(t) >= 0)


def test_maccor_day_format_whole_file(shared_data):
    path = shared_data / "field" / "maccor_one.txt"
    df = _read(path).frame
    assert df.height == 4459
    t, v, i = _last(df)
    assert (t, v, i) == (pytest.approx(123012.75), pytest.approx(4.19997), pytest.approx(1.49989))
    per = _per_cycle(df)
    assert per["charging_capacity_ampere_hour"].sum() == pytest.approx(12.2122, rel=1e-5)
    assert per["discharging_capacity_ampere_hour"].sum() == pytest.approx(9.53584, rel=1e-5)


def test_maccor_paused_test_keeps_the_test_clock_and_counters():
    """A paused test's export starts at test time 769267 s inside a discharge step: time runs
    on from the file's test clock, and the cycle's discharge is the file's counter (0.0236 Ah),
    never current integrated over a guessed time (9.68 Ah before)."""
    result = _read("PredictionDiagnostics_000151_paused.052")
    df = result.frame
    assert df.height == 332
    assert df["test_time_second"][0] == pytest.approx(769267.24)
    t, v, i = _last(df)
    assert (t, v, i) == (pytest.approx(769270.57), pytest.approx(3.86252, abs=1e-5),
                         pytest.approx(-4.84024, abs=1e-5))  # fmt: skip
    summary = cycle_summary(df, capacity_source="counters")
    assert summary["discharge_capacity_ampere_hour"].to_list() == pytest.approx([0.0236349063])
    assert summary["charge_capacity_ampere_hour"].to_list() == [0.0]


def _maccor_localised(tmp_path, *, commas: bool, date_only: bool) -> Path:
    """The paused export as Maccor writes it under a decimal-comma locale and/or with a
    date-only DPt Time column (`10/21/2019`): same records, other text."""
    lines = (CORPUS / "PredictionDiagnostics_000151_paused.052").read_text("latin-1").splitlines()
    out = lines[:2]
    for ln in lines[2:]:
        fields = ln.split("\t")
        if len(fields) < 12:
            out.append(ln)
            continue
        if date_only:
            fields[11] = fields[11].split(" ")[0]
        if commas:
            fields = [f.replace(".", ",") if k != 11 else f for k, f in enumerate(fields)]
        out.append("\t".join(fields))
    path = tmp_path / "localised.052"
    path.write_text("\n".join(out) + "\n", "latin-1")
    return path


@pytest.mark.parametrize(("commas", "date_only"), [(True, False), (False, True), (True, True)])
def test_maccor_decimal_commas_and_date_only_clock(tmp_path, commas, date_only):
    ref = _read("PredictionDiagnostics_000151_paused.052").frame
    df = _read(_maccor_localised(tmp_path, commas=commas, date_only=date_only)).frame
    for col in ("test_time_second", "voltage_volt", "current_ampere",
                "discharging_capacity_ampere_hour"):  # fmt: skip
        assert df[col].to_list() == pytest.approx(ref[col].to_list())
    if date_only:  # a day alone reads as its midnight (UTC, like every zone-less clock)
        assert df["unix_time_second"][0] == pytest.approx(1571616000.0)


# ------------------------------------------------------------------------------ Arbin


def _arbin_from_bdf(tmp_path, date_header: str, *, counters: bool = True) -> Path:
    """Real Arbin records (the BDF excerpt of an Arbin test) in the MITS Pro csv layout, with
    `DateTime` holding unix seconds as some MITS exports write it."""
    src = pl.read_csv(CORPUS / "shandong_nacr32140_arbin_head.bdf.csv")
    out = pl.DataFrame(
        {
            "Data_Point": src["record_index"],
            "Test_Time(s)": src["test_time_second"],
            date_header: src["unix_time_second"],
            "Current(A)": src["current_ampere"],
            "Voltage(V)": src["voltage_volt"],
        }
    )
    if counters:
        out = out.with_columns(
            src["cycle_count"].alias("Cycle_Index"), src["step_id"].alias("Step_Index")
        )
    path = tmp_path / "arbin.csv"
    out.write_csv(path)
    return path


def test_arbin_csv_datetime_in_unix_seconds(tmp_path):
    path = _arbin_from_bdf(tmp_path, "DateTime")
    with pytest.warns(ReaderWarning, match="unix seconds, not spreadsheet day numbers"):
        result = read(path)
    assert result.format == "arbin-csv"
    assert result.frame["unix_time_second"][0] == pytest.approx(1696954154.661)


def test_arbin_csv_impossible_dates_name_the_file(tmp_path):
    path = _arbin_from_bdf(tmp_path, "DateTime")
    text = path.read_text().splitlines()
    fields = text[3].split(",")
    fields[2] = "1e14"
    text[3] = ",".join(fields)
    path.write_text("\n".join(text) + "\n")
    message = r"arbin\.csv: line 4, column 'DateTime': 100000000000000\.0 is neither"
    with pytest.raises(ReaderError, match=message):
        read(path)


def test_arbin_export_without_cycle_or_step_columns_is_segmented(shared_data, tmp_path):
    """The real .res table exported without Cycle_Index and Step_Index: steps and cycles come
    from the current, and match the cycler's own cycle count."""
    import shutil

    if shutil.which("mdb-export") is None:
        pytest.skip("mdb-export (mdbtools) not installed: the Arbin .res cannot be exported")
    res = shared_data / "cycling" / "20160805_test001_45_cc_01.res"
    ref = _read(res).frame
    from cellbench.analysis.readers.cyclers import mdb_export

    table = pl.read_csv(mdb_export(res, "Channel_Normal_Table").encode(), infer_schema=False)
    table = table.drop("Cycle_Index", "Step_Index", "Test_ID")
    table = table.rename({"Test_Time": "Test_Time(s)", "Current": "Current(A)",
                          "Voltage": "Voltage(V)"})  # fmt: skip
    path = tmp_path / "nocycles.csv"
    table.write_csv(path)
    with pytest.warns(ReaderWarning, match="steps and cycles derived from the current"):
        df = read(path).frame
    assert df.height == ref.height
    assert abs(df["cycle_count"].max() - ref["cycle_count"].max()) <= 1


def test_arbin_res_rows_sorted_by_data_point(shared_data):
    """mdb-export can return the records out of Data_Point order: the real table, shuffled,
    reads like the original."""
    import shutil

    if shutil.which("mdb-export") is None:
        pytest.skip("mdb-export (mdbtools) not installed: the Arbin .res cannot be exported")
    from cellbench.analysis.readers.base import Notes
    from cellbench.analysis.readers.cyclers import in_data_point_order, mdb_export

    res = shared_data / "cycling" / "20160805_test001_45_cc_01.res"
    text = mdb_export(res, "Channel_Normal_Table")
    table = pl.read_csv(text.encode(), infer_schema=False)
    shuffled = table.sample(fraction=1.0, shuffle=True, seed=7).write_csv()
    notes = Notes(res)
    with pytest.warns(ReaderWarning, match="not in Data_Point order"):
        fixed = in_data_point_order(res, shuffled, notes)
    assert pl.read_csv(fixed.encode(), infer_schema=False).equals(table)


# ------------------------------------------------------------------------------ Gamry, BDF


def test_gamry_dta_with_decimal_commas(shared_data, tmp_path):
    """Gamry Framework writes the Windows locale's decimal comma (`109,00918219439`): the
    impedance.py example file rewritten so reads as the original."""
    src = shared_data / "eis" / "exampleDataGamry.DTA"
    ref = _read(src).frame
    lines = src.read_text("latin-1").splitlines()
    out = []
    for ln in lines:
        parts = ln.split("\t")
        out.append("\t".join(p.replace(".", ",") if _numberlike(p) else p for p in parts))
    path = tmp_path / "comma.DTA"
    path.write_text("\n".join(out) + "\n", "latin-1")
    df = _read(path).frame
    assert df.height == ref.height
    for col in ("frequency_hertz", "z_real_ohm", "z_imag_ohm"):
        assert df[col].to_list() == pytest.approx(ref[col].to_list())


def _numberlike(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return "." in text


def test_bdf_current_specification_names():
    """The BDF reference files of battery-data-alliance/battery-data-format: every column is
    known (none dropped as unknown), capacities, energies and temperatures kept."""
    for name, want in (
        ("shandong_nacr32140_arbin_head.bdf.csv",
         {"charging_capacity_ampere_hour", "discharging_energy_watt_hour", "temperature_celsius",
          "internal_resistance_ohm", "step_index"}),
        ("faraday_lg_m50_maccor_head.bdf.csv", {"temperature_celsius", "step_count"}),
    ):  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("error", ReaderWarning)
            result = read(CORPUS / name)
        assert result.format == "bdf-csv"
        assert want <= set(result.frame.columns)
        validate_frame("samples", result.frame)


def test_bdf_earlier_spellings_and_running_totals(tmp_path):
    """Earlier BDF drafts (cellpy's batmo_bdf.csv header: `Test Time / h`, `Charge Capacity /
    Ah`) are read; totals that run on over the test become per-cycle totals."""
    header = (
        "Test Time / h,Current / A,Voltage / V,Protocol Name / 1,Step Type / 1,"
        "Cycle Count / 1,Step Index / 1,Charge Capacity / Ah,Discharge Capacity / Ah"
    )
    rows = [
        "0.5,1.0,3.6,0,charge,1,1,0.5,0",
        "1.0,1.0,3.9,0,charge,1,1,1.0,0",
        "1.5,-1.0,3.7,0,discharge,1,2,1.0,0.5",
        "2.0,-1.0,3.4,0,discharge,1,2,1.0,1.0",
        "2.5,1.0,3.6,0,charge,2,1,1.5,1.0",
        "3.0,1.0,3.9,0,charge,2,1,1.9,1.0",
        "3.5,-1.0,3.7,0,discharge,2,2,1.9,1.4",
    ]
    path = tmp_path / "draft.bdf.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    with pytest.warns(ReaderWarning, match="run on over the test"):
        df = read(path).frame
    assert df["test_time_second"].to_list() == pytest.approx([1800.0 * k for k in range(1, 8)])
    per = _per_cycle(df)
    assert per["charging_capacity_ampere_hour"].to_list() == pytest.approx([1.0, 0.9])
    assert per["discharging_capacity_ampere_hour"].to_list() == pytest.approx([1.0, 0.4])
