"""Hioki IM3590 driver against its simulator over a real pty (pyserial, and pyvisa ASRL)."""

from __future__ import annotations

import numpy as np
import pytest
import serial
from serial_sim_support import SLACK_S, TIMEOUT_S, make_cell, raises_within

from cellbench.drivers.errors import (
    ArgumentRangeError,
    InstrumentCommandError,
    InstrumentRangeError,
    InstrumentReplyError,
    InstrumentTimeout,
)
from cellbench.drivers.hioki_im3590 import HiokiIM3590, log_frequencies
from cellbench.drivers.roles import ImpedanceAnalyzer
from cellbench.drivers.sim.hioki import IM3590Simulator
from cellbench.drivers.transport import VisaTransport

NOISE = 1e-3


@pytest.fixture
def cell():
    return make_cell()


@pytest.fixture
def sim(cell):
    with IM3590Simulator(cell, noise_relative=NOISE) as simulator:
        yield simulator


@pytest.fixture
def analyzer(sim):
    driver = HiokiIM3590(sim.address, name="eis1", timeout_s=TIMEOUT_S)
    driver.identify()  # a query: the simulator has processed everything sent before it
    yield driver
    driver.close()


def test_identify_and_role(analyzer, sim):
    assert analyzer.identify() == "HIOKI,IM3590,250123456,V2.01"
    assert analyzer.identify() == "HIOKI,IM3590,250123456,V2.01"
    assert isinstance(analyzer, ImpedanceAnalyzer)
    assert sim.received[:3] == [b":HEAD OFF\r\n", b":TRIG EXT\r\n", b"*IDN?\r\n"]


def test_sweep_sends_exact_commands(analyzer, sim):
    sim.received.clear()
    analyzer.sweep(1000.0, 100.0, 1, 0.01, dc_bias_volt=0.1)
    assert sim.received == [
        b":MODE LCR\r\n",
        b":PAR1 Z\r\n",
        b":PAR2 OFF\r\n",
        b":PAR3 PHAS\r\n",
        b":PAR4 OFF\r\n",
        b":MEAS:ITEM 5,0,0\r\n",
        b":LEV V\r\n",
        b":LEV:VOLT 0.01\r\n",
        b":DCB:LEV 0.1\r\n",
        b":DCB ON\r\n",
        b"*ESR?\r\n",
        b":FREQ 1000\r\n",
        b"*TRG\r\n",
        b":MEAS?\r\n",
        b":FREQ 100\r\n",
        b"*TRG\r\n",
        b":MEAS?\r\n",
    ]


def test_constant_current_level_commands(analyzer, sim):
    sim.received.clear()
    analyzer.configure(1e-3, "A")
    assert b":LEV CC\r\n" in sim.received
    assert b":LEV:CCURR 0.001\r\n" in sim.received
    assert sim.level_mode == "CC" and sim.levels["CC"] == pytest.approx(1e-3)


@pytest.mark.parametrize("parameters", ["Z-PHASE", "RS-X"])
def test_sweep_matches_analytic_impedance_within_noise(sim, cell, parameters):
    with HiokiIM3590(sim.address, timeout_s=TIMEOUT_S, parameters=parameters) as analyzer:
        frame = analyzer.sweep(100e3, 0.1, 5, 0.01)
    f = frame["frequency_hertz"].to_numpy()
    np.testing.assert_allclose(f, log_frequencies(100e3, 0.1, 5))
    assert frame.columns == ["frequency_hertz", "z_real_ohm", "z_imag_ohm"]
    z = frame["z_real_ohm"].to_numpy() + 1j * frame["z_imag_ohm"].to_numpy()
    truth = cell.impedance(f)
    relative = np.abs(z - truth) / np.abs(truth)
    # complex noise with sigma NOISE per component: |dz|/|z| is Rayleigh; 5 sigma bound
    assert relative.max() < 5 * NOISE
    assert relative.mean() > 0.1 * NOISE  # the noise is really there (not a copy of the truth)


