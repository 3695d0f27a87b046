"""ICI on exact planar-diffusion data with known R and D: R and k per interruption, dE/dQ,
D; the drift correction; the command line."""

from __future__ import annotations

import json
import math

import pytest
from diffusion_data import diffusion_voltage

from cellbench.analysis.gitt import DiffusionGeometry, GittError
from cellbench.analysis.ici import ici

D, L = 1e-11, 1e-4  # cm2/s, cm (L^2/D = 1000 s: a 10 s interruption is semi-infinite)
DEDQ, R, I = 2.0, 5.0, 1e-4  # V/C, ohm, A
K_TRUE = 2 * DEDQ * L / math.sqrt(math.pi * D)  # ohm s^-1/2


def ici_run(current: float = I, periods: int = 6, on: float = 600.0, off: float = 10.0):
    segments = [(0.0, 60.0)] + [(current, on), (0.0, off)] * periods
    return diffusion_voltage(segments, d_cm2_s=D, length_cm=L, de_dq_v_per_c=DEDQ, r_ohm=R, dt=1.0)


@pytest.mark.parametrize("current", [I, -I])
def test_r_k_and_d_per_interruption(current):
    found = ici(ici_run(current), DiffusionGeometry(thickness_cm=L))
    # the last rest is not between two currents: 5 interruptions
    assert len(found) == 5
    for it in found[1:]:  # the first follows the first current step: profile not yet settled
        assert it.interruption_second == pytest.approx(10.0)
        assert it.r_ohm == pytest.approx(R, rel=1e-3)
        assert it.k_ohm_per_sqrt_second == pytest.approx(K_TRUE, rel=1e-3)
        assert it.de_dq_volt_per_coulomb == pytest.approx(DEDQ, rel=2e-3)
        assert it.d_cm2_per_second == pytest.approx(D, rel=0.01)
        assert it.r2 > 0.999 and not it.warnings
    assert found[0].d_cm2_per_second == pytest.approx(D, rel=0.02)


def test_without_the_drift_correction_the_drift_leaks_into_r_and_d():
    found = ici(ici_run(), DiffusionGeometry(thickness_cm=L), drift_correction=False)
    assert abs(found[-1].r_ohm - R) > 0.1 * R
    assert found[-1].d_cm2_per_second > 1.1 * D


def test_without_geometry_r_and_k_only_and_fit_window():
    found = ici(ici_run(periods=3))
    assert all(math.isnan(it.d_cm2_per_second) for it in found)
    assert found[-1].k_ohm_per_sqrt_second == pytest.approx(K_TRUE, rel=1e-3)
    short = ici(ici_run(periods=3), fit_end_second=4.0)
    assert short[-1].fit_points == 5  # t = 0..4 s
    assert short[-1].r_ohm == pytest.approx(R, rel=1e-3)
    with pytest.raises(GittError, match="fit_end_second"):
        ici(ici_run(periods=2), fit_end_second=0.0)


def test_long_rests_are_not_interruptions():
    assert ici(ici_run(off=60.0)) == []
    assert len(ici(ici_run(off=60.0), max_interruption_second=100.0)) == 5


def test_cli_ici_json(tmp_path, capsys):
    from cellbench.cli.main import main

    path = tmp_path / "ici.csv"
    ici_run(periods=4).write_csv(path)
    assert main(["analyze", "ici", str(path), "--json", "--thickness-cm", str(L)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["interruptions"]) == 3
    last = out["interruptions"][-1]
    assert last["r_ohm"] == pytest.approx(R, rel=1e-3)
    assert last["d_cm2_per_second"] == pytest.approx(D, rel=0.01)
    assert main(["analyze", "ici", str(path)]) == 0
    assert "k/ohm" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_ici_protocol_on_the_simulated_cell_through_the_engine(tmp_path):
    """ICI is a ``pulse`` step (on-time, short rest, count) with a voltage end: it runs, and
    R at each interruption is the simulated cell's fast resistance (its other processes, a
    first-order diffusion lag, move the voltage linearly in t, which k absorbs)."""
    from pathlib import Path

    from cellbench.daq.session import prepare
    from cellbench.daq.store import open_run

    fx = Path(__file__).resolve().parents[1] / "fixtures"
    cell = (fx / "sim" / "sulfide_full_cell.toml").read_text(encoding="utf-8")
    (tmp_path / "cell.toml").write_text(cell.replace("initial_soc = 0.0", "initial_soc = 0.5"))
    station = (fx / "stations" / "coin_cell_station.toml").read_text(encoding="utf-8")
    station = station.replace('cell = "../sim/sulfide_full_cell.toml"', 'cell = "cell.toml"')
    (tmp_path / "station.toml").write_text(station, encoding="utf-8")
    (tmp_path / "ici.toml").write_text(
        """
name = "ici"
sample_interval = "1 s"
[safety]
voltage_min = "2.5 V"
voltage_max = "4.35 V"
current_max = "5 mA"

[[step]]
type = "rest"
duration = "5 s"

[[step]]
type = "pulse"
name = "ICI: 60 s on, 5 s off"
current = "1 mA"
pulse = "60 s"
rest = "5 s"
count = 4
until = { voltage_above = "4.2 V" }
""",
        encoding="utf-8",
    )
    session = prepare(tmp_path / "ici.toml", tmp_path / "station.toml", tmp_path, time_scale=50)
    try:
        assert session.engine.run() == "completed"
        run = open_run(session.engine.run_path)
        truth = run.meta.ground_truth
        samples = run.read("samples")
    finally:
        session.close()
    r_fast = truth["dc_resistance_ohm"] - truth["params"]["warburg_r_ohm"]
    found = ici(samples, max_interruption_second=10.0)
    assert len(found) == 3  # the fourth rest ends the step: nothing follows it
    for it in found:
        # a loaded machine may sample the edges late
        assert it.interruption_second == pytest.approx(5.0, abs=1.5)
        assert it.r_ohm == pytest.approx(r_fast, rel=0.03)
