"""Pulse and step resistance (HPPC / DCIR): synthetic R0 + R1||C1 data with known truth, the
simulated cell through the engine, the command line and the cycle summary's step resistance."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellbench.analysis.cycling import cycle_summary
from cellbench.analysis.pulses import (
    PulseError,
    find_pulses,
    step_resistance_by_cycle,
    step_resistances,
)

R0, R1, TAU = 0.05, 0.03, 1.5  # ohm, ohm, s
OCV0, CAPACITY = 3.7, 2.0  # V, Ah


def rc_hppc(dt: float, *, pulses=((-2.0, 10.0), (1.5, 10.0)), rest: float = 40.0,
            temperature_c: float | None = 25.0, cycle: int = 1) -> pl.DataFrame:  # fmt: skip
    """Rest, then pulses each followed by a rest, sampled every ``dt`` s from t=0; the pulse's
    first sample is at its edge. V = OCV(q) + I R0 + v_RC with v_RC exact for piecewise I; the
    OCV moves 0.1 V per Ah (so the OCV correction has something to remove)."""
    segs = [(0.0, rest)]
    for current, length in pulses:
        segs += [(current, length), (0.0, rest)]
    t_all, i_all, v_all, step_all = [], [], [], []
    t0, v_rc, q = 0.0, 0.0, 0.0
    for step, (current, length) in enumerate(segs):
        n = round(length / dt)
        tt = np.arange(n) * dt
        rc = current * R1 + (v_rc - current * R1) * np.exp(-tt / TAU)
        qq = q + current * tt / 3600.0
        t_all.append(t0 + tt)
        i_all.append(np.full(n, current))
        v_all.append(OCV0 + 0.1 * qq + current * R0 + rc)
        step_all.append(np.full(n, step))
        v_rc = current * R1 + (v_rc - current * R1) * math.exp(-length / TAU)
        q += current * length / 3600.0
        t0 += length
    df = pl.DataFrame(
        {
            "test_time_second": np.concatenate(t_all),
            "voltage_volt": np.concatenate(v_all),
            "current_ampere": np.concatenate(i_all),
            "step_index": np.concatenate(step_all).astype(np.int32),
            "cycle_count": np.full(sum(a.size for a in t_all), cycle, dtype=np.int32),
        }
    )
    if temperature_c is not None:
        df = df.with_columns(pl.lit(temperature_c).alias("temperature_celsius"))
    return df


def r_true(t: float) -> float:
    return R0 + R1 * (1 - math.exp(-t / TAU))


def test_pulses_recover_r0_rc_at_edge_2s_and_end():
    df = rc_hppc(0.001)
    pulses = find_pulses(df, capacity_ah=CAPACITY, initial_soc=0.5, delays_second=(0.5,))
    assert [p.current_ampere for p in pulses] == [-2.0, 1.5]
    for p in pulses:
        assert p.r_ohmic_ohm == pytest.approx(R0, rel=1e-6)
        assert p.r_2s_ohm == pytest.approx(r_true(2.0), rel=2e-3)
        assert p.r_at_ohm["0.5s"] == pytest.approx(r_true(0.5), rel=2e-3)
        assert p.r_end_ohm == pytest.approx(r_true(10.0 - 0.001), rel=1e-2)  # + OCV drift
        assert p.r_end_at_second == pytest.approx(10.0 - 0.001)
        assert p.duration_second == pytest.approx(10.0)  # to the first sample of the rest
        assert p.temperature_kelvin == pytest.approx(298.15)
        assert p.sampling_interval_second == pytest.approx(0.001)
        assert not p.warnings
    first, second = pulses
    assert (first.step_index, first.cycle_count) == (1, 1)
    assert first.soc == pytest.approx(0.5)
    assert second.soc == pytest.approx(0.5 - 2.0 * 10 / 3600 / CAPACITY, rel=1e-4)


def test_coarse_log_says_ohmic_is_not_ohmic():
    pulses = find_pulses(rc_hppc(1.0))
    assert len(pulses) == 2
    p = pulses[0]
    assert p.edge_interval_second == pytest.approx(1.0)
    assert any("not a pure ohmic value" in w for w in p.warnings)
    # R(2 s) is the first sample at or after 2 s: exactly the sample at 2 s
    assert p.r_2s_ohm == pytest.approx(r_true(2.0), rel=1e-3)


def test_soc_defaults_to_full_at_the_most_charged_point_and_needs_capacity():
    df = rc_hppc(0.1, pulses=((-2.0, 10.0), (-2.0, 10.0)))
    pulses = find_pulses(df, capacity_ah=CAPACITY)
    assert pulses[0].soc == pytest.approx(1.0)
    assert pulses[1].soc == pytest.approx(1.0 - 20 / 3600 / CAPACITY, rel=1e-3)
    assert find_pulses(df)[0].soc is None
    with pytest.raises(PulseError, match="capacity_ah must be positive"):
        find_pulses(df, capacity_ah=0.0)


def test_ocv_correction_is_a_separate_value():
    df = rc_hppc(0.01)
    p = find_pulses(df, ocv_correction=True)[0]
    # the OCV moves 0.1 V/Ah * (-2 A * 10 s) = -0.56 mV over the pulse: 0.28 mohm of 2 A
    d_ocv = 0.1 * (-2.0 * 10 / 3600)
    expected = p.r_end_ohm - d_ocv / p.current_ampere
    assert p.r_end_ocv_corrected_ohm == pytest.approx(expected, rel=2e-2)
    assert p.r_end_ocv_corrected_ohm == pytest.approx(r_true(10.0), rel=2e-3)
    assert find_pulses(df)[0].r_end_ocv_corrected_ohm is None


def test_long_constant_current_is_not_a_pulse():
    df = rc_hppc(1.0, pulses=((-2.0, 10.0), (-1.0, 600.0)))
    assert [p.current_ampere for p in find_pulses(df)] == [-2.0]
    assert len(find_pulses(df, max_duration_second=1000.0)) == 2


def test_missing_columns_and_disorder_are_clear_errors():
    with pytest.raises(PulseError, match="missing column"):
        find_pulses(pl.DataFrame({"test_time_second": [0.0, 1.0]}))
    df = rc_hppc(1.0).reverse()
    with pytest.raises(PulseError, match="not in time order"):
        find_pulses(df)


def test_step_resistance_at_every_edge_and_per_cycle():
    df = pl.concat([rc_hppc(0.01, cycle=1), rc_hppc(0.01, cycle=2)]).with_columns(
        pl.int_range(pl.len()).cast(pl.Float64).mul(0.01).alias("test_time_second")
    )
    edges = step_resistances(df, delays_second=(2.0,))
    # per cycle: into the -2 A pulse, back to rest, into +1.5 A, back to rest (4 edges) and the
    # start of cycle 2 from the end of cycle 1's rest is no edge
    assert edges.height == 8
    into = edges.filter(pl.col("current_before_ampere") == 0)
    assert into["r_ohmic_ohm"].to_list() == pytest.approx([R0] * 4, rel=1e-6)
    assert into["r_2s_ohm"].to_list() == pytest.approx([r_true(2.0)] * 4, rel=2e-3)
    per_cycle = step_resistance_by_cycle(df, delays_second=(2.0,))
    assert per_cycle["cycle_count"].to_list() == [1, 2]
    assert per_cycle["step_edge_count"].to_list() == [4, 4]
    assert per_cycle["step_resistance_ohmic_ohm"].to_list() == pytest.approx([R0] * 2, rel=1e-3)
    with pytest.raises(PulseError, match="positive seconds"):
        step_resistances(df, delays_second=(0.0,))


def test_cycle_summary_adds_step_resistance_when_asked():
    df = rc_hppc(0.01)
    plain = cycle_summary(df)
    assert "step_resistance_ohmic_ohm" not in plain.columns
    out = cycle_summary(df, step_resistance_delays_second=(2.0,))
    assert out["step_resistance_ohmic_ohm"][0] == pytest.approx(R0, rel=1e-3)
    assert out["step_resistance_2s_ohm"][0] == pytest.approx(r_true(2.0), rel=3e-3)
    assert out["step_edge_count"][0] == 4


def test_cycle_summary_carries_the_cyclers_dc_internal_resistance():
    df = rc_hppc(0.5).with_columns(
        pl.when(pl.col("step_index") == 1)
        .then(0.07)
        .otherwise(None)
        .alias("internal_resistance_ohm")
    )
    out = cycle_summary(df)
    assert out["dc_internal_resistance_ohm"][0] == pytest.approx(0.07)
    assert "dc_internal_resistance_ohm" not in cycle_summary(rc_hppc(0.5)).columns


# ------------------------------------------------------------------- command line


def test_cli_pulses_json(tmp_path, capsys):
    from cellbench.cli.main import main

    path = tmp_path / "hppc.csv"
    rc_hppc(0.01).write_csv(path)
    assert main(["analyze", "pulses", str(path), "--json", "--capacity-ah", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 2
    keys = {"step_index", "cycle_count", "current_ampere", "soc", "temperature_kelvin",
            "r_ohmic_ohm", "r_2s_ohm", "r_end_ohm", "duration_second"}  # fmt: skip
    assert keys <= set(out[0])
    assert out[0]["r_ohmic_ohm"] == pytest.approx(R0, rel=1e-6)
    assert out[0]["temperature_kelvin"] == pytest.approx(298.15)
    assert main(["analyze", "pulses", str(path)]) == 0
    text = capsys.readouterr().out
    assert "R_ohm" in text and "interval" in text


def test_cli_pulses_bad_file_is_one_clear_line(tmp_path, capsys):
    from cellbench.cli.main import main

    assert main(["analyze", "pulses", str(tmp_path / "none.csv")]) != 0
    err = capsys.readouterr().err
    assert "none.csv" in err and "Traceback" not in err


# ------------------------------------------------------------ simulated cell, engine


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_hppc_on_the_simulated_cell_through_the_engine(tmp_path):
    """The simulated cell's V = OCV + I R_fast + eta_w, eta_w a lag towards I R_w with time
    constant tau_w / 3: R at the first sample, 2 s and pulse end follow from its truth."""
    from cellbench.daq.session import prepare
    from cellbench.daq.store import open_run

    fx = Path(__file__).resolve().parents[1] / "fixtures"
    cell = (fx / "sim" / "sulfide_full_cell.toml").read_text(encoding="utf-8")
    (tmp_path / "cell.toml").write_text(cell.replace("initial_soc = 0.0", "initial_soc = 0.5"))
    station = (fx / "stations" / "coin_cell_station.toml").read_text(encoding="utf-8")
    station = station.replace('cell = "../sim/sulfide_full_cell.toml"', 'cell = "cell.toml"')
    (tmp_path / "station.toml").write_text(station, encoding="utf-8")
    (tmp_path / "hppc.toml").write_text(
        """
