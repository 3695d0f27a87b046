"""Hioki BT3562 battery tester driver against its simulator over a real pty."""

from __future__ import annotations

import time

import numpy as np
import pytest
from serial_sim_support import SLACK_S, TIMEOUT_S, make_cell, raises_within

from cellbench.drivers.errors import (
    ArgumentRangeError,
    InstrumentCommandError,
    InstrumentRangeError,
    InstrumentReplyError,
    InstrumentTimeout,
)
from cellbench.drivers.hioki_bt3562 import HiokiBT3562
from cellbench.drivers.sim.hioki import BT3562Simulator

NOISE = 1e-3


@pytest.fixture
def cell():
    # a full cell (3.7 V class) with a low-resistance electrolyte: tens of ohms at 1 kHz
    return make_cell(
        kind="full",
        ocv_soc=(0.0, 0.5, 1.0),
        ocv_volt=(3.0, 3.7, 4.2),
        bulk_sigma_s_per_cm=1e-2,
        gb_sigma_s_per_cm=0.0,
        interface_asr_ohm_cm2=5.0,
    )


@pytest.fixture
def sim(cell):
    with BT3562Simulator(cell, noise_relative=NOISE) as simulator:
        yield simulator


@pytest.fixture
def tester(sim):
    driver = HiokiBT3562(sim.address, name="acir", timeout_s=TIMEOUT_S, settle_s=0.0)
    yield driver
    driver.close()


def test_identify_and_setup_bytes(tester, sim):
    assert tester.identify() == "HIOKI,BT3562,250654321,V1.10"
    assert tester.model_name == "BT3562"
    assert sim.received[:3] == [b":SYST:HEAD OFF\r\n", b":INIT:CONT OFF\r\n", b"*IDN?\r\n"]


def test_configure_and_read_exact_bytes(tester, sim, cell):
    sim.received.clear()
    tester.configure(resistance_range_ohm=3000, voltage_range_volt=6, sample_rate="FAST")
    reading = tester.read()
    assert sim.received == [
        b":FUNC RV\r\n",
        b":AUT OFF\r\n",
        b":RES:RANG 3000\r\n",
        b":VOLT:RANG 6\r\n",
        b":SAMP:RATE FAST\r\n",
        b"*ESR?\r\n",
        b":READ?\r\n",
    ]
    truth_r = cell.impedance(1000.0)[0].real
    assert reading.resistance_ohm == pytest.approx(truth_r, rel=5 * NOISE)
    assert reading.voltage_volt == pytest.approx(cell.measure()[0], abs=1e-4)
    assert 3.6 < reading.voltage_volt < 3.8


def test_auto_range_reads_resistance_and_voltage(tester, cell):
    tester.configure()
    values = np.array([tester.read_resistance_ohm() for _ in range(5)])
    truth = cell.impedance(1000.0)[0].real
    assert np.all(np.abs(values / truth - 1) < 5 * NOISE)
    assert tester.read_voltage_volt() == pytest.approx(3.7, abs=0.01)


def test_reading_above_the_fixed_range_is_over_range(tester):
    tester.configure(resistance_range_ohm=3e-3)
    with pytest.raises(InstrumentRangeError, match="resistance over range"):
        tester.read()


def test_over_range_fault(tester, sim):
    sim.faults.inject("over_range")
    with pytest.raises(InstrumentRangeError, match=r"resistance over range.*100\.000E\+7"):
        tester.read()
    assert tester.read().resistance_ohm > 0


def test_invalid_arguments_never_reach_the_wire(tester, sim):
    sim.received.clear()
    with pytest.raises(ArgumentRangeError, match="resistance range 5"):
        tester.configure(resistance_range_ohm=5)
    with pytest.raises(ArgumentRangeError, match="voltage range 300"):
        tester.configure(voltage_range_volt=300)  # BT3563 only
    with pytest.raises(ArgumentRangeError, match="sample rate"):
        tester.configure(sample_rate="TURBO")
    assert sim.received == []


def test_rejected_command_is_a_command_error(tester, sim):
    sim.faults.inject("error_queue", on=":SAMP")
    with pytest.raises(InstrumentCommandError, match="command error"):
        tester.configure()


def test_no_reply_and_garbled(tester, sim):
    sim.faults.inject("no_reply", on=":READ?")
    with raises_within(InstrumentTimeout, TIMEOUT_S + SLACK_S):
        tester.read()
    sim.faults.inject("garbled", on=":READ?")
    with raises_within(InstrumentReplyError, TIMEOUT_S + SLACK_S):
        tester.read()
    assert tester.read().voltage_volt > 3


def test_disconnect_recovers(tester, sim):
    sim.faults.inject("disconnect", delay_s=0.2, on=":READ?")
    assert tester.read().voltage_volt > 3
    assert sim.received.count(b":READ?\r\n") == 2


def test_safe_state(tester, sim):
    sim.continuous = True
    tester.safe_state()
    assert sim.continuous is False
    assert sim.received[-2:] == [b":INIT:CONT OFF\r\n", b":INIT:CONT?\r\n"]


def test_late_reply_within_and_past_the_timeout(tester, sim):
    sim.faults.inject("late_reply", delay_s=TIMEOUT_S / 3, on=":READ?")
    assert tester.read().voltage_volt > 3
    sim.faults.inject("late_reply", delay_s=TIMEOUT_S * 1.5, on=":READ?")
    with raises_within(InstrumentTimeout, TIMEOUT_S + SLACK_S, match="READ"):
        tester.read()
    # the late reading arrives while *IDN? waits: it must not be taken as the identity
    assert tester.identify() == "HIOKI,BT3562,250654321,V1.10"


