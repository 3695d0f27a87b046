"""Espec temperature chamber driver against its simulator over a real pty."""

from __future__ import annotations

import time

import pytest
from serial_sim_support import SLACK_S, TIMEOUT_S, make_cell, raises_within

from cellbench.drivers.errors import (
    ArgumentRangeError,
    InstrumentCommandError,
    InstrumentReplyError,
    InstrumentTimeout,
    InterlockError,
)
from cellbench.drivers.espec import EspecChamber
from cellbench.drivers.roles import TemperatureController
from cellbench.drivers.sim.chamber_gauge import EspecSimulator


@pytest.fixture
def cell():
    return make_cell(time_scale=2000.0, thermal_tau_s=300.0)


@pytest.fixture
def sim(cell):
    with EspecSimulator(cell, upper_limit_celsius=100.0, lower_limit_celsius=-40.0) as s:
        yield s


@pytest.fixture
def chamber(sim):
    driver = EspecChamber(sim.address, name="chamber", timeout_s=TIMEOUT_S)
    yield driver
    driver.close()


def test_identify_status_and_role(chamber, sim):
    assert chamber.identify() == "ESPEC SH-241,T,S2,150.0 P5.01 SIMULATED"
    assert chamber.read_status() == (25.0, 25.0, 100.0, -40.0)
    assert chamber.read_mode() == "STANDBY"
    assert isinstance(chamber, TemperatureController)
    assert sim.received == [b"TYPE?\r\n", b"ROM?\r\n", b"TEMP?\r\n", b"MODE?\r\n"]


def test_set_point_exact_bytes_and_the_cell_follows(chamber, sim, cell):
    sim.received.clear()
    chamber.set_temperature_celsius(60)
    assert sim.received == [b"TEMP?\r\n", b"TEMP, S60.0\r\n", b"MODE, CONSTANT\r\n"]
    assert chamber.read_mode() == "CONSTANT"
    time.sleep(1.0)  # 2000 s simulated, ~6.7 thermal time constants
    assert chamber.read_temperature_celsius() == pytest.approx(60.0, abs=0.2)
    assert cell.temperature_celsius == pytest.approx(60.0, abs=0.2)


def test_set_point_outside_limits_is_refused_before_the_wire(chamber, sim):
    sim.received.clear()
    with pytest.raises(ArgumentRangeError, match=r"outside -70\.\.180"):
        chamber.set_temperature_celsius(250)
    assert sim.received == []
    with pytest.raises(ArgumentRangeError, match="chamber limits"):
        chamber.set_temperature_celsius(120)  # within the controller, above the chamber's limit
    assert sim.received == [b"TEMP?\r\n"]


def test_na_reply_is_a_command_error(chamber, sim):
    sim.faults.inject("error_queue", on="TEMP, S")
    with pytest.raises(InstrumentCommandError, match=r"COMMAND ERR.*TEMP, S30\.0"):
        chamber.set_temperature_celsius(30)


def test_safe_state_is_standby(chamber, sim, cell):
    chamber.set_temperature_celsius(80)
    chamber.safe_state()
    chamber.safe_state()
    assert sim.mode == "STANDBY"
    assert cell.chamber_setpoint_celsius == sim.ambient
    assert sim.received[-1] == b"MODE, STANDBY\r\n"


def test_faults(chamber, sim):
    sim.faults.inject("no_reply", on="TEMP?")
    with raises_within(InstrumentTimeout, TIMEOUT_S + SLACK_S, match="TEMP"):
        chamber.read_temperature_celsius()
    sim.faults.inject("garbled", on="TEMP?")
    with raises_within(InstrumentReplyError, TIMEOUT_S + SLACK_S):
        chamber.read_temperature_celsius()
    sim.faults.inject("late_reply", delay_s=0.1, on="TEMP?")
    assert chamber.read_temperature_celsius() == pytest.approx(25.0, abs=0.5)
    sim.faults.inject("disconnect", delay_s=0.2, on="TEMP?")
    assert chamber.read_temperature_celsius() == pytest.approx(25.0, abs=0.5)


def test_tripped_alarm_is_an_interlock_error(chamber, sim, cell):
    assert chamber.read_alarms() == []
    chamber.set_temperature_celsius(50)
    sim.faults.inject("interlock", on="TEMP, S")
    with pytest.raises(InterlockError, match="alarm\\(s\\) 12 active"):
        chamber.set_temperature_celsius(55)
    assert chamber.read_alarms() == [12]
    assert chamber.read_mode() == "STANDBY"  # control stopped by the protector
    assert cell.chamber_setpoint_celsius == sim.ambient
    sim.alarms.clear()  # the operator removes the cause and resets the chamber
    chamber.set_temperature_celsius(55)
    assert chamber.read_mode() == "CONSTANT"


def test_reply_later_than_the_timeout_is_not_read_as_the_next_reply(chamber, sim):
    sim.faults.inject("late_reply", delay_s=TIMEOUT_S * 1.5, on="TEMP?")
    with raises_within(InstrumentTimeout, TIMEOUT_S + SLACK_S, match="TEMP"):
        chamber.read_temperature_celsius()
    assert chamber.identify() == "ESPEC SH-241,T,S2,150.0 P5.01 SIMULATED"
    assert chamber.read_temperature_celsius() == pytest.approx(25.0, abs=0.5)


# --- replayed as the ESPEC communication manual prints the exchanges ---------------------------
def test_set_point_and_mode_replayed_from_the_manual_exchanges():
    """``TEMP?`` -> measured, set point, upper and lower limit; ``TEMP, S25.0`` ->
    ``OK: TEMP, S25.0``; ``MODE, CONSTANT`` -> ``OK: MODE, CONSTANT``; ``MODE?`` -> mode."""
    from cellbench.drivers.replay import replay

    pairs = [
        (b"TEMP?\r\n", b"23.5,20.0,100.0,-40.0\r\n"),
        (b"TEMP, S25.0\r\n", b"OK: TEMP, S25.0\r\n"),
        (b"MODE, CONSTANT\r\n", b"OK: MODE, CONSTANT\r\n"),
        (b"MODE?\r\n", b"CONSTANT\r\n"),
        (b"MODE, STANDBY\r\n", b"OK: MODE, STANDBY\r\n"),
    ]
    with replay(EspecChamber, pairs) as chamber:
        chamber.set_temperature_celsius(25.0)
        assert chamber.read_mode() == "CONSTANT"
        chamber.safe_state()


def test_mode_setting_is_declared_with_its_values():
    from cellbench.drivers.errors import ArgumentRangeError
    from cellbench.drivers.replay import replay

    with replay(EspecChamber, []) as chamber, pytest.raises(ArgumentRangeError, match="RUN"):
        chamber.mode = "RUN"