name = "hppc"
sample_interval = "1 s"
[safety]
voltage_min = "2.5 V"
voltage_max = "4.35 V"
current_max = "5 mA"

[[step]]
type = "rest"
duration = "20 s"

[[step]]
type = "hppc"
current = "-2 mA"
charge_current = "1.5 mA"
pulse = "10 s"
rest = "40 s"
count = 1
""",
        encoding="utf-8",
    )
    session = prepare(tmp_path / "hppc.toml", tmp_path / "station.toml", tmp_path, time_scale=50)
    try:
        assert session.engine.run() == "completed"
        run = open_run(session.engine.run_path)
        truth = run.meta.ground_truth
        samples = run.read("samples")
    finally:
        session.close()
    pulses = find_pulses(samples, capacity_ah=2e-3, initial_soc=0.5, ocv_correction=True)
    assert [round(p.current_ampere * 1e3, 3) for p in pulses] == [-2.0, 1.5]
    p = truth["params"]
    r_w, tau = p["warburg_r_ohm"], p["warburg_tau_s"]
    r_fast = truth["dc_resistance_ohm"] - r_w

    def r_sim(t: float) -> float:  # from a relaxed start
        return r_fast + r_w * (1 - math.exp(-3 * t / tau))

    first = pulses[0]
    assert first.soc == pytest.approx(0.5, abs=1e-3)
    assert first.r_ohmic_ohm == pytest.approx(r_sim(first.edge_interval_second), abs=0.2)
    assert first.r_2s_ohm == pytest.approx(r_sim(2.0), abs=0.3)
    # the uncorrected end value holds the OCV's drift over the pulse (0.8 V per unit SOC here)
    drift = 0.8 * 10 * 2e-3 / 3600 / 2e-3 / 2e-3
    assert first.r_end_ohm == pytest.approx(r_sim(first.r_end_at_second) + drift, abs=0.3)
    # corrected from the following rest (eta_w not fully relaxed after 40 s: ~0.4 ohm)
    assert first.r_end_ocv_corrected_ohm == pytest.approx(r_sim(first.r_end_at_second), abs=0.6)
    assert first.warnings  # a 1 s log: the ohmic value is flagged


def test_pulse_in_a_real_neware_file(shared_data):
    """The IFE .ndax (Neware BTS 8.5) starts with 1 h of rest, then a 20 s current step of
    59.9 mA logged every second: one pulse, its values straight from the file's rows."""
    from cellbench.daq import loaders

    path = shared_data / "cycling" / "20260302_IFE_BTS85_2_9_8_1.ndax"
    with pytest.warns(Warning):  # auxiliary tables the reader skips
        df = loaders.load_samples(path)
    pulses = find_pulses(df)
    assert len(pulses) == 1
    p = pulses[0]
    assert (p.step_index, p.cycle_count, p.test_time_second) == (1, 1, 3600.0)
    rows = df.filter(pl.col("test_time_second").is_between(3600.0, 3620.0))
    rest = df.filter(pl.col("step_index") == 0).tail(1)
    pulse = rows.filter(pl.col("step_index") == 1)
    v0, i0 = rest["voltage_volt"][0], rest["current_ampere"][0]
    r = (pulse["voltage_volt"] - v0) / (pulse["current_ampere"] - i0)
    assert p.r_ohmic_ohm == pytest.approx(r[0])
    assert p.r_2s_ohm == pytest.approx(r[2])  # logged every second from the edge
    assert p.r_end_ohm == pytest.approx(r[-1])
    assert p.duration_second == pytest.approx(20.0)
    assert p.r_ohmic_ohm < p.r_2s_ohm < p.r_end_ohm
    assert p.temperature_kelvin is not None and 290 < p.temperature_kelvin < 310
    assert any("not a pure ohmic value" in w for w in p.warnings)  # a 1 s log