# --- the instrument's own facts (issue 18): manual BT3562A981-09 p. 159 ------------------------
def _connect(model: str = "BT3562") -> list[tuple[bytes, bytes | None]]:
    return [
        (b":SYST:HEAD OFF\r\n", None),
        (b":INIT:CONT OFF\r\n", None),
        (b"*IDN?\r\n", f"HIOKI,{model},0,V1.10\r\n".encode()),
    ]


@pytest.mark.parametrize(
    ("reply", "resistance", "voltage"),
    [
        # the manual's own examples: "_0001.36E-3 -> ____1.36E-3", "-0007.51E+0 -> -___7.51E+0"
        (b"    1.36E-3,-   7.51E+0", 1.36e-3, -7.51),
        (b"  12.3456E-3, 3.71234E+0", 12.3456e-3, 3.71234),
        (b"1.2345E-03,3.81230E+00", 1.2345e-3, 3.8123),  # unpadded: accepted too
    ],
)
def test_padded_replies_as_the_manual_prints_them(reply, resistance, voltage):
    from cellbench.drivers.replay import replay

    pairs = [*_connect(), (b":READ?\r\n", reply + b"\r\n")]
    with replay(HiokiBT3562, pairs) as tester:
        reading = tester.read()
    assert reading.resistance_ohm == pytest.approx(resistance)
    assert reading.voltage_volt == pytest.approx(voltage)


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (b" 10.0000E+8, 3.71234E+0", "resistance over range"),  # 3 mohm range, +OF
        (b"-100.000E+7, 3.71234E+0", "resistance over range"),  # 30 mohm range, -OF
        (b" 1000.00E+6, 3.71234E+0", "resistance over range"),  # 300 mohm range
        (b"  1.2345E+0,-1.00000E+9", "voltage over range"),  # 6 V range, -OF
        (b"+10.0000E+9,+1.00000E+10", "resistance measurement fault"),  # contact check
        (b"  1.2345E+0,+100.000E+8", "voltage measurement fault"),  # 100/300 V range
    ],
)
def test_over_range_and_measurement_fault_markers(reply, match):
    """±OF is the 1E+9 class and a measurement fault the 1E+10 class in every range; neither
    may be taken as a reading (the old driver looked for 9.9999E+37 only)."""
    from cellbench.drivers.replay import replay

    pairs = [*_connect(), (b":READ?\r\n", reply + b"\r\n")]
    with replay(HiokiBT3562, pairs) as tester, pytest.raises(InstrumentRangeError, match=match):
        tester.read()


@pytest.mark.parametrize(
    ("model", "ranges"),
    [
        ("BT3562", (6, 60)),
        ("BT3562-01", (6, 60)),
        ("BT3562A", (6, 60, 100)),
        ("BT3563", (6, 60, 300)),
        ("BT3563-01", (6, 60, 300)),
        ("BT3563A", (6, 60, 300)),
    ],
)
def test_every_model_and_its_voltage_ranges(model, ranges):
    from cellbench.drivers.replay import replay

    with replay(HiokiBT3562, _connect(model)) as tester:
        assert tester.model_name == model
        assert tester.voltage_ranges_volt == ranges
        with pytest.raises(
            ArgumentRangeError, match=f"voltage range 1000 V is not one of the {model}"
        ):
            tester.configure(voltage_range_volt=1000)


def test_unknown_model_is_an_error_not_a_bt3562():
    from cellbench.drivers.replay import replay

    unknown = r"unknown BT356x model 'BT3554'.*BT3563A"
    with (
        pytest.raises(InstrumentCommandError, match=unknown),
        replay(HiokiBT3562, _connect("BT3554")),
    ):
        pass
    named = "unknown BT356x model 'BT9999'"
    pairs = _connect()[:2]
    with (
        pytest.raises(InstrumentCommandError, match=named),
        replay(HiokiBT3562, pairs, model_name="BT9999"),
    ):
        pass


def test_the_first_reading_after_a_settings_change_waits_settle_s(cell):
    with BT3562Simulator(cell, model="BT3562A") as sim:
        tester = HiokiBT3562(sim.address, timeout_s=TIMEOUT_S, settle_s=0.3)
        try:
            tester.configure(resistance_range_ohm=3000, voltage_range_volt=100)
            t0 = time.monotonic()
            assert tester.read().voltage_volt == pytest.approx(3.7, abs=0.01)
            first = time.monotonic() - t0
            t0 = time.monotonic()
            tester.read()
            second = time.monotonic() - t0
        finally:
            tester.close()
    assert first >= 0.25 and second < 0.25
    assert sim.voltage_range == 100


def test_simulator_pads_and_flags_like_the_manual(tester, sim):
    tester.configure(resistance_range_ohm=3000, voltage_range_volt=6)
    raw = tester._query(":READ?")
    r_text, v_text = raw.split(",")
    assert r_text.startswith(" ") and r_text.endswith("E+3") and len(r_text) == 11
    assert v_text.startswith(" ") and v_text.endswith("E+0") and len(v_text) == 11
    sim.faults.inject("measurement_fault")
    with pytest.raises(InstrumentRangeError, match=r"measurement fault.*\+10\.0000E\+9"):
        tester.read()
