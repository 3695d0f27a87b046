"""Limits the Keithley 2450 holds by itself, so that a dead logger cannot drive a cell past them
(issue 11): the protocol's ``voltage_min`` on discharge (a voltage source at the floor, limited
to the step's current) and a bounded source time (a trigger model that turns the output off
unless readings renew it). Proved on the driver against the simulator, and end to end: a
``cellbench run`` logger killed with SIGKILL while discharging, the simulated 2450 living in this
test process."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cellbench.core.clock import ScaledClock
from cellbench.drivers.errors import InterlockError
from cellbench.drivers.keithley2450 import Keithley2450
from cellbench.drivers.sim.cell import SimCell, load_cell_params
from cellbench.drivers.sim.keithley2450_sim import Keithley2450Simulator

SIM = Path(__file__).resolve().parents[1] / "fixtures" / "sim"
TIMEOUT = 0.5
V_MIN = 3.0


class ManualClock:
    time_scale = 1.0

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def _cell(clock, *, capacity_ah: float = 2e-6, soc: float = 0.09) -> SimCell:
    """A small NMC811 full cell just above 3.0 V: 1 mA takes it below 3.0 V within ~1 s."""
    params = dataclasses.replace(
        load_cell_params(SIM / "sulfide_full_cell.toml"), capacity_ah=capacity_ah
    )
    cell = SimCell(params, clock=clock, seed=5)
    cell.set_soc(soc)
    return cell


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def cell(clock):
    return _cell(clock)


@pytest.fixture
def sim(cell):
    with Keithley2450Simulator(cell, noise_relative=1e-6, seed=7) as server:
        yield server


def _smu(sim, **options) -> Keithley2450:
    return Keithley2450(sim.address, name="smu1", timeout_s=TIMEOUT, **options)


def _lowest_voltage(cell, clock, seconds: float, step_s: float = 0.05) -> float:
    lowest = float("inf")
    for _ in range(round(seconds / step_s)):
        clock.t += step_s
        lowest = min(lowest, cell.measure()[0])
    return lowest


# -- voltage_min held by the instrument ------------------------------------------------------


def test_discharge_holds_voltage_min_on_the_instrument(sim, cell, clock):
    smu = _smu(sim)
    smu.program_safety_limits(voltage_min_volt=V_MIN, voltage_max_volt=4.3, current_max_ampere=0.01)
    smu.source_current(-1e-3, voltage_limit_volt=4.3)
    assert (sim.source_function, sim.level["VOLT"], sim.limit["VOLT"]) == ("VOLT", V_MIN, 1e-3)
    clock.t += 0.2
    reading = smu.measure()  # above the floor: the step's constant current, as before
    assert reading.current_ampere == pytest.approx(-1e-3, rel=1e-3)
    assert reading.voltage_volt > V_MIN + 0.05
    # nobody reads any more (the logger is gone): the instrument stops the cell at voltage_min
    assert _lowest_voltage(cell, clock, 2.0) >= V_MIN - 1e-9
    v, i = cell.measure()
    assert v == pytest.approx(V_MIN, abs=1e-6)
    assert -0.95e-3 < i <= 1e-12  # held at the floor: less than the step's current, no charge
    assert _lowest_voltage(cell, clock, 60.0) >= V_MIN - 1e-9
    smu.close()


def test_hold_voltage_min_false_keeps_plain_constant_current(sim, cell, clock):
    smu = _smu(sim, hold_voltage_min=False)
    smu.program_safety_limits(voltage_min_volt=V_MIN, voltage_max_volt=4.3, current_max_ampere=None)
    smu.source_current(-1e-3, voltage_limit_volt=4.3)
    assert (sim.source_function, sim.level["CURR"]) == ("CURR", -1e-3)
    smu.close()


def test_charge_and_zero_current_rest_are_unchanged_by_the_floor(sim, cell, clock):
    smu = _smu(sim)
    smu.program_safety_limits(voltage_min_volt=V_MIN, voltage_max_volt=4.3, current_max_ampere=None)
    smu.source_current(1e-3, voltage_limit_volt=4.2)
    assert (sim.source_function, sim.level["CURR"], sim.limit["CURR"]) == ("CURR", 1e-3, 4.2)
    smu.output_off()
    assert (sim.source_function, sim.level["CURR"]) == ("CURR", 0.0)
    smu.close()


# -- bounded source time -----------------------------------------------------------------------


def test_output_goes_off_at_the_steps_bound_without_readings(sim, cell, clock):
    smu = _smu(sim, max_step_s=100.0)
    smu.source_current(1e-3, voltage_limit_volt=4.2)
    assert sim.trigger_running
    # the output went on through the trigger model that turns it off again
    assert sim.trigger_blocks == {1: ("SOURCE", True), 2: ("DELAY", 100.0), 3: ("SOURCE", False)}
    assert ":OUTP ON" not in sim.received
    smu.measure()  # the engine's first sample, at once: the step's time counts from here
    clock.t += 40.0
    smu.measure()  # renews with the 60 s left, not another 100 s
    assert smu.output_enabled  # (a query: the lines before it have been executed)
    assert sim.trigger_blocks[1] == ("DELAY", 60.0)
    clock.t += 59.0
    sim.advance_trigger_model()
    assert sim.output
    clock.t += 2.0
    sim.advance_trigger_model()
    assert not sim.output and cell.mode == "open"  # HIMP: the relay opened
    with pytest.raises(InterlockError, match="bound ran out"):
        smu.measure()
    smu.close()


def test_watchdog_is_renewed_by_every_reading_and_fires_without_them(sim, cell, clock):
    cell.set_soc(0.5)
    smu = _smu(sim, watchdog_s=10.0)
    smu.source_current(1e-4, voltage_limit_volt=4.2)
    for _ in range(20):  # 100 s of readings every 5 s: the watchdog never runs out
        clock.t += 5.0
        smu.measure()
        assert sim.output
    sent = [line for line in sim.received if ":READ?" in line][-1]
    assert sent.startswith(":ABOR;:READ?")
    renew = ':TRIG:LOAD "Empty";:TRIG:BLOC:DEL:CONS 1, 10;:TRIG:BLOC:SOUR:STAT 2, OFF;:INIT'
    assert sent.endswith(renew)
    assert sim.trigger_blocks == {1: ("DELAY", 10.0), 2: ("SOURCE", False)}  # never on again
    clock.t += 9.5
    sim.advance_trigger_model()
    assert sim.output
    clock.t += 1.0
    sim.advance_trigger_model()
    assert not sim.output
    with pytest.raises(InterlockError, match="not renewed within 10 s"):
        smu.measure()  # its line restarts the renewing model: that one cannot turn it on again
    clock.t += 20.0
    sim.advance_trigger_model()
    assert not sim.output and cell.mode == "open"
    smu.safe_state()
    assert not sim.trigger_running and list(sim.errors) == []
    smu.close()


def test_a_new_setting_or_safe_state_stops_the_trigger_model_first(sim, cell, clock):
    """While the trigger model runs the simulator refuses source changes (as the instrument):
    the driver stops it before every change, and safe_state leaves nothing running."""
    smu = _smu(sim, watchdog_s=10.0)
    smu.source_current(1e-3, voltage_limit_volt=4.2)
    sim.handle_line(":SOUR:CURR 0.002")  # another program's change: refused
    assert sim.level["CURR"] == 1e-3 and sim.errors[-1][0] == -221
    sim.errors.clear()
    smu.source_current(2e-3, voltage_limit_volt=4.2)  # the driver's own: accepted
    assert sim.level["CURR"] == 2e-3 and sim.trigger_running
    smu.output_off()  # 0 A: nothing sourced, nothing to bound
    assert not sim.trigger_running
    smu.source_voltage(3.6, current_limit_ampere=1e-3)
    assert sim.trigger_running
    smu.safe_state()
    assert not sim.trigger_running and not sim.output
    assert list(sim.errors) == []
    smu.close()


def test_trigger_model_runs_by_itself_on_the_simulator():
    """Nobody connected: the simulator's own thread turns the output off at the delay."""
    cell = _cell(ScaledClock(1.0), soc=0.5)
    with Keithley2450Simulator(cell) as sim:
        for line in (
            ":SOUR:FUNC CURR",
            ":SOUR:CURR 0.0001",
            ":OUTP ON",
            ':TRIG:LOAD "Empty"',
            ":TRIG:BLOC:DEL:CONS 1, 0.3",
            ":TRIG:BLOC:SOUR:STAT 2, OFF",
            ":INIT",
        ):
            sim.handle_line(line)
        assert (
            sim.handle_line(":TRIG:BLOC:LIST?") == "1) DELAY_CONSTANT: 0.3; 2) SOURCE_OUTPUT: OFF"
        )
        assert sim.handle_line(":TRIG:STAT?").startswith("WAITING;WAITING;1")
        deadline = time.monotonic() + 5.0
        while sim.output and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not sim.output
        assert sim.handle_line(":TRIG:STAT?") == "IDLE;IDLE;3"
        assert list(sim.errors) == []