def test_cli_cycling_step_resistance(tmp_path, capsys):
    from cellbench.cli.main import main

    path = tmp_path / "hppc.csv"
    rc_hppc(0.01).write_csv(path)
    args = ["analyze", "cycling", str(path), "--capacity-from", "integration"]
    assert main([*args, "--json", "--step-resistance", "2,5"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["step_resistance_ohmic_ohm"] == pytest.approx(R0, rel=1e-3)
    assert row["step_resistance_5s_ohm"] == pytest.approx(r_true(5.0), rel=3e-3)
    assert main(args) == 0
    assert "R_ohmic" not in capsys.readouterr().out
    assert main([*args, "--step-resistance", "2"]) == 0
    assert "R_ohmic/ohm" in capsys.readouterr().out


def test_pulses_smaller_than_the_tests_largest_current_are_found():
    """HPPC pulses of 1 A in a test whose charge runs at 4 A: the edge threshold is the rest
    tolerance, not half the largest current (which would miss every pulse)."""
    df = rc_hppc(0.1, pulses=((-1.0, 10.0), (0.5, 10.0), (4.0, 900.0)))
    assert [p.current_ampere for p in find_pulses(df)] == [-1.0, 0.5]
    assert find_pulses(df)[0].r_ohmic_ohm == pytest.approx(R0, rel=1e-6)
