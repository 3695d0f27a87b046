"""Mark-10 force gauge driver (stack pressure) against its simulator over a real pty."""

from __future__ import annotations

import time

import pytest
from serial_sim_support import SLACK_S, TIMEOUT_S, make_cell, raises_within

from cellbench.drivers.errors import (
    ArgumentRangeError,
    InstrumentCommandError,
    InstrumentRangeError,
    InstrumentReplyError,
    InstrumentTimeout,
)
from cellbench.drivers.mark10 import Mark10Gauge, parse_reading
from cellbench.drivers.roles import PressureGauge
from cellbench.drivers.sim.chamber_gauge import Mark10Simulator

AREA_CM2 = 0.785


@pytest.fixture
def cell():
    return make_cell(area_cm2=AREA_CM2, initial_pressure_mpa=10.0)


@pytest.fixture
def sim(cell):
    with Mark10Simulator(cell, capacity_newton=2500.0) as simulator:
        yield simulator


@pytest.fixture
def gauge(sim):
    driver = Mark10Gauge(sim.address, name="press", timeout_s=TIMEOUT_S, area_cm2=AREA_CM2)
    yield driver
    driver.close()


def test_pressure_from_force_and_area(gauge, sim, cell):
    # 10 MPa on 0.785 cm^2 = 785 N
    assert gauge.read_force() == (785.0, "N")
    assert gauge.read_pressure_megapascal() == pytest.approx(10.0, rel=1e-4)
    cell.pressure_megapascal = 2.5
    assert gauge.read_pressure_megapascal() == pytest.approx(2.5, rel=1e-3)
    assert isinstance(gauge, PressureGauge)
    assert sim.received == [b"N\r", b"?\r", b"?\r", b"?\r"]


@pytest.mark.parametrize(
    ("unit", "command", "reply_unit"),
    [
        ("lbF", b"LB\r", "LBF"),
        ("kgF", b"KG\r", "KGF"),
        ("kN", b"KN\r", "KN"),
        ("ozF", b"OZ\r", "OZF"),
    ],
)
def test_any_unit_converts_to_the_same_pressure(gauge, sim, unit, command, reply_unit):
    gauge.set_unit(unit)
    assert sim.received[-1] == command
    assert gauge.read_force()[1] == reply_unit
    assert gauge.read_pressure_megapascal() == pytest.approx(10.0, rel=2e-3)


def test_parse_reading():
    assert parse_reading("3.258 lbF") == (3.258, "LBF")
    assert parse_reading("-12.5 N") == (-12.5, "N")
    for bad in ("", "12.3", "lbF", "12.3 psi"):
        with pytest.raises(ValueError):
            parse_reading(bad)


def test_over_capacity_is_a_range_error(gauge, sim):
    sim.faults.inject("over_range")
    with pytest.raises(InstrumentRangeError, match="exceeds the gauge capacity 2500 N"):
        gauge.read_pressure_megapascal()


def test_error_code_is_a_command_error(gauge, sim):
    sim.faults.inject("error_queue")
    with pytest.raises(InstrumentCommandError, match=r"\*10"):
        gauge.read_force()
    with pytest.raises(ArgumentRangeError, match="psi"):
        gauge.set_unit("psi")


def test_missing_area_is_reported(sim):
    with Mark10Gauge(sim.address, timeout_s=TIMEOUT_S) as gauge:
        with pytest.raises(ArgumentRangeError, match="area_cm2 is not set"):
            gauge.read_pressure_megapascal()
        assert gauge.read_force_newton() == pytest.approx(785.0)


def test_faults(gauge, sim):
    sim.faults.inject("no_reply", on="?")
    with raises_within(InstrumentTimeout, TIMEOUT_S + SLACK_S):
        gauge.read_force()
    sim.faults.inject("garbled", on="?")
    with raises_within(InstrumentReplyError, TIMEOUT_S + SLACK_S):
        gauge.read_force()
    sim.faults.inject("disconnect", delay_s=0.2, on="?")
    assert gauge.read_pressure_megapascal() == pytest.approx(10.0, rel=1e-3)


def test_late_reply_within_and_past_the_timeout(gauge, sim):
    sim.faults.inject("late_reply", delay_s=TIMEOUT_S / 3, on="?")
    assert gauge.read_force() == (785.0, "N")
    sim.faults.inject("late_reply", delay_s=TIMEOUT_S * 1.5, on="?")
    with raises_within(InstrumentTimeout, TIMEOUT_S + SLACK_S):
        gauge.read_force()
    # the late "785 N" arrives after the unit changed: the next reading must be the kN one
    gauge.set_unit("kN")
    value, unit = gauge.read_force()
    assert unit.upper() == "KN" and value == pytest.approx(0.785)


def test_safe_state_sends_nothing_and_the_gauge_stays_usable(gauge, sim):
    gauge.read_force()
    before = list(sim.received)
    gauge.safe_state()  # a gauge drives nothing: no command may reach it
    assert gauge.read_force() == (785.0, "N")
    assert sim.received == [*before, b"?\r"]  # only the reading after it


# --- what the documentation settles, and what it does not (issue 18) -------------------------
@pytest.mark.parametrize("acknowledges", [False, True])
def test_unit_and_zero_need_no_reply(cell, acknowledges):
    """GCL2 documents replies only for queries and errors: a silent gauge must not time out
    the unit or zero command, and an echoing one must not shift the readings."""
    with Mark10Simulator(cell, acknowledges=acknowledges) as sim:
        t0 = time.monotonic()
        gauge = Mark10Gauge(sim.address, timeout_s=TIMEOUT_S, area_cm2=AREA_CM2)
        try:
            assert time.monotonic() - t0 < TIMEOUT_S  # no wait for an undocumented ack
            assert gauge.read_force() == (785.0, "N")
            gauge.zero()
            assert gauge.read_force() == (0.0, "N")
            gauge.set_unit("kN")
            assert gauge.read_force() == (0.0, "KN")
        finally:
            gauge.close()


def test_unit_command_answered_by_an_error_code_is_reported():
    from cellbench.drivers.replay import replay

    pairs = [(b"N\r", None), (b"OZ\r", b"*10\r\n")]
    with replay(Mark10Gauge, pairs) as gauge, pytest.raises(InstrumentCommandError, match=r"\*10"):
        gauge.set_unit("ozF")


def test_late_echo_is_not_read_as_the_reading():
    """An echo arriving after the window (here: together with the reading) is skipped."""
    from cellbench.drivers.replay import replay

    pairs = [(b"N\r", None), (b"?\r", b"N\r\n785.00 N\r\n")]
    with replay(Mark10Gauge, pairs) as gauge:
        assert gauge.read_force() == (785.0, "N")
