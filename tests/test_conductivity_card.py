"""The conductivity report card: the fit's sigma(25 degC) and Ea with intervals, what the cell's
build record and the run say, and what is missing; and ``analyze conductivity --card``."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from cellbench.analysis.conductivity import BOLTZMANN_EV_PER_K, fit_arrhenius
from cellbench.analysis.conductivity_card import REQUIRED, card_text, conductivity_card
from cellbench.cli.main import main
from cellbench.core.schema import Cell, RunMeta
from cellbench.daq.store import create_run

EA, S25 = 0.35, 3.0e-4
T_C = np.array([25.0, 40.0, 55.0, 70.0, 85.0, 25.0])


def _sigma(t_c, scatter=None):
    t = t_c + 273.15
    s = S25 * np.exp(-EA / BOLTZMANN_EV_PER_K * (1 / t - 1 / 298.15))
    return s if scatter is None else s * (1 + scatter)


def test_card_from_fit_and_build_record():
    sigma = _sigma(T_C, np.array([0.004, -0.003, 0.002, -0.004, 0.003, -0.02]))
    fit = fit_arrhenius(T_C, sigma)
    cell = Cell(
        name="LPSCl-P3",
        area_cm2=0.785,
        thickness_cm=0.08,
        build={
            "batch": "B-12",
            "electrolyte": "Li6PS5Cl",
            "relative_density": 0.86,
            "fabrication_pressure_megapascal": 370.0,
        },
    )
    card = conductivity_card(fit, cell=cell, conductivity_kind="total", source="x.csv")
    assert card["conductivity_25c_siemens_per_centimeter"] == pytest.approx(S25, rel=0.02)
    lo, hi = card["activation_energy_ev_ci"]
    assert lo < EA < hi and card["activation_energy_ev"] == pytest.approx(EA, abs=0.01)
    assert not card["conductivity_25c_extrapolated"]
    assert card["material"] == "Li6PS5Cl" and card["batch"] == "B-12"
    assert card["geometric_factor_per_centimeter"] == pytest.approx(0.08 / 0.785)
    assert card["diameter_cm"] == pytest.approx(1.0, rel=1e-3)
    assert card["temperature_range_celsius"] == [25.0, 85.0] and card["n_points"] == 6
    assert card["hysteresis"]["relative_change"] == pytest.approx(0.98 / 1.004 - 1, rel=1e-6)
    assert card["missing"] == [
        "stack_pressure_megapascal",
        "electrode_contacts",
        "impedance_model",
        "equilibration",
    ]
    text = card_text(card)
    assert "σ(25 °C)" in text and "missing" in text and "not recorded" in text
    json.dumps(card, allow_nan=False)


def test_extrapolated_sigma_and_everything_missing():
    t = np.array([60.0, 70.0, 80.0, 90.0])
    card = conductivity_card(fit_arrhenius(t, _sigma(t)))
    assert card["conductivity_25c_extrapolated"]
    assert card["missing"] == list(REQUIRED)
    assert "(extrapolated)" in card_text(card)


def test_cli_card_with_run_context(tmp_path, capsys):
    cell = Cell(name="P-9", area_cm2=0.785, thickness_cm=0.1, build={"electrolyte": "LLZTO"})
    protocol = (
        '[[step]]\ntype = "eis"\nstart = "7 MHz"\nstop = "1 Hz"\namplitude = "10 mV"\n'
        'drift_max = "1 %"\n'
    )
    meta = RunMeta("cond-1", "2026-12-01T00:00:00Z", cell=cell, protocol={"text": protocol})
    with create_run(tmp_path, meta) as w:
        for ok, drift in ((False, 0.05), (True, 0.004), (True, 0.007)):
            data = {"equilibrium": ok, "drift_fraction": drift, "drift_max_fraction": 0.01}
            data |= {"sweep_index": 1}
            w.event("note", "eis sweep", data=data)
        n = 10
        w.append(
            "samples",
            pl.DataFrame(
                {
                    "channel": ["c"] * n,
                    "test_time_second": np.arange(n, dtype=float),
                    "unix_time_second": 1.7e9 + np.arange(n, dtype=float),
                    "voltage_volt": [0.0] * n,
                    "current_ampere": [0.0] * n,
                    "cycle_count": [1] * n,
                    "step_count": [1] * n,
                    "step_index": [0] * n,
                    "pressure_megapascal": np.linspace(9.0, 11.0, n),
                }
            ),
        )
    csv = tmp_path / "c.csv"
    r = 0.1 / (_sigma(T_C) * 0.785)
    pl.DataFrame({"temperature_celsius": T_C, "resistance_ohm": r}).write_csv(csv)
    args = [
        "analyze",
        "conductivity",
        str(csv),
        "--card",
        "--json",
        "--run",
        str(tmp_path / "cond-1"),
    ]
    assert main([*args, "--contacts", "Au", "--conductivity-kind", "bulk"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["thickness_cm"] == 0.1 and card["material"] == "LLZTO"
    assert card["frequency_range_hertz"] == [7e6, 1.0] and card["amplitude"] == "10 mV"
    eq = card["equilibration"]
    assert eq["steps_equilibrated"] == 2 and eq["worst_accepted_drift_fraction"] == 0.007
    assert card["stack_pressure_megapascal"] == pytest.approx(10.0)
    assert card["stack_pressure_source"].startswith("gauge")
    assert card["conductivity_25c_siemens_per_centimeter"] == pytest.approx(S25, rel=1e-6)
    assert card["missing"] == [
        "relative_density",
        "fabrication_pressure_megapascal",
        "impedance_model",
    ]
    assert main(["analyze", "conductivity", str(csv), "--card", "--run", str(tmp_path)]) == 1
    assert "not a cellbench run folder" in capsys.readouterr().err
    assert not math.isnan(card["activation_energy_ev"])


def test_card_straight_from_a_temperature_stepped_run(tmp_path, capsys):
    """EIS at 25, 55 and 85 degC on the simulated Li|LLZO|Li pellet, each step repeated until
    equilibrium; ``analyze conductivity RUN --card`` fits the accepted sweeps and reports the
    pellet's true total conductivity (bulk + grain boundary of the simulated cell)."""
    from pathlib import Path

    from cellbench.daq.session import prepare
    from cellbench.daq.store import open_run

    fx = Path(__file__).resolve().parents[1] / "fixtures"
    station = (fx / "stations" / "pellet_station.toml").read_text(encoding="utf-8")
    station = station.replace('cell = "../sim/', f'cell = "{fx / "sim"}/')
    (tmp_path / "s.toml").write_text(station, encoding="utf-8")
    steps = "".join(
        f'[[step]]\ntype = "temperature"\nsetpoint = "{t} degC"\ntolerance = "0.5 K"\n'
        'soak = "20 min"\n[[step]]\ntype = "eis"\nstart = "1 MHz"\nstop = "100 Hz"\n'
        'points_per_decade = 6\namplitude = "20 mV"\ndrift_max = "1 %"\n'
        'temperature_drift_max = "0.2 K"\n'
        for t in (25, 55, 85)
    )
    text = 'name = "cond"\nsample_interval = "30 s"\n[safety]\ntemperature_max = "100 degC"\n'
    (tmp_path / "p.toml").write_text(text + steps, encoding="utf-8")
    session = prepare(tmp_path / "p.toml", tmp_path / "s.toml", tmp_path, time_scale=50_000)
    try:
        assert session.engine.run() == "completed"
        run = session.engine.run_path
        truth = open_run(run).meta.ground_truth
    finally:
        session.close()
    assert main(["analyze", "conductivity", str(run), "--card", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    r_total = truth["r_bulk_ohm"] + truth["r_gb_ohm"] + truth["params"]["series_resistance_ohm"]
    sigma_true = 0.1 / (r_total * 0.785)  # at 25 degC, where the run starts
    assert card["conductivity_25c_siemens_per_centimeter"] == pytest.approx(sigma_true, rel=0.05)
    assert card["n_points"] == 3 and card["thickness_cm"] == 0.1
    assert card["conductivity_kind"] == "total" and card["impedance_model"].startswith("R0-")
    assert card["equilibration"]["steps_equilibrated"] == 3
    assert "equilibration" not in card["missing"]
