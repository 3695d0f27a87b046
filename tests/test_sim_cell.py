"""The simulated cell: analytic impedance, temperature/pressure/age laws, integration, short."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellbench.drivers.sim.cell import (
    CellParams,
    CellParamsError,
    SimCell,
    load_cell_params,
)

SIM = Path(__file__).resolve().parents[1] / "fixtures" / "sim"
K_EV = 8.617333262e-5


class ManualClock:
    """A clock the test moves by hand: integration is deterministic."""

    time_scale = 1.0

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock():
    return ManualClock()


def cell_from(name: str, clock: ManualClock, **overrides) -> SimCell:
    params = load_cell_params(SIM / f"{name}.toml")
    if overrides:
        from dataclasses import replace

        params = replace(params, **overrides)
    return SimCell(params, clock=clock)


def test_fixture_files_load():
    for path in SIM.glob("*.toml"):
        params = load_cell_params(path)
        assert params.area_cm2 > 0 and params.name


def test_impedance_matches_hand_calculation(clock):
    cell = cell_from("llzo_symmetric", clock)
    f = np.array([1e6, 1e3, 1.0])
    w = 2 * np.pi * f
    geometry = 0.1 / 0.785
    r_b, r_gb, r_i = geometry / 5e-4, geometry / 1e-3, 50.0 / 0.785
    expected = (
        0.5
        + 1j * w * 2e-7
        + r_b / (1 + r_b * 5e-11 * (1j * w) ** 0.95)
        + r_gb / (1 + r_gb * 2e-9 * (1j * w) ** 0.9)
        + r_i / (1 + r_i * 1e-6 * (1j * w) ** 0.85)
    )
    np.testing.assert_allclose(cell.impedance(f), expected, rtol=1e-12)
    truth = cell.ground_truth()
    assert truth["r_bulk_ohm"] == pytest.approx(r_b)
    assert truth["dc_resistance_ohm"] == pytest.approx(0.5 + r_b + r_gb + r_i)
    assert truth["circuit_parameters"]["R3"] == pytest.approx(r_i)
    # DC limit of the spectrum is the DC resistance
    assert cell.impedance(1e-4)[0].real == pytest.approx(truth["dc_resistance_ohm"], rel=1e-6)


def test_warburg_short_limits(clock):
    cell = cell_from("sulfide_full_cell", clock)
    truth = cell.ground_truth()
    z_dc = cell.impedance(1e-7)[0]
    assert z_dc.real == pytest.approx(truth["dc_resistance_ohm"], rel=1e-4)
    assert abs(z_dc.imag) < 1e-3


def test_arrhenius_temperature_dependence(clock):
    cell = cell_from("llzo_symmetric", clock)
    r25 = cell.ground_truth()["r_bulk_ohm"]
    cell.set_chamber_setpoint(80.0)
    clock.t += 600.0 * 30  # 30 thermal time constants
    truth = cell.ground_truth()
    assert truth["temperature_celsius"] == pytest.approx(80.0, abs=1e-6)
    t1, t0 = 353.15, 298.15
    ratio = math.exp(-0.35 / K_EV * (1 / t1 - 1 / t0))
    assert r25 / truth["r_bulk_ohm"] == pytest.approx(ratio, rel=1e-9)
    ratio_int = math.exp(-0.3 / K_EV * (1 / t1 - 1 / t0))
    assert 50.0 / truth["interface_asr_ohm_cm2"] == pytest.approx(ratio_int, rel=1e-9)


def test_vtf_temperature_dependence(clock):
    cell = cell_from("peo_polymer_cell", clock)  # starts at 60 degC
    t, t0, b = 333.15, 200.0, 1000.0
    sigma = 1e-5 * math.sqrt(298.15 / t) * math.exp(-b / (t - t0) + b / (298.15 - t0))
    assert cell.ground_truth()["bulk_sigma_s_per_cm"] == pytest.approx(sigma, rel=1e-12)


def test_thermal_lag_is_first_order(clock):
    cell = cell_from("llzo_symmetric", clock)
    cell.set_chamber_setpoint(45.0)
    clock.t += 600.0
    assert cell.temperature_celsius == pytest.approx(45 - 20 * math.exp(-1), rel=1e-3)


def test_interface_falls_with_pressure(clock):
    cell = cell_from("llzo_symmetric", clock)
    r5 = cell.ground_truth()["r_interface_ohm"]
    cell.pressure_megapascal = 20.0
    assert cell.ground_truth()["r_interface_ohm"] == pytest.approx(r5 * (5 / 20) ** 0.5)
    with pytest.raises(ValueError):
        cell.pressure_megapascal = 0.0


def test_constant_current_charge_integrates_capacity(clock):
    cell = cell_from("sulfide_full_cell", clock, fade_per_efc=0.0, knee_efc=1e9)
    current = 1e-3  # C/2
    cell.set_current(current)
    clock.t += 1800.0  # 0.5 Ah per A -> 0.5 mAh
    truth = cell.ground_truth()
    assert truth["soc"] == pytest.approx(0.25, rel=1e-9)
    assert truth["equivalent_full_cycles"] == pytest.approx(0.5e-3 / 4e-3)
    # terminal voltage = OCV + I R_fast + eta_w (eta_w relaxed: 9 tau_w elapsed)
    v, i = cell.measure()
    r_fast = truth["dc_resistance_ohm"] - 5.0
    ocv = np.interp(0.25, *_ocv_table(cell))
    assert i == current
    assert v == pytest.approx(ocv + current * (r_fast + 5.0), abs=1e-6)


def _ocv_table(cell):
    return np.array(cell.params.ocv_soc), np.array(cell.params.ocv_volt)


def test_relaxation_after_current_interrupt(clock):
    cell = cell_from("sulfide_full_cell", clock)
    cell.set_soc(0.5)
    cell.set_current(1e-3)
    clock.t += 3000.0
    cell.open_circuit()
    v0, i0 = cell.measure()
    assert i0 == 0.0
    ocv = cell.ground_truth()["ocv_volt"]
    assert v0 - ocv == pytest.approx(5.0 * 1e-3, rel=1e-3)  # only the diffusion lag remains
    clock.t += 200.0 / 3  # one lag time constant
    v1, _ = cell.measure()
    assert (v1 - ocv) / (v0 - ocv) == pytest.approx(math.exp(-1), rel=1e-6)


def test_voltage_compliance_then_taper(clock):
    cell = cell_from("sulfide_full_cell", clock)
    cell.set_soc(0.85)
    cell.set_current(2e-3, voltage_limit_volt=4.2)
    clock.t += 600.0
    v, i = cell.measure()
    assert v == pytest.approx(4.2, abs=1e-9)
    assert 0 < i < 2e-3
    assert cell.in_compliance


def test_constant_voltage_current_limit(clock):
    cell = cell_from("sulfide_full_cell", clock)
    cell.set_soc(0.5)
    cell.set_voltage(4.25, current_limit_ampere=1e-3)
    v, i = cell.measure()
    assert i == pytest.approx(1e-3) and v < 4.25  # current-limited at first
    clock.t += 20000.0
    v, i = cell.measure()
    assert v == pytest.approx(4.25, abs=1e-9)
    assert 0 < i < 1e-4  # tapered


def test_capacity_fade_and_interface_growth_with_cycling(clock):
    cell = cell_from("sulfide_full_cell", clock)
    cap0 = cell.capacity_ah
    r0 = cell.ground_truth()["r_interface_ohm"]
    cell.set_soc(0.5)
    for _ in range(40):  # 40 x (+-0.5 mAh) at 1 mA = 10 equivalent full cycles
        for sign in (1, -1):
            cell.set_current(sign * 1e-3)
            clock.t += 1800.0
    truth = cell.ground_truth()
    assert truth["equivalent_full_cycles"] == pytest.approx(10.0, rel=1e-9)
    assert cell.capacity_ah == pytest.approx(cap0 * (1 - 5e-4 * 10.0), rel=1e-9)
    assert truth["r_interface_ohm"] == pytest.approx(r0 * (1 + 0.08 * math.sqrt(10)), rel=1e-9)


def test_short_above_critical_current_density(clock):
    cell = cell_from("llzo_symmetric", clock)
    area = 0.785
    below = 0.5e-3 * area  # 0.5 mA/cm2 < CCD 0.6
    cell.set_current(below)
    clock.t += 3600.0
    assert not cell.shorted
    v_ok, _ = cell.measure()
    assert v_ok == pytest.approx(below * cell.ground_truth()["dc_resistance_ohm"], rel=1e-9)
    above = 1.0e-3 * area  # 1 mA/cm2: 0.05 mAh/cm2 passes in 180 s
    cell.set_current(above)
    clock.t += 170.0
    assert not cell.shorted
    clock.t += 20.0
    assert cell.shorted
    assert cell.ground_truth()["short_time_second"] == pytest.approx(3600 + 180, abs=1.0)
    v, i = cell.measure()
    assert abs(v) < 1e-3 and i == above
    cell.set_current(-below)
    clock.t += 3600
    assert cell.shorted  # stays shorted
    assert cell.impedance(1e3)[0].real == pytest.approx(0.01)


def test_params_errors_name_the_problem(tmp_path):
    with pytest.raises(CellParamsError, match="unknown key"):
        CellParams.from_dict({"bulk_sigma": 1.0})
    with pytest.raises(CellParamsError, match="area_cm2 must be > 0"):
        CellParams.from_dict({"area_cm2": 0})
    with pytest.raises(CellParamsError, match="OCV table"):
        CellParams.from_dict({"kind": "full"})
    with pytest.raises(CellParamsError, match="not found"):
        load_cell_params(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("area_cm2 = = 1\n")
    with pytest.raises(CellParamsError, match=r"bad\.toml"):
        load_cell_params(bad)


def test_long_idle_gap_stays_cheap(clock):
    cell = cell_from("sulfide_full_cell", clock)
    cell.set_chamber_setpoint(40.0)
    clock.t += 1e8
    assert cell.temperature_celsius == pytest.approx(40.0)


def test_ground_truth_is_json_and_cell_is_thread_safe():
    import json
    import threading

    from cellbench.core.clock import ScaledClock

    cell = SimCell(load_cell_params(SIM / "sulfide_full_cell.toml"), clock=ScaledClock(1e4))
    errors: list[BaseException] = []

    def hammer(k: int) -> None:
        try:
            for i in range(200):
                if i % 3 == 0:
                    cell.set_current((-1) ** k * 1e-3, voltage_limit_volt=4.3)
                cell.measure()
                cell.impedance(np.array([1.0, 1e3]))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    truth = json.loads(json.dumps(cell.ground_truth()))
    assert truth["params"]["ocv_soc"][0] == 0.0 and truth["time_second"] > 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-2e-3, 2e-3), st.floats(1.0, 300.0)), min_size=1, max_size=6))
def test_charge_is_conserved_for_any_current_sequence(steps):
    """Charge content moves by exactly sum(I dt) while SOC stays inside the table."""
    clock = ManualClock()
    params = load_cell_params(SIM / "sulfide_full_cell.toml")
    from dataclasses import replace

    cell = SimCell(replace(params, fade_per_efc=0.0, knee_efc=1e9), clock=clock)
    cell.set_soc(0.5)
    expected_ah = 0.5 * 2e-3
    throughput = 0.0
    for current, dt in steps:
        cell.set_current(current)
        clock.t += dt
        expected_ah += current * dt / 3600.0
        throughput += abs(current) * dt / 3600.0
    truth = cell.ground_truth()
    assert truth["soc"] * 2e-3 == pytest.approx(expected_ah, abs=1e-12)
    assert truth["equivalent_full_cycles"] == pytest.approx(throughput / 4e-3, abs=1e-9)
    assert -0.1 < truth["soc"] < 1.1  # (at most 1 mAh moved from 1 mAh: never clipped)