# -- end to end: kill -9 of the logger ---------------------------------------------------------

PROTOCOL = f"""
name = "held limits"
sample_interval = "0.2 s"

[safety]
voltage_min = "{V_MIN} V"
voltage_max = "4.3 V"

[[step]]
type = "rest"
duration = "1 s"

[[step]]
type = "cc"
current = "-1 mA"
until = {{ time = "1 h" }}
"""

WATCHDOG_S = 4.0


def test_killed_logger_leaves_the_cell_inside_the_window_and_the_output_off(tmp_path):
    """A ``cellbench run`` logger drives a 2450 served from this process; it is killed with
    SIGKILL during the discharge. Under plain constant current the cell would be below
    ``voltage_min`` about 1.5 s later; the instrument holds it at ``voltage_min``, and turns the
    output off once no reading has renewed its watchdog for ``watchdog_s``."""
    cell = _cell(ScaledClock(1.0), capacity_ah=5e-6, soc=0.095)
    with Keithley2450Simulator(cell, seed=3) as sim:
        station = tmp_path / "station.toml"
        station.write_text(
            f"""
[cell]
name = "coin"
chemistry = "Li|Li6PS5Cl|NMC811"
nominal_capacity_ah = 5e-6

[[instrument]]
name = "smu1"
driver = "keithley2450"
address = "{sim.address}"
roles = ["source"]
channel = "cell1"
timeout_s = 2.0

[instrument.options]
watchdog_s = {WATCHDOG_S}
""",
            encoding="utf-8",
        )
        protocol = tmp_path / "p.toml"
        protocol.write_text(PROTOCOL, encoding="utf-8")
        proc = subprocess.Popen(
            [sys.executable, "-m", "cellbench.cli", "run", str(protocol), "--station",
             str(station), "--out", str(tmp_path / "runs"), "--name", "r1", "--plain"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60.0
            while not (sim.output and cell.measure()[1] < -0.5e-3):  # the discharge began
                if proc.poll() is not None or time.monotonic() > deadline:
                    _, err = proc.communicate(timeout=10)
                    pytest.fail(f"the logger never discharged (exit {proc.returncode}): {err}")
                time.sleep(0.02)
            assert cell.measure()[0] > V_MIN + 0.1
        finally:
            proc.kill()  # SIGKILL: no handler, no safe state, nothing
            proc.wait(timeout=10)
        killed = time.monotonic()
        assert proc.returncode == -signal.SIGKILL
        lowest, at_floor, off_at = float("inf"), False, None
        while time.monotonic() < killed + WATCHDOG_S + 4.0:
            v = cell.measure()[0]
            if sim.output:
                lowest = min(lowest, v)
                at_floor |= v < V_MIN + 0.005  # reached it (plain CC would go on below)
            elif off_at is None:
                off_at = time.monotonic() - killed
                break
            time.sleep(0.01)
        assert lowest >= V_MIN - 1e-3, f"the cell went to {lowest:.4f} V with the logger gone"
        assert at_floor, "the cell never reached voltage_min: the test proves nothing"
        assert off_at is not None, "the output stayed on with the logger gone"
        # watchdog_s after the last reading (one 0.2 s sample before the kill, later on a
        # loaded machine), not at once: generous bounds
        assert 1.0 <= off_at <= WATCHDOG_S + 3.0
        assert cell.mode == "open"
