"""Replicate statistics across cells (mean, SD, n, interval), per-cycle bands, grouping by build
batch, the CCD as cumulative areal capacity at failure, and ``analyze replicates`` on
synthetic runs with known capacities and on a real cycler file."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from cellbench.analysis.ccd import critical_current_density
from cellbench.analysis.replicates import (
    ReplicateError,
    cycle_bands,
    describe,
    group_cells,
    with_asr,
)
from cellbench.cli.main import main
from cellbench.core.schema import Cell, RunMeta
from cellbench.daq.store import create_run


def test_describe_mean_sd_n_and_interval():
    values = {"a": 1.0, "b": 2.0, "c": 4.0, "d": None, "e": math.nan}
    s = describe("q", values)
    x = np.array([1.0, 2.0, 4.0])
    assert s.n == 3 and s.cells == ("a", "b", "c")
    assert s.mean == pytest.approx(x.mean()) and s.sd == pytest.approx(x.std(ddof=1))
    half = stats.t.ppf(0.975, 2) * x.std(ddof=1) / math.sqrt(3)
    assert (s.ci_low, s.ci_high) == pytest.approx((x.mean() - half, x.mean() + half))
    assert s.cv == pytest.approx(x.std(ddof=1) / x.mean())
    assert s.text() == "2.333 ± 1.53 (n = 3)"
    one = describe("q", {"a": 5.0})
    assert one.n == 1 and math.isnan(one.sd) and one.text() == "5 (n = 1)"
    assert describe("q", {}).n == 0


def _summary(capacities, ce=0.99, r=10.0):
    n = len(capacities)
    return pl.DataFrame(
        {
            "cycle_count": list(range(1, n + 1)),
            "discharge_capacity_ampere_hour": capacities,
            "coulombic_efficiency": [ce] * n,
            "dc_resistance_ohm": [r] * n,
        }
    )


def test_cycle_bands_align_by_cycle_and_show_n():
    a = with_asr(_summary([1.0, 0.9, 0.8]), 2.0)
    b = with_asr(_summary([1.2, 1.1, 1.0], r=12.0), 2.0)
    c = with_asr(_summary([1.1, 1.0]), 2.0)  # this cell stopped after cycle 2
    bands = cycle_bands({"a": a, "b": b, "c": c})
    assert bands["cycle_count"].to_list() == [1, 2, 3]
    assert bands["discharge_capacity_ampere_hour_n"].to_list() == [3, 3, 2]
    assert bands["discharge_capacity_ampere_hour_mean"].to_list() == pytest.approx([1.1, 1.0, 0.9])
    assert bands["discharge_capacity_ampere_hour_sd"][0] == pytest.approx(0.1)
    asr = bands["area_specific_resistance_ohm_square_centimeter_mean"].to_list()
    assert asr[0] == pytest.approx((20 + 24 + 20) / 3)
    with pytest.raises(ReplicateError, match="no cells"):
        cycle_bands({})


def test_group_cells():
    labels = ["A-01", "A-02", "B-01", "x"]
    by_batch = group_cells(labels, "cell-batch", batches={"A-01": "b1", "A-02": "b1", "B-01": "b2"})
    assert by_batch == {"b1": ["A-01", "A-02"], "b2": ["B-01"], "(no batch)": ["x"]}
    assert group_cells(labels[:3], r"regex:^([AB])-")["A"] == ["A-01", "A-02"]
    with pytest.raises(ReplicateError, match="does not match 'x'"):
        group_cells(labels, r"regex:^([AB])-")
    with pytest.raises(ReplicateError, match="expected none"):
        group_cells(labels, "colour")
    assert group_cells(labels, "none") == {"all": labels}


def _staircase(levels_ma, half_s, area, short_level=None, short_after_s=None, r_ohm=100.0):
    """Li|SE|Li: each level +I then -I for half_s, 1 s samples; a hard short at a level."""
    t, i, v, now = [], [], [], 0.0
    for level in levels_ma:
        for sign in (1, -1):
            for k in range(int(half_s)):
                cur = sign * level * 1e-3 * area
                shorted = level == short_level and sign == 1 and k >= short_after_s
                t.append(now)
                i.append(cur)
                v.append(cur * (1.0 if shorted else r_ohm))
                now += 1.0
            if level == short_level:
                return pl.DataFrame({"test_time_second": t, "current_ampere": i, "voltage_volt": v})
    return pl.DataFrame({"test_time_second": t, "current_ampere": i, "voltage_volt": v})


def test_ccd_cumulative_areal_capacity_at_failure():
    area, half = 0.5, 600.0
    df = _staircase([0.1, 0.2, 0.3], half, area, short_level=0.3, short_after_s=300)
    res = critical_current_density(df, area)
    assert res.shorted and res.ccd_milliampere_per_square_centimeter == pytest.approx(0.2)
    # both directions of the completed levels, then 0.3 mA/cm2 until the short (trapezoids
    # over 1 s samples: each half-cycle of N samples integrates N-1 intervals)
    done = sum(2 * j * (half - 1) / 3600 for j in (0.1, 0.2))
    total = done + 0.3 * 300 / 3600  # short detected at sample 300 (3 samples of collapse)
    got = res.cumulative_areal_capacity_milliampere_hour_per_square_centimeter
    assert got == pytest.approx(total, rel=0.01)
    steps = res.steps
    assert steps["cumulative_areal_capacity_milliampere_hour_per_square_centimeter"][-1] == got
    assert steps["areal_capacity_milliampere_hour_per_square_centimeter"][0] == pytest.approx(
        0.1 * (half - 1) / 3600
    )
    assert res.to_dict()["cumulative_areal_capacity_milliampere_hour_per_square_centimeter"] == got


def _cycling(capacity_ah: float, cycles: int, fade: float) -> pl.DataFrame:
    """CC cycles at 1 mA, 10 s samples, discharge capacity capacity_ah * (1 - fade)^(k-1)."""
    rows = []
    t = 0.0
    for k in range(1, cycles + 1):
        q = capacity_ah * (1 - fade) ** (k - 1)
        for sign in (1, -1):
            n = round(q / 1e-3 * 3600 / 10)
            for _ in range(n + 1):
                rows.append((t, 3.7 + sign * 0.1, sign * 1e-3, k))
                t += 10.0
    t_, v, i, c = zip(*rows, strict=True)
    n = len(t_)
    return pl.DataFrame(
        {
            "channel": ["ch1"] * n,
            "test_time_second": t_,
            "unix_time_second": [1.7e9 + x for x in t_],
            "voltage_volt": v,
            "current_ampere": i,
            "cycle_count": c,
            "step_count": [1] * n,
            "step_index": [0] * n,
        }
    )


def test_analyze_replicates_groups_runs_by_build_batch(tmp_path, capsys):
    caps = {"A1": 2.0e-3, "A2": 2.1e-3, "A3": 2.2e-3, "B1": 1.5e-3, "B2": 1.6e-3}
    for name, q in caps.items():
        cell = Cell(name=name, area_cm2=1.0, build={"batch": f"batch-{name[0]}"})
        with create_run(tmp_path, RunMeta(name, "2026-12-01T00:00:00Z", cell=cell)) as w:
            w.append("samples", _cycling(q, 3, 0.05 if name[0] == "A" else 0.1))
    files = [str(tmp_path / n) for n in caps]
    out = tmp_path / "report"
    args = ["analyze", "replicates", *files, "--group-by", "cell-batch", "--json"]
    assert main([*args, "--report", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["groups"]) == {"batch-A", "batch-B"}
    a = {s["quantity"]: s for s in doc["groups"]["batch-A"]["statistics"]}
    q0 = a["initial_discharge_capacity_ampere_hour"]
    assert q0["n"] == 3 and q0["mean"] == pytest.approx(2.1e-3, rel=2e-3)
    assert q0["sd"] == pytest.approx(0.1e-3, rel=0.03)
    ret = a["capacity_retention_last_common_cycle"]
    assert ret["mean"] == pytest.approx(0.95**2, rel=3e-3)
    b = {s["quantity"]: s for s in doc["groups"]["batch-B"]["statistics"]}
    assert b["capacity_retention_last_common_cycle"]["mean"] == pytest.approx(0.81, rel=5e-3)
    band = doc["groups"]["batch-B"]["cycle_bands"]
    assert [r["discharge_capacity_ampere_hour_n"] for r in band] == [2, 2, 2]
    assert (out / "report.html").exists() and (out / "replicate_statistics.csv").exists()
    assert (out / "cycle_bands.png").exists()
    # the plain table shows mean ± SD with n
    assert main(["analyze", "replicates", *files, "--group-by", "cell-batch"]) == 0
    text = capsys.readouterr().out
    assert "group batch-A: 3 cell(s)" in text and "(n = 3)" in text


def test_analyze_replicates_on_a_real_file(shared_data, capsys):
    f = str(shared_data / "cycling" / "neware_uio.csv")
    assert main(["analyze", "cycling", f, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    first = next(r for r in summary if r["discharge_capacity_ampere_hour"])
    assert main(["analyze", "replicates", f, f, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    s = doc["groups"]["all"]["statistics"][0]
    assert s["quantity"] == "initial_discharge_capacity_ampere_hour" and s["n"] == 2
    assert s["mean"] == pytest.approx(first["discharge_capacity_ampere_hour"])
    assert s["sd"] == 0.0


def test_analyze_replicates_ccd_and_conductivity(tmp_path, capsys):
    area = 1.0
    for name, short_level in (("c1", 0.3), ("c2", 0.4), ("c3", 0.3)):
        df = _staircase([0.1, 0.2, 0.3, 0.4], 300.0, area, short_level, short_after_s=100)
        n = df.height
        frame = df.with_columns(
            pl.lit("ch").alias("channel"),
            (pl.col("test_time_second") + 1.7e9).alias("unix_time_second"),
            pl.lit(1).alias("cycle_count"),
            pl.lit(1).alias("step_count"),
            pl.lit(0).alias("step_index"),
        )
        cell = Cell(name=name, area_cm2=area)
        with create_run(tmp_path, RunMeta(name, "2026-12-01T00:00:00Z", cell=cell)) as w:
            w.append("samples", frame)
        assert n > 0
    runs = [str(tmp_path / n) for n in ("c1", "c2", "c3")]
    assert main(["analyze", "replicates", *runs, "--quantity", "ccd", "--json"]) == 0
    stats_ = {
        s["quantity"]: s for s in json.loads(capsys.readouterr().out)["groups"]["all"]["statistics"]
    }
    ccd = stats_["ccd_milliampere_per_square_centimeter"]
    assert ccd["n"] == 3 and ccd["mean"] == pytest.approx((0.2 + 0.3 + 0.2) / 3)
    assert ccd["sd"] == pytest.approx(np.std([0.2, 0.3, 0.2], ddof=1))
    # conductivity tables with sigma(25) of 1, 2 and 3 x 1e-4 S/cm at Ea 0.3 eV
    files = []
    for k in (1, 2, 3):
        t = np.array([25.0, 45.0, 65.0, 85.0])
        s = k * 1e-4 * np.exp(-0.3 / 8.617333262e-5 * (1 / (t + 273.15) - 1 / 298.15))
        path = tmp_path / f"sigma{k}.csv"
        pl.DataFrame(
            {"temperature_celsius": t, "conductivity_siemens_per_centimeter": s}
        ).write_csv(path)
        files.append(str(path))
    assert main(["analyze", "replicates", *files, "--quantity", "conductivity", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["groups"]["all"]["statistics"]
    sigma = next(s for s in out if s["quantity"] == "conductivity_25c_siemens_per_centimeter")
    assert sigma["mean"] == pytest.approx(2e-4, rel=1e-6) and sigma["sd"] == pytest.approx(1e-4)
    ea = next(s for s in out if s["quantity"] == "activation_energy_ev")
    assert ea["mean"] == pytest.approx(0.3, rel=1e-6) and ea["n"] == 3
