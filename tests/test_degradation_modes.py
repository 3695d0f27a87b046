"""Pseudo-OCV (slow cycle, relaxed points) and degradation modes (LLI, LAM_PE, LAM_NE) from the
electrode balance fitted to synthetic full-cell curves built from known reference OCPs."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cellbench.analysis.degradation_modes import (
    DegradationError,
    ElectrodeOCP,
    degradation_modes,
    degradation_modes_by_cycle,
    fit_electrode_balance,
    full_cell_ocv,
    pseudo_ocv_from_cycle,
    pseudo_ocv_from_points,
)
from cellbench.analysis.readers import read

TH = np.linspace(0, 1, 401)
# NMC-like positive (potential falls as it fills, a step near theta 0.55) and a graphite-like
# negative (staging plateaus near theta 0.2 and 0.5)
PE = ElectrodeOCP(TH, 4.35 - 0.9 * TH - 0.08 * np.tanh((TH - 0.55) / 0.04) - 0.3 * TH**8, "PE")
NE = ElectrodeOCP(
    TH,
    0.08
    + 0.9 * np.exp(-TH / 0.02)
    + 0.06 * np.tanh((0.5 - TH) / 0.02)
    + 0.04 * np.tanh((0.2 - TH) / 0.02)
    + 0.03 * (0.5 - TH),
    "NE",
)
FRESH = {"c_pe": 1.20, "c_ne": 1.30, "theta_n_empty": 0.01, "n_li": 0.98 * 1.20 + 0.01 * 1.30}


def _cell_curve(c_pe, c_ne, n_li, noise=0.001, seed=0, vmin=3.0, vmax=4.2):
    """Pseudo-OCV between vmin and vmax of a cell with these capacities and lithium; the
    discharged reference state has the negative at theta 0.01. Returns Q from the curve's
    first point, V, and the true theta_p / theta_n there."""
    tn0 = FRESH["theta_n_empty"]
    tp0 = (n_li - tn0 * c_ne) / c_pe
    q = np.linspace(0, min(c_pe * tp0, c_ne * (1 - tn0)) * 0.999, 1500)
    v = full_cell_ocv(q, PE, NE, c_pe, c_ne, tp0, tn0)
    m = (v >= vmin) & (v <= vmax)
    q0 = q[m][0]
    rng = np.random.default_rng(seed)
    return q[m] - q0, v[m] + noise * rng.standard_normal(m.sum()), tp0 - q0 / c_pe, tn0 + q0 / c_ne


def test_balance_fit_recovers_the_electrodes():
    q, v, tp, tn = _cell_curve(FRESH["c_pe"], FRESH["c_ne"], FRESH["n_li"])
    fit = fit_electrode_balance(q, v, PE, NE)
    assert fit.c_pe_ah == pytest.approx(1.20, rel=0.005)
    assert fit.c_ne_ah == pytest.approx(1.30, rel=0.005)
    assert fit.theta_p0 == pytest.approx(tp, abs=0.002) and fit.theta_n0 == pytest.approx(
        tn, abs=0.002
    )
    assert fit.lithium_inventory_ah == pytest.approx(FRESH["n_li"], rel=0.002)
    assert fit.rmse_volt < 0.0015 and fit.success
    assert all(0 < s < 0.01 for s in fit.stderr.values())


def test_modes_of_an_aged_cell():
    fresh = fit_electrode_balance(*_cell_curve(1.20, 1.30, FRESH["n_li"])[:2], PE, NE)
    # truth: LAM_PE 10 %, LAM_NE 5 %, LLI 8 %
    q, v, *_ = _cell_curve(1.20 * 0.90, 1.30 * 0.95, FRESH["n_li"] * 0.92, seed=1)
    aged = fit_electrode_balance(q, v, PE, NE)
    modes = degradation_modes(fresh, aged)
    assert modes["loss_of_lithium_inventory"] == pytest.approx(0.08, abs=0.005)
    assert modes["loss_of_active_material_positive"] == pytest.approx(0.10, abs=0.005)
    assert modes["loss_of_active_material_negative"] == pytest.approx(0.05, abs=0.005)
    assert modes["capacity_loss"] > 0.05


def test_modes_by_cycle_follow_progressive_ageing():
    curves = {}
    for k, cycle in enumerate((1, 50, 100)):
        q, v, *_ = _cell_curve(1.2 * (1 - 0.05 * k), 1.3, FRESH["n_li"] * (1 - 0.04 * k), seed=k)
        curves[cycle] = (q, v)
    table = degradation_modes_by_cycle(curves, PE, NE)
    assert table["cycle_count"].to_list() == [1, 50, 100]
    assert table["loss_of_lithium_inventory"].to_list() == pytest.approx([0, 0.04, 0.08], abs=0.006)
    lam_pe = table["loss_of_active_material_positive"].to_list()
    assert lam_pe == pytest.approx([0, 0.05, 0.10], abs=0.006)
    assert table["loss_of_active_material_negative"].to_list() == pytest.approx(
        [0, 0, 0], abs=0.006
    )


def _slow_cycle(eta=0.02):
    """One cycle at constant current: charge then discharge, V = OCV(soc) +/- eta."""
    soc = np.linspace(0, 1, 300)
    ocv = 3.4 + 0.8 * soc - 0.1 * np.tanh((soc - 0.5) / 0.05)
    dt = 3600.0 * 0.002 / 1e-3 / 299  # 2 mAh at 1 mA over 299 intervals
    t = np.concatenate([np.arange(300) * dt, 300 * dt + np.arange(300) * dt])
    v = np.concatenate([ocv + eta, (ocv - eta)[::-1]])
    i = np.concatenate([np.full(300, 1e-3), np.full(300, -1e-3)])
    frame = pl.DataFrame(
        {"test_time_second": t, "voltage_volt": v, "current_ampere": i, "cycle_count": [1] * 600}
    )
    return frame, soc, ocv


def test_pseudo_ocv_from_a_slow_cycle_cancels_the_overpotential():
    frame, soc, ocv = _slow_cycle(eta=0.02)
    p = pseudo_ocv_from_cycle(frame, 1, points=101)
    assert p["ocv_volt"].to_numpy() == pytest.approx(
        np.interp(p["soc"].to_numpy(), soc, ocv), abs=2e-3
    )
    assert p["hysteresis_volt"].to_numpy()[5:-5] == pytest.approx(0.04, abs=2e-3)
    assert p["capacity_ampere_hour"][-1] == pytest.approx(0.002, rel=0.01)
    with pytest.raises(DegradationError, match="no discharge half-cycle"):
        pseudo_ocv_from_cycle(frame.filter(pl.col("current_ampere") > 0), 1)


def test_pseudo_ocv_from_relaxed_points():
    p = pseudo_ocv_from_points([0.5, 0.1, float("nan"), 0.9], [3.7, 3.4, 3.5, 4.0], 2.0)
    assert p["soc"].to_list() == [0.1, 0.5, 0.9]
    assert p["capacity_ampere_hour"].to_list() == pytest.approx([0.2, 1.0, 1.8])
    with pytest.raises(DegradationError, match="at least 3"):
        pseudo_ocv_from_points([0.1], [3.0])


def test_reference_ocp_checks():
    with pytest.raises(DegradationError, match=r"theta must lie in \[0, 1\]"):
        ElectrodeOCP(np.array([0.0, 0.5, 1.5]), np.array([1.0, 0.5, 0.1]))
    ocp = ElectrodeOCP.from_frame(
        pl.DataFrame({"soc": [1.0, 0.0, 0.5], "ocv_volt": [3.0, 4.0, 3.5]})
    )
    assert ocp(np.array([0.25])) == pytest.approx([3.75])
    with pytest.raises(DegradationError, match="needs theta"):
        ElectrodeOCP.from_frame(pl.DataFrame({"x": [1.0]}))


def test_pseudo_ocv_of_a_real_slow_cycle(shared_data):
    frame = read(shared_data / "cycling" / "neware_uio.csv").frame
    p = pseudo_ocv_from_cycle(frame, 2)
    v = p["ocv_volt"].to_numpy()
    ch, dis = p["charge_voltage_volt"].to_numpy(), p["discharge_voltage_volt"].to_numpy()
    assert np.all((v >= np.minimum(ch, dis) - 1e-9) & (v <= np.maximum(ch, dis) + 1e-9))
    assert float(np.median(p["hysteresis_volt"].to_numpy())) > 0  # charge above discharge
    assert 0.003 < p["capacity_ampere_hour"][-1] < 0.006


def _cycles_frame(curves, eta=0.01):
    """Slow cycles (charge then discharge, 1 mA) whose pseudo-OCV is each (Q, V) curve."""
    parts, t0 = [], 0.0
    for cycle, (q, v) in curves.items():
        dt = np.diff(q, prepend=0.0) / 1e-3 * 3600
        t = t0 + np.cumsum(dt)
        tq = t[-1] + np.cumsum(dt[::-1])
        t0 = tq[-1] + 10
        n = q.size
        parts.append(
            pl.DataFrame(
                {
                    "test_time_second": np.concatenate([t, tq]),
                    "voltage_volt": np.concatenate([v + eta, (v - eta)[::-1]]),
                    "current_ampere": np.concatenate([np.full(n, 1e-3), np.full(n, -1e-3)]),
                    "cycle_count": [cycle] * (2 * n),
                }
            )
        )
    return pl.concat(parts)


def test_cli_degradation(tmp_path, capsys):
    import json

    from cellbench.cli.main import main
    from cellbench.core.schema import RunMeta
    from cellbench.daq.store import create_run

    curves = {}
    for k, cycle in enumerate((1, 2)):
        q, v, *_ = _cell_curve(1.2e-3, 1.3e-3 * (1 - 0.06 * k), FRESH["n_li"] * 1e-3, noise=0)
        curves[cycle] = (q[::5], v[::5])
    frame = _cycles_frame(curves)
    n = frame.height
    frame = frame.with_columns(
        pl.lit("c").alias("channel"),
        (pl.col("test_time_second") + 1.7e9).alias("unix_time_second"),
        pl.lit(1).alias("step_count"),
        pl.lit(0).alias("step_index"),
    )
    with create_run(tmp_path, RunMeta("deg", "2026-12-01T00:00:00Z")) as w:
        w.append("samples", frame)
    for name, ocp in (("pe.csv", PE), ("ne.csv", NE)):
        pl.DataFrame({"theta": ocp.theta, "potential_volt": ocp.potential_volt}).write_csv(
            tmp_path / name
        )
    args = ["analyze", "degradation", str(tmp_path / "deg"), "--json"]
    args += ["--positive-ocp", str(tmp_path / "pe.csv"), "--negative-ocp", str(tmp_path / "ne.csv")]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["cycle_count"] for r in rows] == [1, 2] and n > 0
    assert rows[1]["loss_of_active_material_negative"] == pytest.approx(0.06, abs=0.01)
    assert rows[1]["loss_of_lithium_inventory"] == pytest.approx(0.0, abs=0.01)
    bad = [a if not a.endswith("pe.csv") else str(tmp_path / "x.csv") for a in args]
    assert main(bad) == 1
    assert "no such file" in capsys.readouterr().err
