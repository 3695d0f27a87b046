"""``cellbench analyze cycling|fade|conductivity|ccd`` on files and run folders."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import polars as pl
import pytest
from test_ccd import AREA, staircase
from test_conductivity import T_C, arrhenius_data
from test_cycling import cccv_frame
from test_fade import knee_data

from cellbench.cli.main import main
from cellbench.core.schema import Cell, RunMeta

KEYS = (
    "cycle_count",
    "charge_capacity_ampere_hour",
    "discharge_capacity_ampere_hour",
    "charge_energy_watt_hour",
    "discharge_energy_watt_hour",
    "coulombic_efficiency",
)


def _bdf_csv(df: pl.DataFrame, path) -> str:
    """A BDF csv as another tool would write it (no channel column)."""
    df.drop("channel", strict=False).with_columns(
        (pl.col("test_time_second") + 1.7e9).alias("unix_time_second")
    ).write_csv(path)
    return str(path)


def _run(tmp_path, df: pl.DataFrame, cell: Cell) -> str:
    from cellbench.daq.store import create_run

    meta = RunMeta(run_id="r1", start_time="2026-01-01T00:00:00Z", cell=cell)
    w = create_run(tmp_path / "runs", meta)
    n = df.height
    full = df.with_columns(
        (pl.col("test_time_second") + 1.7e9).alias("unix_time_second"),
        pl.Series("step_count", np.ones(n, dtype=np.int32)),
        pl.Series("step_index", np.zeros(n, dtype=np.int32)),
    )
    if "cycle_count" not in full.columns:
        full = full.with_columns(pl.lit(1, dtype=pl.Int32).alias("cycle_count"))
    if "channel" not in full.columns:
        full = full.with_columns(pl.lit("ch1").alias("channel"))
    w.append("samples", full)
    w.close()
    return str(tmp_path / "runs" / "r1")


def test_cycling_json_keys_and_values(tmp_path, capsys):
    df, truths = cccv_frame()
    path = _bdf_csv(df, tmp_path / "cccv.csv")
    assert main(["analyze", "cycling", path, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list) and len(rows) == 3
    for row, truth in zip(rows, truths, strict=True):
        assert all(k in row for k in KEYS)
        assert row["charge_capacity_ampere_hour"] == pytest.approx(
            truth["charge_capacity_ampere_hour"], rel=1e-9
        )
        assert 0 < row["coulombic_efficiency"] < 1
    assert [r["cycle_count"] for r in rows] == [1, 2, 3]


def test_cycling_table_and_segment(tmp_path, capsys):
    df, _ = cccv_frame()
    path = _bdf_csv(
        df.with_columns(pl.lit(1, dtype=pl.Int32).alias("cycle_count")), tmp_path / "a.csv"
    )
    assert main(["analyze", "cycling", path, "--segment"]) == 0
    out = capsys.readouterr().out
    assert "Q_ch/mAh" in out and "3 cycle(s)" in out  # 0.6375 Ah reads as 637.5 mAh
    assert "637.5" in out


def test_cycling_run_folder_uses_cell_mass(tmp_path, capsys):
    df, truths = cccv_frame()
    run = _run(tmp_path, df, Cell(active_mass_g=0.005, area_cm2=1.0))
    assert main(["analyze", "cycling", run, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    want = truths[0]["discharge_capacity_ampere_hour"] * 1000 / 0.005
    assert rows[0]["discharge_specific_capacity_milliampere_hour_per_gram"] == pytest.approx(want)


def test_fade_from_summary_csv(tmp_path, capsys):
    n, q = knee_data()
    path = tmp_path / "summary.csv"
    pl.DataFrame(
        {"cycle_count": n.astype(int), "discharge_capacity_ampere_hour": 2.0 * q}
    ).write_csv(path)
    assert main(["analyze", "fade", str(path), "--json", "--threshold", "0.8"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["best_model"] == "knee"
    lo, hi = d["end_of_life"]["prediction_interval"]
    assert lo < 812.5 < hi
    assert main(["analyze", "fade", str(path), "--first-n", "300"]) == 0
    out = capsys.readouterr().out
    assert "300 cycles fitted" in out and "extrapolated" in out


def test_conductivity_csv_and_resistance_geometry(tmp_path, capsys):
    sigma = arrhenius_data()
    a = tmp_path / "a.csv"
    pl.DataFrame(
        {"temperature_celsius": T_C, "conductivity_siemens_per_centimeter": sigma}
    ).write_csv(a)
    assert main(["analyze", "conductivity", str(a), "--json"]) == 0
    auto = json.loads(capsys.readouterr().out)
    # Both Arrhenius forms fit straight data equally well; VTF must not win.
    assert auto["model"] in ("arrhenius", "arrhenius_t")
    assert set(auto["alternatives"]) == {"arrhenius", "arrhenius_t", "vtf"}
    assert main(["analyze", "conductivity", str(a), "--json", "--model", "arrhenius"]) == 0
    d = json.loads(capsys.readouterr().out)
    lo, hi = d["activation_energy_ev_ci"]
    assert lo < 0.35 < hi
    b = tmp_path / "b.csv"
    pl.DataFrame({"temperature_celsius": T_C, "resistance_ohm": 0.1 / (sigma * 0.5)}).write_csv(b)
    assert main(["analyze", "conductivity", str(b), "--json"]) == 1
    assert "--thickness-cm" in capsys.readouterr().err
    argv = ["analyze", "conductivity", str(a), str(b), "--thickness-cm", "0.1", "--area-cm2", "0.5"]
    assert main([*argv, "--json", "--model", "arrhenius"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert len(both) == 2
    assert both[0]["activation_energy_ev"] == pytest.approx(both[1]["activation_energy_ev"])
    assert main(argv) == 0
    assert "kJ/mol" in capsys.readouterr().out
    c = tmp_path / "c.csv"
    pl.DataFrame(
        {
            "temperature_celsius": T_C,
            "conductivity_siemens_per_centimeter": sigma,
            "conductivity_stderr_siemens_per_centimeter": 0.03 * sigma,
        }
    ).write_csv(c)
    assert main(["analyze", "conductivity", str(c), "--json", "--model", "arrhenius"]) == 0
    weighted = json.loads(capsys.readouterr().out)
    assert weighted["activation_energy_ev"] == pytest.approx(d["activation_energy_ev"], rel=1e-9)


def test_ccd_file_and_run_area(tmp_path, capsys):
    df, _ = staircase(short_level=4)
    path = _bdf_csv(
        df.with_columns(pl.lit(1, dtype=pl.Int32).alias("cycle_count")), tmp_path / "s.csv"
    )
    assert main(["analyze", "ccd", path, "--json"]) == 1
    assert "--area-cm2" in capsys.readouterr().err
    assert main(["analyze", "ccd", path, "--area-cm2", str(AREA), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["ccd_milliampere_per_square_centimeter"] == pytest.approx(0.4)
    assert d["short_step"] == 8
    run = _run(tmp_path, df, Cell(area_cm2=AREA))
    assert main(["analyze", "ccd", run]) == 0
    assert "CCD = 0.4 mA/cm2" in capsys.readouterr().out


def test_missing_file_is_one_line_error(tmp_path, capsys):
    assert main(["analyze", "cycling", str(tmp_path / "nope.csv")]) == 1
    assert "nope.csv" in capsys.readouterr().err


def test_fade_needs_one_channel(tmp_path, capsys):
    a, _ = cccv_frame("a")
    b, _ = cccv_frame("b")
    run = _run(tmp_path, pl.concat([a, b]), Cell())
    assert main(["analyze", "fade", run]) == 1
    assert "--channel" in capsys.readouterr().err


@pytest.mark.shared_data
def test_real_generic_csv_files(shared_data, capsys):
    """The cellpy 'custom' exports: the good one summarises, each broken one is one clear line."""
    folder = shared_data / "cycling" / "bad"
    assert main(["analyze", "cycling", str(folder / "custom_good_small.csv"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["cycle_count"] for r in rows] == [1]
    broken = {
        "custom_missing_column": "no column for voltage_volt",
        "custom_missing_cycle": "line 41, column 'cycle': cycle number skips from 1 to 3",
        "custom_nan_inf": "line 24, column 'voltage': empty value",
        "custom_truncated": "line 80, column 'current': row has 5 of the header's 10 fields",
    }
    for name, what in broken.items():
        assert main(["analyze", "cycling", str(folder / f"{name}.csv")]) == 1
        *notes, err = capsys.readouterr().err.strip().splitlines()
        # the export states no units: one warning line, then the one error line
        assert all(n.startswith("cellbench: warning: ") for n in notes)
        assert err.startswith(f"cellbench: error: {folder / name}.csv: ") and what in err


# Every cycler format of the shared data through the command line: the stable JSON keys exactly,
# cycles as the vendor numbers them.
REAL_CYCLER_FILES = [
    ("biol.mpr", 1),
    pytest.param(
        "20160805_test001_45_cc_01.res",
        18,
        marks=pytest.mark.skipif(
            shutil.which("mdb-export") is None, reason="mdb-export (mdbtools) not installed"
        ),
    ),
    ("20260302_IFE_BTS85_2_9_8_1.ndax", 1),
    ("neware_uio.csv", 4),
    ("maccor_002.txt", 2),
]


@pytest.mark.shared_data
@pytest.mark.parametrize(("name", "cycles"), REAL_CYCLER_FILES)
def test_cycling_json_on_every_real_cycler_format(shared_data, capsys, name, cycles):
    assert main(["analyze", "cycling", str(shared_data / "cycling" / name), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["cycle_count"] for r in rows] == list(range(1, cycles + 1))
    for r in rows:
        assert set(KEYS) <= set(r)
        assert r["charge_capacity_ampere_hour"] >= 0 and r["discharge_capacity_ampere_hour"] >= 0
        assert r["charge_energy_watt_hour"] >= 0 and r["discharge_energy_watt_hour"] >= 0
        ce = r["coulombic_efficiency"]
        if r["charge_capacity_ampere_hour"] > 0:
            expected = r["discharge_capacity_ampere_hour"] / r["charge_capacity_ampere_hour"]
            assert ce == pytest.approx(expected, rel=1e-12)
    assert sum(r["charge_capacity_ampere_hour"] for r in rows) > 0
    # per-cycle capacities are the cycler's own (its running totals at the end of each cycle)
    from cellbench.analysis.readers import read_samples

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vendor = (
            read_samples(shared_data / "cycling" / name)
            .group_by("cycle_count")
            .agg(
                pl.col("charging_capacity_ampere_hour").max(),
                pl.col("discharging_capacity_ampere_hour").max(),
            )
            .sort("cycle_count")
        )
    assert [r["charge_capacity_ampere_hour"] for r in rows] == pytest.approx(
        vendor["charging_capacity_ampere_hour"].to_list(), rel=1e-3
    )
    assert [r["discharge_capacity_ampere_hour"] for r in rows] == pytest.approx(
        vendor["discharging_capacity_ampere_hour"].to_list(), rel=1e-3
    )


@pytest.mark.shared_data
def test_capacity_from_counters_or_integration(shared_data, capsys):
    """biol.mpr logs sparsely: integrating its samples gives 0.8 % more charge than the
    potentiostat's own counter, which the default (auto) reports."""
    path = str(shared_data / "cycling" / "biol.mpr")
    assert main(["analyze", "cycling", path, "--json"]) == 0
    auto = json.loads(capsys.readouterr().out)[0]["charge_capacity_ampere_hour"]
    assert auto == pytest.approx(4.9769e-3, rel=1e-4)
    assert main(["analyze", "cycling", path, "--json", "--capacity-from", "integration"]) == 0
    integrated = json.loads(capsys.readouterr().out)[0]["charge_capacity_ampere_hour"]
    assert integrated / auto == pytest.approx(1.0076, abs=5e-4)