def test_arguments_are_validated_before_the_wire(analyzer, sim):
    sim.received.clear()
    with pytest.raises(ArgumentRangeError, match="300000"):
        analyzer.sweep(300e3, 1.0, 5, 0.01)
    with pytest.raises(ArgumentRangeError, match="AC amplitude"):
        analyzer.sweep(1e3, 1.0, 5, 10.0)
    with pytest.raises(ArgumentRangeError, match="whole number"):
        analyzer.sweep(1e3, 1.0, 2.5, 0.01)
    with pytest.raises(ArgumentRangeError, match="DC bias"):
        analyzer.sweep(1e3, 1.0, 5, 0.01, dc_bias_volt=3.0)
    with pytest.raises(ArgumentRangeError):
        analyzer.sweep(1e3, 1.0, 5, 0.01, amplitude_unit="W")
    assert sim.received == []


def test_no_reply_times_out_within_bound(analyzer, sim):
    sim.faults.inject("no_reply", on=":MEAS?")
    with raises_within(InstrumentTimeout, TIMEOUT_S + 0.5 + SLACK_S, match="MEAS"):
        analyzer.measure_point(1000.0)
    assert analyzer.measure_point(1000.0) != 0  # the next point is measured normally


def test_late_reply_within_timeout_is_accepted(analyzer, sim, cell):
    sim.faults.inject("late_reply", delay_s=0.1, on=":MEAS?")
    z = analyzer.measure_point(1000.0)
    assert abs(z - cell.impedance(1000.0)[0]) / abs(z) < 5 * NOISE


def test_reply_later_than_timeout_is_discarded_not_misread(analyzer, sim, cell):
    # arrives after the query gave up but within the grace the next command waits for it
    sim.faults.inject("late_reply", delay_s=0.45, on=":MEAS?")
    with raises_within(InstrumentTimeout, TIMEOUT_S + 0.5 + SLACK_S):
        analyzer.measure_point(10e3)
    z = analyzer.measure_point(1.0)  # reads its own reply, not the late 10 kHz one
    assert abs(z - cell.impedance(1.0)[0]) / abs(z) < 5 * NOISE


def test_garbled_reply_is_a_reply_error(analyzer, sim):
    sim.faults.inject("garbled", on=":MEAS?")
    with raises_within(InstrumentReplyError, TIMEOUT_S + SLACK_S):
        analyzer.measure_point(1000.0)


def test_over_range_is_a_range_error(analyzer, sim):
    sim.faults.inject("over_range")
    with pytest.raises(InstrumentRangeError, match="over-range at 1000 Hz"):
        analyzer.sweep(1000.0, 100.0, 1, 0.01)


def test_rejected_command_is_a_command_error(analyzer, sim):
    sim.faults.inject("error_queue", on=":LEV")
    with pytest.raises(InstrumentCommandError, match=r"command error \(\*ESR\? = 32\)"):
        analyzer.configure(0.01)
    analyzer.configure(0.01)  # *ESR? was read and cleared


def test_disconnect_and_reconnect_recovers(analyzer, sim, cell):
    sim.faults.inject("disconnect", delay_s=0.3, on=":MEAS?")
    z = analyzer.measure_point(100.0)  # lost, reopened with back-off, sent again
    assert abs(z - cell.impedance(100.0)[0]) / abs(z) < 5 * NOISE
    assert sim.faults.history == [("disconnect", ":MEAS?")]
    assert sim.received.count(b":MEAS?\r\n") == 2  # the first was lost with the port


def test_safe_state_turns_dc_bias_off(analyzer, sim):
    analyzer.configure(0.01, dc_bias_volt=0.5)
    assert sim.dc_bias_on
    analyzer.safe_state()
    analyzer.safe_state()  # idempotent
    assert not sim.dc_bias_on
    assert sim.received[-2:] == [b":DCB OFF\r\n", b":DCB?\r\n"]


def test_through_pyvisa_asrl(sim, cell):
    transport = VisaTransport(
        f"ASRL{sim.address}::INSTR",
        name="eis1",
        timeout_s=TIMEOUT_S,
        read_termination="\r\n",
        write_termination="\r\n",
    ).open()
    with HiokiIM3590(sim.address, transport=transport) as analyzer:
        assert analyzer.identify().startswith("HIOKI,IM3590")
        frame = analyzer.sweep(1e4, 10.0, 2, 0.01)
    z = frame["z_real_ohm"].to_numpy() + 1j * frame["z_imag_ohm"].to_numpy()
    truth = cell.impedance(frame["frequency_hertz"].to_numpy())
    assert (np.abs(z - truth) / np.abs(truth)).max() < 5 * NOISE


