"""DC polarisation (electronic conductivity) and the Bruce-Vincent transference number on
synthetic potentiostatic holds with known truth."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from cellbench.analysis.transport_numbers import (
    TransportError,
    bruce_vincent,
    bruce_vincent_value,
    electronic_conductivity,
    hold_from_samples,
    polarisation_currents,
)


def _hold(i0: float, iss: float, tau_s: float, hours: float, noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, hours * 3600.0, 10.0)
    i = iss + (i0 - iss) * np.exp(-t / tau_s)
    return t, i + noise * iss * rng.standard_normal(t.size)


def test_bruce_vincent_recovers_known_transference_number():
    # Li | PEO-LiTFSI | Li at 70 degC: R_b 120 ohm, R0 400 ohm, Rss 520 ohm (interface grew)
    t_true, dv, rb, r0, rss = 0.22, 0.010, 120.0, 400.0, 520.0
    i0 = dv / (rb + r0)
    iss = t_true * dv / (rb + t_true * rss)  # what the model gives for this t+
    t, i = _hold(i0, iss, tau_s=1800.0, hours=6.0, noise=0.002)
    pol = polarisation_currents(t, i, dv)
    assert pol.steady
    assert pol.steady_current_ampere == pytest.approx(iss, rel=2e-3)
    res = bruce_vincent(pol, r0, rss, r_bulk_ohm=rb, r0_stderr_ohm=4.0, rss_stderr_ohm=5.0)
    assert res.initial_current_source == "impedance"
    assert res.transference_number == pytest.approx(t_true, abs=0.003)
    assert 0 < res.transference_number_stderr < 0.05
    assert res.current_ratio == pytest.approx(iss / i0, rel=3e-3)
    assert res.warnings == ()
    # the measured first sample is the same I0 here (no under-sampled spike)
    measured = bruce_vincent(pol, r0, rss)
    assert measured.initial_current_source == "measured"
    assert measured.transference_number == pytest.approx(t_true, abs=0.01)


def test_bruce_vincent_formula_and_uncorrected_ratio_differ():
    # with R0 = Rss = 0 the formula reduces to Iss / I0
    assert bruce_vincent_value(0.01, 1e-5, 4e-6, 0.0, 0.0) == pytest.approx(0.4)
    assert bruce_vincent_value(0.01, 1e-5, 4e-6, 300.0, 300.0) == pytest.approx(
        4e-6 * (0.01 - 3e-3) / (1e-5 * (0.01 - 1.2e-3))
    )


def test_short_hold_is_flagged_not_steady():
    t, i = _hold(2e-5, 4e-6, tau_s=3600.0, hours=1.0, noise=0.0)
    pol = polarisation_currents(t, i, 0.01)
    assert not pol.steady and pol.drift_fraction > 0.02
    res = bruce_vincent(pol, 300.0, 320.0, r_bulk_ohm=200.0)
    assert any("hold longer" in w for w in res.warnings)


def test_electronic_conductivity_hebb_wagner():
    # LLZO between Au: sigma_e 1e-9 S/cm, L 0.1 cm, A 0.785 cm2, 1 V hold
    sigma_e, L, A, dv = 1e-9, 0.1, 0.785, 1.0
    iss = sigma_e * A * dv / L
    r_total = 2000.0  # ionic, from the EIS fit
    t, i = _hold(dv / r_total, iss, tau_s=600.0, hours=5.0, noise=0.01)
    res = electronic_conductivity(polarisation_currents(t, i, dv), L, A, r_total_ohm=r_total)
    assert res.sigma_electronic_siemens_per_centimeter == pytest.approx(sigma_e, rel=0.01)
    assert res.r_electronic_ohm == pytest.approx(dv / iss, rel=0.01)
    assert res.electronic_transference_number == pytest.approx(iss * r_total / dv, rel=0.01)
    assert res.ionic_transference_number > 0.999
    assert res.warnings == ()
    d = res.to_dict()
    assert d["polarisation"]["steady"] is True


def test_hold_from_samples_takes_the_longest_step_and_the_voltage_step():
    t, i = _hold(1e-5, 2e-6, 300.0, 2.0, 0.0)
    n = t.size
    df = pl.DataFrame(
        {
            "test_time_second": np.concatenate([[-20.0, -10.0], t]),
            "voltage_volt": np.concatenate([[3.300, 3.300], np.full(n, 3.310)]),
            "current_ampere": np.concatenate([[0.0, 0.0], i]),
            "step_index": np.concatenate([[0, 0], np.ones(n, dtype=int)]),
        }
    )
    tt, ii, dv = hold_from_samples(df)
    assert tt.size == n and dv == pytest.approx(0.010)
    assert ii[0] == pytest.approx(1e-5)


def test_bad_inputs_raise_one_clear_error():
    with pytest.raises(TransportError, match="at least 10"):
        polarisation_currents(np.arange(5.0), np.ones(5), 0.01)
    t, i = _hold(1e-5, 2e-6, 300.0, 2.0, 0.0)
    with pytest.raises(TransportError, match="non-zero"):
        polarisation_currents(t, i, 0.0)
    pol = polarisation_currents(t, i, 0.01)
    with pytest.raises(TransportError, match="thickness_cm"):
        electronic_conductivity(pol, -1.0, 1.0)
    with pytest.raises(TransportError, match="r0_interface_ohm"):
        bruce_vincent(pol, math.nan, 1.0)
    with pytest.raises(TransportError, match="missing column"):
        hold_from_samples(pl.DataFrame({"x": [1.0]}))


def _hold_run(tmp_path, t, i, dv):
    from cellbench.core.schema import Cell, RunMeta
    from cellbench.daq.store import create_run

    n = t.size
    cell = Cell(name="PEO-1", area_cm2=1.0, thickness_cm=0.01)
    with create_run(tmp_path, RunMeta("bv", "2026-12-01T00:00:00Z", cell=cell)) as w:
        w.append(
            "samples",
            pl.DataFrame(
                {
                    "channel": ["c"] * (n + 2),
                    "test_time_second": np.concatenate([[-20.0, -10.0], t]),
                    "unix_time_second": 1.7e9 + np.concatenate([[-20.0, -10.0], t]),
                    "voltage_volt": np.concatenate([[0.0, 0.0], np.full(n, dv)]),
                    "current_ampere": np.concatenate([[0.0, 0.0], i]),
                    "cycle_count": [1] * (n + 2),
                    "step_count": [1, 1] + [2] * n,
                    "step_index": [0, 0] + [1] * n,
                }
            ),
        )
    return tmp_path / "bv"


def test_cli_polarisation_bruce_vincent_and_electronic(tmp_path, capsys):
    import json

    from cellbench.cli.main import main

    t_true, dv, rb, r0, rss = 0.3, 0.010, 100.0, 300.0, 350.0
    i0 = dv / (rb + r0)
    iss = t_true * dv / (rb + t_true * rss)
    t, i = _hold(i0, iss, 1200.0, 5.0, 0.001)
    run = str(_hold_run(tmp_path, t, i, dv))
    args = ["analyze", "polarisation", run, "--r0-ohm", "300", "--rss-ohm", "350"]
    assert main([*args, "--r-bulk-ohm", "100", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["bruce_vincent"]["transference_number"] == pytest.approx(t_true, abs=0.005)
    assert d["polarisation"]["voltage_step_volt"] == pytest.approx(dv)
    assert main(args) == 0
    assert "t+ = 0.30" in capsys.readouterr().out
    assert main(["analyze", "polarisation", run, "--json"]) == 0  # geometry from the run
    e = json.loads(capsys.readouterr().out)["electronic"]
    assert e["sigma_electronic_siemens_per_centimeter"] == pytest.approx(iss * 0.01 / dv, rel=0.01)
    assert main(["analyze", "polarisation", run, "--r0-ohm", "300"]) == 1
    assert "needs both" in capsys.readouterr().err


def test_bruce_vincent_through_the_engine_on_a_simulated_polymer_cell(tmp_path):
    """The fixture protocol (EIS, 10 mV hold, EIS) on the simulated symmetric cell given a
    salt-diffusion resistance R_w: the cell's true t+ is R_el / (R_el + R_w) (R_el leads, bulk
    and grain boundary); the interfaces are R0 = Rss."""
    from pathlib import Path

    from cellbench.daq.protocol import load_protocol
    from cellbench.daq.session import prepare
    from cellbench.daq.store import open_run

    fx = Path(__file__).resolve().parents[1] / "fixtures"
    assert load_protocol(fx / "protocols" / "transference_polymer.toml").steps[3].kind == "cv"
    r_el, t_true = 0.5 + 254.777 + 127.389, 0.3  # llzo_symmetric.toml at 25 degC
    cell = (fx / "sim" / "llzo_symmetric.toml").read_text(encoding="utf-8")
    r_w = r_el * (1 / t_true - 1)
    cell = cell.replace("warburg_r_ohm = 0.0", f"warburg_r_ohm = {r_w}\nwarburg_tau_s = 300.0")
    (tmp_path / "cell.toml").write_text(cell, encoding="utf-8")
    station = (fx / "stations" / "sim_pellet.toml").read_text(encoding="utf-8")
    station = station.replace(
        'cell = "../sim/llzo_symmetric.toml"', f'cell = "{tmp_path}/cell.toml"'
    )
    (tmp_path / "station.toml").write_text(station, encoding="utf-8")
    protocol = (fx / "protocols" / "transference_polymer.toml").read_text(encoding="utf-8")
    protocol = protocol.replace('stop = "100 mHz"', 'stop = "100 Hz"')  # the E4990A's band
    protocol = protocol.replace('setpoint = "70 degC"', 'setpoint = "25 degC"')
    (tmp_path / "p.toml").write_text(protocol, encoding="utf-8")
    session = prepare(tmp_path / "p.toml", tmp_path / "station.toml", tmp_path, time_scale=50_000)
    try:
        assert session.engine.run() == "completed"
        run = open_run(session.engine.run_path)
    finally:
        session.close()
    truth = run.meta.ground_truth
    assert truth["r_bulk_ohm"] + truth["r_gb_ohm"] + 0.5 == pytest.approx(r_el, rel=1e-4)
    r0 = truth["r_interface_ohm"]
    t, i, dv = hold_from_samples(run.read("samples"), step_index=3)
    pol = polarisation_currents(t - t[0], i, dv)
    assert pol.steady and dv == pytest.approx(0.010, abs=2e-4)
    res = bruce_vincent(pol, r0, r0, r_bulk_ohm=r_el)
    assert res.transference_number == pytest.approx(t_true, abs=0.01)