def _lab_export(tmp_path) -> tuple[str, str]:
    """A csv no built-in reader knows (hours, mA, a German cycle column) and its column map."""
    lines = ["t (h),U (V),I (mA),Zyklus"]
    t = 0.0
    for cycle in (1, 2, 3):
        for sign in (1, -1):  # 1 h at +10 mA, then 1 h at -10 mA
            for k in range(61):
                lines.append(f"{t:.6f},{3.6 + 0.3 * sign * k / 60:.4f},{10.0 * sign},{cycle}")
                t += 1 / 60 if k < 60 else 0.0
    data = tmp_path / "rig3.csv"
    data.write_text("\n".join(lines) + "\n")
    cmap = tmp_path / "rig3.json"
    cmap.write_text(
        json.dumps(
            {
                "t (h)": ["test_time_second", 3600],
                "U (V)": "voltage_volt",
                "I (mA)": ["current_ampere", 0.001],
                "Zyklus": "cycle_count",
            }
        )
    )
    return str(data), str(cmap)


def test_column_map_reads_an_unknown_export(tmp_path, capsys):
    data, cmap = _lab_export(tmp_path)
    assert main(["analyze", "cycling", data]) == 1
    assert "--column-map" in capsys.readouterr().err
    assert main(["analyze", "cycling", data, "--column-map", cmap, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["cycle_count"] for r in rows] == [1, 2, 3]
    for r in rows:  # 10 mA for 1 h each way
        assert r["charge_capacity_ampere_hour"] == pytest.approx(0.010, rel=1e-9)
        assert r["discharge_capacity_ampere_hour"] == pytest.approx(0.010, rel=1e-9)
    assert main(["analyze", "ccd", data, "--column-map", cmap, "--area-cm2", "1", "--json"]) == 0
    ccd = json.loads(capsys.readouterr().out)
    assert ccd["shorted"] is False


def test_column_map_errors_name_the_file(tmp_path, capsys):
    data, _ = _lab_export(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"U (V)": "volts", "t (h)": ["test_time_second", 3600]}')
    assert main(["analyze", "cycling", data, "--column-map", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cellbench: error: ") and "rig3.csv" in err[0]
    assert "'volts'" in err[0]
    assert main(["analyze", "cycling", data, "--column-map", str(tmp_path / "none.json")]) == 1
    assert "none.json" in capsys.readouterr().err
    assert main(["analyze", "cycling", str(tmp_path), "--column-map", str(bad)]) == 1
    assert "not a file" in capsys.readouterr().err


def test_reader_warnings_print_as_one_line_each(tmp_path, capsys):
    df, _ = cccv_frame()
    path = tmp_path / "extra.csv"
    df.drop("channel", strict=False).with_columns(
        (pl.col("test_time_second") + 1.7e9).alias("unix_time_second"),
        pl.lit(1.0).alias("mystery_column"),
    ).write_csv(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may escape as a Python warning
        assert main(["analyze", "cycling", str(path)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err and all(line.startswith("cellbench: warning: ") for line in err)
    assert any("mystery_column" in line for line in err)


def test_fade_and_conductivity_errors_name_the_file(tmp_path, capsys):
    df, _ = cccv_frame()
    path = _bdf_csv(df, tmp_path / "one_cycle.csv")
    assert main(["analyze", "fade", path]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"cellbench: error: {path}: ") and "\n" not in err
    assert main(["analyze", "conductivity", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == f"cellbench: error: {tmp_path}: not a file"


def test_conductivity_from_resistance_with_standard_errors(tmp_path, capsys):
    sigma = arrhenius_data()
    r = 0.1 / (sigma * 0.5)
    geometry = ["--thickness-cm", "0.1", "--area-cm2", "0.5", "--model", "arrhenius", "--json"]
    by_sigma = tmp_path / "sigma.csv"
    pl.DataFrame(
        {
            "temperature_celsius": T_C,
            "conductivity_siemens_per_centimeter": sigma,
            "conductivity_stderr_siemens_per_centimeter": sigma * np.linspace(0.01, 0.2, T_C.size),
        }
    ).write_csv(by_sigma)
    by_r = tmp_path / "r.csv"
    pl.DataFrame(
        {
            "temperature_celsius": T_C,
            "resistance_ohm": r,
            "resistance_stderr_ohm": r * np.linspace(0.01, 0.2, T_C.size),
        }
    ).write_csv(by_r)
    assert main(["analyze", "conductivity", str(by_sigma), "--json", "--model", "arrhenius"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(["analyze", "conductivity", str(by_r), *geometry]) == 0
    b = json.loads(capsys.readouterr().out)
    # the same relative errors weight the fit the same way, whichever column carries them
    assert b["activation_energy_ev"] == pytest.approx(a["activation_energy_ev"], rel=1e-9)
    assert b["activation_energy_ev_ci"] == pytest.approx(a["activation_energy_ev_ci"], rel=1e-9)
    bad = tmp_path / "bad.csv"
    pl.DataFrame({"temperature_celsius": [25.0, 50.0, 75.0], "resistance_ohm": [100.0, -5.0, 20.0]}
                 ).write_csv(bad)  # fmt: skip
    assert main(["analyze", "conductivity", str(bad), *geometry]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"cellbench: error: {bad}: data row 2: ") and "-5.0" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fade", "x.csv", "--threshold", "2"], "--threshold: must lie between 0 and 1"),
        (["fade", "x.csv", "--confidence", "1.5"], "--confidence: must lie between 0 and 1"),
        (["fade", "x.csv", "--first-n", "2"], "--first-n: must be at least 3"),
        (["cycling", "x.csv", "--active-mass-g", "-1"], "--active-mass-g: must be a positive"),
        (["conductivity", "x.csv", "--area-cm2", "nan"], "--area-cm2: must be a positive"),
        (["ccd", "x.csv", "--collapse-fraction", "0"], "--collapse-fraction: must be a positive"),
        (["ccd", "x.csv", "--min-points", "zero"], "--min-points: not a whole number"),
    ],
)
def test_out_of_range_options_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(["analyze", *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_summary_table_is_one_line_naming_the_file(tmp_path, capsys):
    path = tmp_path / "summary.csv"
    path.write_text("cycle_count,capacity_retention\n1,1.0\n2,abc\n3,0.9\n")
    assert main(["analyze", "fade", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith(f"cellbench: error: {path}: not a readable summary table") and "abc" in err
    )
    assert "\n" not in err