def test_third_party_style_session_with_bare_pyserial(sim, cell):
    """Long-form headers, ;-joined messages and common settings, as other drivers send them."""
    with serial.Serial(sim.address, 9600, timeout=1.0) as port:
        port.write(
            b":SPEEd SLOW;:AVERaging 4;:TRIGger EXTernal;:PARameter3 PHASe;:FREQuency 1E3\r\n"
            b"*TRG;:SPEE?;:AVER?;:FREQ?;:MEASure?\r\n*ESR?\r\n"
        )
        replies = port.readline().decode().strip().split(";")
        esr = port.readline().decode().strip()
    assert replies[:3] == ["SLOW", "4", "1.00000E+03"]
    status, z_abs, phase = (float(v) for v in replies[3].split(","))  # :MEAS:VALid's status
    assert status == 0
    truth = cell.impedance(1000.0)[0]
    assert z_abs == pytest.approx(abs(truth), rel=5 * NOISE)
    assert phase == pytest.approx(np.degrees(np.angle(truth)), abs=0.5)
    assert esr == "0"


# --- the instrument's own facts (issue 18) -----------------------------------------------------
def _connect() -> list[tuple[bytes, bytes | None]]:
    return [(b":HEAD OFF\r\n", None), (b":TRIG EXT\r\n", None)]


@pytest.mark.parametrize(
    "reply",
    [
        # status, values, panel number: the shape Hioki's LCR manuals print for :MEASure?
        # (3504-40: "0,1.23456E-06,0.12345,0" with headers off)
        b"0,1.00000E+02,-3.00000E+01,0",
        b"0,1.00000E+02,-3.00000E+01",  # status only
        b"1.00000E+02,-3.00000E+01",  # values only
    ],
)
def test_measure_reply_with_status_and_panel_fields(reply):
    """``:MEASure?`` returns what ``:MEASure:VALid`` selects (status, judgments, values, panel
    number); each point is triggered with ``*TRG`` in external trigger mode."""
    from cellbench.drivers.replay import replay

    pairs = [
        *_connect(),
        (b":FREQ 1000\r\n", None),
        (b"*TRG\r\n", None),
        (b":MEAS?\r\n", reply + b"\r\n"),
    ]
    with replay(HiokiIM3590, pairs) as analyzer:
        z = analyzer.measure_point(1000.0)
    assert z == pytest.approx(100 * np.exp(-1j * np.radians(30)))


def test_non_zero_measurement_status_is_a_range_error():
    from cellbench.drivers.replay import replay

    pairs = [
        *_connect(),
        (b":FREQ 10\r\n", None),
        (b"*TRG\r\n", None),
        (b":MEAS?\r\n", b"2,1.00000E+02,-3.00000E+01,0\r\n"),
    ]
    with (
        replay(HiokiIM3590, pairs) as analyzer,
        pytest.raises(InstrumentRangeError, match="measurement status 2 at 10 Hz"),
    ):
        analyzer.measure_point(10.0)


def test_configure_selects_the_returned_parameters():
    from cellbench.drivers.replay import replay

    lines = [":MODE LCR", ":PAR1 RS", ":PAR2 OFF", ":PAR3 X", ":PAR4 OFF", ":MEAS:ITEM 0,18,0",
             ":LEV V", ":LEV:VOLT 0.01", ":DCB OFF"]  # fmt: skip
    pairs = [*_connect(), *((f"{c}\r\n".encode(), None) for c in lines), (b"*ESR?\r\n", b"0\r\n")]
    with replay(HiokiIM3590, pairs, parameters="RS-X") as analyzer:
        analyzer.configure(0.01)


def test_internal_trigger_replies_can_predate_the_frequency_change(sim, cell):
    """Why the driver triggers each point itself: free-running, the simulator (like the
    instrument) answers with the measurement that was under way when ``:FREQ`` arrived."""
    with serial.Serial(sim.address, 9600, timeout=1.0) as port:
        port.write(b":TRIG INT;:FREQ 100000;:MEAS?\r\n")
        port.readline()
        port.write(b":FREQ 1;:MEAS?\r\n")
        _, z_abs, _ = (float(v) for v in port.readline().decode().split(","))
    assert abs(z_abs - abs(cell.impedance(100e3)[0])) < abs(z_abs - abs(cell.impedance(1.0)[0]))
