"""Stack pressure: the motorised press (driver against its simulator), pressure set-point steps
and the pressure_min limit through the engine, the ASR power-law fit on the simulated cell's
known pressure law, pressure per cycle, and the command line."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellbench.analysis.pressure import (
    PressureError,
    fit_asr_pressure,
    fit_resistance_pressure,
    pressure_by_cycle,
)
from cellbench.analysis.pulses import find_pulses

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FX = Path(__file__).resolve().parents[1] / "fixtures"

STATION = """
[cell]
name = "pressed pellet"
area_cm2 = 0.785
nominal_capacity_ah = 0.002

[simulation]
cell = "cell.toml"
time_scale = {scale}
seed = 3

[[instrument]]
name = "smu1"
driver = "keithley2450"
address = "sim"
roles = ["source"]
channel = "cell1"

[[instrument]]
name = "press1"
driver = "press"
address = "sim"
roles = ["press", "pressure"]
channel = "cell1"
[instrument.simulator]
rate_newton_per_second = 400.0
"""

SAFETY = """
[safety]
voltage_min = "2.5 V"
voltage_max = "4.35 V"
current_max = "5 mA"
pressure_max = "60 MPa"
"""


def press_station(tmp_path: Path, scale: float) -> Path:
    cell = (FX / "sim" / "sulfide_full_cell.toml").read_text(encoding="utf-8")
    (tmp_path / "cell.toml").write_text(cell.replace("initial_soc = 0.0", "initial_soc = 0.5"))
    path = tmp_path / "station.toml"
    path.write_text(STATION.format(scale=scale), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- power law


def test_power_law_recovers_exponent_and_prefactor():
    p = np.array([1.0, 2.0, 5.0, 10.0, 20.0, 50.0])
    rng = np.random.default_rng(1)
    asr = 40.0 * p**-0.5 * np.exp(rng.normal(0, 0.01, p.size))
    fit = fit_asr_pressure(p, asr)
    assert fit.exponent == pytest.approx(0.5, abs=0.02)
    lo, hi = fit.exponent_interval
    assert lo < 0.5 < hi and hi - lo < 0.1
    assert fit.asr_1mpa_ohm_cm2 == pytest.approx(40.0, rel=0.03)
    assert fit.asr_at_reference_ohm_cm2 == pytest.approx(40.0 * 10**-0.5, rel=0.03)
    assert fit.r2 > 0.99 and fit.n == 6 and not fit.weighted
    weighted = fit_asr_pressure(p, asr, asr_stderr_ohm_cm2=0.01 * asr)
    assert weighted.weighted and weighted.exponent == pytest.approx(fit.exponent, abs=1e-9)
    assert fit.predict(4.0) == pytest.approx(fit.asr_1mpa_ohm_cm2 / 4**fit.exponent)


def test_offset_power_law_and_its_limits():
    p = np.array([2.0, 5.0, 10.0, 20.0, 40.0])
    fit = fit_resistance_pressure(p, 40.0 + 150.0 * p**-0.5, area_cm2=0.5, interfaces=2)
    assert (fit.r_offset_ohm, fit.exponent, fit.r_1mpa_ohm) == pytest.approx((40, 0.5, 150))
    assert fit.asr_1mpa_ohm_cm2 == pytest.approx(150 * 0.5 / 2)
    with pytest.raises(PressureError, match="at least 4 points at 3"):
        fit_resistance_pressure([1.0, 1.0, 2.0, 2.0], [5.0, 5.0, 4.0, 4.0])


def test_power_law_refuses_bad_input():
    with pytest.raises(PressureError, match="at least 3 points"):
        fit_asr_pressure([5.0, 5.0, 5.0], [1.0, 1.1, 0.9])
    with pytest.raises(PressureError, match="positive"):
        fit_asr_pressure([1.0, -2.0, 3.0], [1.0, 1.0, 1.0])
    with pytest.raises(PressureError, match="same length"):
        fit_asr_pressure([1.0, 2.0, 3.0], [1.0, 1.0])


def test_pressure_by_cycle():
    df = pl.DataFrame(
        {
            "cycle_count": [1, 1, 1, 2, 2],
            "pressure_megapascal": [5.0, 6.0, float("nan"), 10.0, 12.0],
        }
    )
    out = pressure_by_cycle(df)
    assert out["pressure_median_megapascal"].to_list() == [5.5, 11.0]
    assert out["pressure_min_megapascal"].to_list() == [5.0, 10.0]
    with pytest.raises(PressureError, match="missing column"):
        pressure_by_cycle(df.drop("pressure_megapascal"))


def test_cli_pressure_fit(tmp_path, capsys):
    from cellbench.cli.main import main

    path = tmp_path / "asr.csv"
    p = np.array([2.0, 5.0, 10.0, 20.0])
    pl.DataFrame({"pressure_megapascal": p, "asr_ohm_cm2": 30 * p**-0.6}).write_csv(path)
    assert main(["analyze", "pressure", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["exponent"] == pytest.approx(0.6, abs=1e-9)
    r_path = tmp_path / "r.csv"
    pl.DataFrame({"pressure_megapascal": p, "resistance_ohm": 30 * p**-0.6 / 0.5}).write_csv(r_path)
    assert main(["analyze", "pressure", str(r_path), "--area-cm2", "0.5"]) == 0
    assert "p^-m" in capsys.readouterr().out
    assert main(["analyze", "pressure", str(r_path)]) != 0
    assert "--area-cm2" in capsys.readouterr().err


# -------------------------------------------------------------------- driver and simulator


def test_press_driver_drives_the_simulated_press():
    from cellbench.core.clock import ScaledClock
    from cellbench.drivers.errors import ArgumentRangeError, InstrumentCommandError
    from cellbench.drivers.press import MotorisedPress
    from cellbench.drivers.sim.cell import CellParams, SimCell
    from cellbench.drivers.sim.press import PressSimulator

    class SteppedClock(ScaledClock):
        """Simulated time that moves only when the test sleeps: no race with a loaded machine."""

        def __init__(self) -> None:
            super().__init__(1.0)
            self.t = 0.0

        def now(self) -> float:
            return self.t

        def sleep(self, seconds: float) -> None:
            self.t += seconds

    clock = SteppedClock()
    cell = SimCell(CellParams(area_cm2=1.0, initial_pressure_mpa=5.0), clock=clock)
    with PressSimulator(cell, rate_newton_per_second=100.0) as sim:
        press = MotorisedPress(sim.address, area_cm2=1.0, timeout_s=2.0)
        try:
            assert "simulated press" in press.identify()
            assert press.read_pressure_megapascal() == pytest.approx(5.0)
            press.set_pressure_megapascal(10.0)  # 500 N more at 100 N/s: 5 simulated s
            assert press.status() == "MOVING"
            clock.sleep(2.5)
            assert press.read_pressure_megapascal() == pytest.approx(7.5)
            clock.sleep(4.0)
            assert press.read_pressure_megapascal() == pytest.approx(10.0)
            assert press.status() == "AT_SETPOINT"
            assert cell.pressure_megapascal == pytest.approx(10.0)
            # closed loop: a pressure changed from outside is pushed back
            cell.pressure_megapascal = 9.0
            clock.sleep(2.0)
            assert press.read_pressure_megapascal() == pytest.approx(10.0)
            press.hold()
            cell.pressure_megapascal = 8.0
            clock.sleep(2.0)
            assert press.read_pressure_megapascal() == pytest.approx(8.0)
            with pytest.raises(ArgumentRangeError):
                press.set_force_newton(1e6)  # beyond the load cell: refused before the wire
            sim.faults.inject("error_queue")
            with pytest.raises(InstrumentCommandError, match="ERR 1"):
                press.read_force_newton()
        finally:
            press.transport.close()


# ------------------------------------------------------------------------------ engine


def test_pressure_steps_and_pulses_recover_the_simulated_pressure_law(tmp_path, capsys):
    """Press to 2, 5, 10, 20 MPa; a small pulse at each: the interface part of R_ohmic against
    the logged pressure follows the cell's law ASR = ASR_ref (p_ref / p)^m."""
    from cellbench.daq.session import prepare
    from cellbench.daq.store import open_run

    levels = (2.0, 5.0, 10.0, 20.0)
    steps = "".join(
        f"""
[[step]]
type = "pressure"
setpoint = "{p:g} MPa"
tolerance = "0.1 MPa"
stable_for = "2 s"
timeout = "2 min"

[[step]]
type = "pulse"
current = "-0.5 mA"
pulse = "4 s"
rest = "4 s"
"""
        for p in levels
    )
    protocol = tmp_path / "p.toml"
    protocol.write_text(f'name = "pressure law"\nsample_interval = "1 s"\n{SAFETY}{steps}')
    session = prepare(protocol, press_station(tmp_path, 20.0), tmp_path)
    try:
        assert session.engine.run() == "completed"
        run = open_run(session.engine.run_path)
        truth = run.meta.ground_truth
        samples = run.read("samples")
    finally:
        session.close()
    pulses = find_pulses(samples)
    assert len(pulses) == 4
    pressures = [p.pressure_megapascal for p in pulses]
    assert pressures == pytest.approx(levels, abs=0.1)
    params = truth["params"]
    r_other = params["series_resistance_ohm"] + truth["r_bulk_ohm"] + truth["r_gb_ohm"]
    asr = [(p.r_ohmic_ohm - r_other) * params["area_cm2"] for p in pulses]
    fit = fit_asr_pressure(pressures, asr)
    assert fit.exponent == pytest.approx(params["pressure_exponent"], abs=0.03)
    expected = params["interface_asr_ohm_cm2"] * (params["pressure_ref_mpa"] / 10.0) ** 0.6
    assert fit.asr_at_reference_ohm_cm2 == pytest.approx(expected, rel=0.05)
    # without the bulk subtracted: R = R_0 + R_1 p^-m on the run itself, from the command line
    from cellbench.cli.main import main

    assert main(["analyze", "pressure", str(session.engine.run_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["points"]) == 4
    assert out["fit"]["exponent"] == pytest.approx(params["pressure_exponent"], abs=0.05)
    assert out["fit"]["r_offset_ohm"] == pytest.approx(r_other, rel=0.05)


def test_pressure_min_trips_when_the_press_loses_its_load(tmp_path):
    from cellbench.daq.session import prepare
    from cellbench.daq.store import open_run

    protocol = tmp_path / "p.toml"
    protocol.write_text(
        f"""
name = "load lost"
sample_interval = "10 s"
{SAFETY}pressure_min = "3 MPa"

[[step]]
type = "pressure"
setpoint = "8 MPa"
stable_for = "10 s"

[[step]]
type = "rest"
duration = "10 h"
"""
    )
    session = prepare(protocol, press_station(tmp_path, 2000.0), tmp_path)

    def lose_load() -> None:
        session.bench.simulators["press1"].stalled = True  # the drive trips
        session.bench.cell.pressure_megapascal = 1.0

    timer = threading.Timer(1.0, lose_load)
    try:
        session.engine.start()
        timer.start()
        status = session.engine.wait()
        events = open_run(session.engine.run_path).read("events")
        smu_off = not session.bench.simulators["smu1"].output
    finally:
        timer.cancel()
        session.close()
    assert status == "aborted"
    alarms = events.filter(pl.col("kind") == "alarm")
    assert alarms.height == 1
    message = alarms["message"][0]
    assert "pressure" in message and "below limit 3" in message
    assert json.loads(alarms["data"][0])["limit"] == "pressure_min_megapascal"
    assert smu_off


def test_pressure_step_needs_a_press_and_a_setpoint_inside_the_limits(tmp_path):
    from cellbench.daq.protocol import ProtocolError, parse_protocol
    from cellbench.daq.session import prepare

    text = f"""
name = "p"
{SAFETY}pressure_min = "1 MPa"
[[step]]
type = "pressure"
setpoint = "80 MPa"
rate = "fast"
"""
    with pytest.raises(ProtocolError) as err:
        parse_protocol(text)
    assert "not below the safety pressure_max" in str(err.value)
    assert "MPa/s" in str(err.value)
    ok = parse_protocol(text.replace("80 MPa", "8 MPa").replace('"fast"', '"30 MPa/min"'))
    assert ok.steps[0].rate_megapascal_per_second == pytest.approx(0.5)
    assert "pressure 8 MPa" in ok.steps[0].summary()
    # a station without a press cannot run it
    protocol = tmp_path / "p.toml"
    protocol.write_text(text.replace("80 MPa", "8 MPa").replace('rate = "fast"\n', ""))
    station = (FX / "stations" / "coin_cell_station.toml").read_text(encoding="utf-8")
    station = station.replace('cell = "../sim/', f'cell = "{FX / "sim"}/')
    (tmp_path / "s.toml").write_text(station)
    with pytest.raises(Exception, match="press"):
        prepare(protocol, tmp_path / "s.toml", tmp_path)


def test_example_pressure_series_fits_the_press_station(capsys):
    from cellbench.cli.main import main

    code = main(
        ["protocol", "check", str(FX / "protocols" / "pressure_series.toml"),
         "--station", str(FX / "stations" / "press_station.toml")]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "pressure 20 MPa" in out and "press, pressure" in out
