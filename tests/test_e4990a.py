"""Keysight E4990A driver end to end through pyvisa-py to its simulator on the shared cell."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from cellbench.core.clock import ScaledClock
from cellbench.drivers.e4990a import KeysightE4990A, log_points
from cellbench.drivers.errors import (
    ArgumentRangeError,
    InstrumentCommandError,
    InstrumentRangeError,
    InstrumentReplyError,
    InstrumentTimeout,
)
from cellbench.drivers.roles import ImpedanceAnalyzer
from cellbench.drivers.sim.cell import SimCell, load_cell_params
from cellbench.drivers.sim.e4990a_sim import E4990ASimulator

SIM = Path(__file__).resolve().parents[1] / "fixtures" / "sim"
TIMEOUT = 0.5
NOISE = 2e-3


@pytest.fixture
def cell():
    return SimCell(load_cell_params(SIM / "llzo_symmetric.toml"), clock=ScaledClock(1.0))


@pytest.fixture
def sim(cell):
    # sweep time scaled down 20x so that a 20 Hz start takes ~30 ms of wall time
    with E4990ASimulator(cell, noise_relative=NOISE, seed=11, sweep_time_factor=0.05) as server:
        yield server


@pytest.fixture
def eis(sim):
    driver = KeysightE4990A(sim.address, name="eis1", timeout_s=TIMEOUT)
    sim.received.clear()
    yield driver
    driver.close()


def _complex(frame):
    return frame["z_real_ohm"].to_numpy() + 1j * frame["z_imag_ohm"].to_numpy()


def test_connect_configures_r_and_x_traces(sim):
    driver = KeysightE4990A(sim.address, timeout_s=TIMEOUT)
    assert sim.received[:12] == [
        "*CLS",
        ":FORM:DATA ASC",
        ":TRIG:SOUR BUS",
        ":INIT1:CONT ON",
        ":CALC1:PAR:COUN 2",
        ":CALC1:PAR1:DEF R",
        ":CALC1:PAR1:SEL",
        ":CALC1:SEL:FORM REAL",
        ":CALC1:PAR2:DEF X",
        ":CALC1:PAR2:SEL",
        ":CALC1:SEL:FORM REAL",
        ":SENS1:APER:TIME 1",
    ]
    assert sim.definitions[1] == "R" and sim.definitions[2] == "X"
    assert isinstance(driver, ImpedanceAnalyzer)
    assert driver.identify().startswith("Keysight Technologies,E4990A")
    driver.close()


def test_sweep_protocol(eis, sim):
    frame = eis.sweep(100.0, 1e7, 5, 0.05)
    assert frame.height == log_points(100.0, 1e7, 5) == 26
    assert sim.received == [
        ":SENS1:SWE:TYPE LOG",
        ":SENS1:FREQ:STAR 100",
        ":SENS1:FREQ:STOP 10000000",
        ":SENS1:SWE:POIN 26",
        ":SOUR1:MODE VOLT",
        ":SOUR1:VOLT 0.05",
        ":SOUR1:BIAS:STAT OFF",
        ":SYST:ERR?",
        ":TRIG:SING",
        "*OPC?",
        ":CALC1:PAR1:SEL",
        ":CALC1:SEL:DATA:FDAT?",
        ":CALC1:PAR2:SEL",
        ":CALC1:SEL:DATA:FDAT?",
        ":SENS1:FREQ:DATA?",
    ]
    assert sim.sweeps == 1


def test_sweep_matches_analytic_impedance_within_noise(eis, cell):
    frame = eis.sweep(20.0, 1e8, 10, 0.1)
    f = frame["frequency_hertz"].to_numpy()
    np.testing.assert_allclose(f, np.geomspace(20.0, 1e8, f.size), rtol=1e-9)
    truth = cell.impedance(f)
    error = (_complex(frame) - truth) / np.abs(truth)
    # real and imaginary errors are N(0, NOISE): bounded at 5 sigma, spread near NOISE
    assert np.max(np.abs(error.real)) < 5 * NOISE and np.max(np.abs(error.imag)) < 5 * NOISE
    spread = np.std(np.concatenate([error.real, error.imag]))
    assert 0.7 * NOISE < spread < 1.3 * NOISE
    # the spectrum shows the pellet: DC limit at the total resistance, bulk arc at MHz
    gt = cell.ground_truth()
    assert frame["z_real_ohm"][0] == pytest.approx(gt["dc_resistance_ohm"], rel=0.01)


def test_descending_sweep_and_current_amplitude(eis, sim):
    frame = eis.sweep(1e6, 1e3, 4, 1e-3, amplitude_unit="A")
    f = frame["frequency_hertz"].to_numpy()
    assert f[0] == pytest.approx(1e6) and f[-1] == pytest.approx(1e3)
    assert sim.osc_mode == "CURR" and sim.osc_curr == pytest.approx(1e-3)


def test_status_byte_completion_polls_with_bounded_sleeps(sim, cell):
    driver = KeysightE4990A(sim.address, timeout_s=TIMEOUT, completion="stb", poll_interval_s=0.01)
    sim.received.clear()
    frame = driver.sweep(20.0, 1e6, 5, 0.1)
    assert frame.height == log_points(20.0, 1e6, 5)
    sent = sim.received
    assert sent[sent.index(":TRIG:SING") - 2 : sent.index(":TRIG:SING") + 2] == [
        "*ESE 1",
        "*CLS",
        ":TRIG:SING",
        "*OPC",
    ]
    polls = sent.count("*STB?")
    assert 1 <= polls < 200  # sleeps between polls, never a tight loop
    assert "*ESR?" in sent
    driver.close()


def test_sweep_that_never_completes_times_out(sim, cell):
    sim.sweep_time_factor = 1e4  # the simulated sweep takes far longer than the bound
    driver = KeysightE4990A(sim.address, timeout_s=0.3)
    t0 = time.monotonic()
    with pytest.raises(InstrumentTimeout, match=r"\*OPC\?"):
        driver.sweep(1e5, 1e6, 5, 0.1)  # expected ~ 0.03 s -> bound ~ 0.33 s
    assert time.monotonic() - t0 < 0.3 + 0.2 + 1.0
    driver.close()


def test_bias_and_safe_state(eis, sim, cell):
    eis.sweep(1e3, 1e5, 2, 0.1, dc_bias_volt=0.01)
    assert sim.bias_on and sim.bias_volt == pytest.approx(0.01)
    assert cell.mode == "voltage"
    eis.safe_state()
    eis.safe_state()
    assert not sim.bias_on and cell.mode == "open"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(start_hertz=10.0, stop_hertz=1e6, points_per_decade=5, amplitude=0.1), "start"),
        (dict(start_hertz=20.0, stop_hertz=2e8, points_per_decade=5, amplitude=0.1), "stop"),
        (dict(start_hertz=20.0, stop_hertz=1e6, points_per_decade=5, amplitude=2.0), "oscillator"),
        (
            dict(
                start_hertz=20.0,
                stop_hertz=1e6,
                points_per_decade=5,
                amplitude=0.1,
                dc_bias_volt=50.0,
            ),
            "DC bias",
        ),
        (dict(start_hertz=20.0, stop_hertz=1e8, points_per_decade=300, amplitude=0.1), "1601"),
        (
            dict(
                start_hertz=20.0,
                stop_hertz=1e6,
                points_per_decade=5,
                amplitude=0.1,
                amplitude_unit="W",
            ),
            "amplitude_unit",
        ),
    ],
)
def test_out_of_range_arguments(eis, sim, kwargs, match):
    with pytest.raises(ArgumentRangeError, match=match):
        eis.sweep(**kwargs)
    assert sim.received == []


def test_frequency_option_limits_the_range(sim):
    driver = KeysightE4990A(sim.address, timeout_s=TIMEOUT, max_frequency_hertz=10e6)
    with pytest.raises(ArgumentRangeError, match="stop frequency"):
        driver.sweep(20.0, 20e6, 5, 0.1)
    driver.close()


def test_over_range_points(eis, sim):
    sim.faults.inject("over_range")
    with pytest.raises(InstrumentRangeError, match="over range"):
        eis.sweep(1e3, 1e5, 2, 0.1)


def test_error_queue(eis, sim):
    sim.faults.inject("error_queue", on="POIN", code=-222, message="Data out of range")
    with pytest.raises(InstrumentCommandError, match="-222"):
        eis.sweep(1e3, 1e5, 2, 0.1)


def test_no_reply_to_data_times_out(eis, sim):
    sim.faults.inject("no_reply", on="FREQ:DATA?")
    t0 = time.monotonic()
    with pytest.raises(InstrumentTimeout, match="FREQ:DATA"):
        eis.sweep(1e3, 1e5, 2, 0.1)
    assert time.monotonic() - t0 < TIMEOUT + 1.0
    assert eis.sweep(1e3, 1e5, 2, 0.1).height == 5  # the next sweep is clean


def test_garbled_data_is_a_reply_error(eis, sim):
    sim.faults.inject("garbled", on="FDAT?")
    with pytest.raises(InstrumentReplyError):
        eis.sweep(1e3, 1e5, 2, 0.1)


def test_disconnect_during_sweep_is_recovered(eis, sim):
    sim.faults.inject("disconnect", delay_s=0.2, on="FREQ:DATA?")
    frame = eis.sweep(1e3, 1e5, 2, 0.1)  # reconnects and asks again for the data it lost
    assert frame.height == 5


def test_third_party_style_script(sim, cell):
    """A plain pyvisa script in the Programming Guide's style works against the simulator."""
    import pyvisa

    inst = pyvisa.ResourceManager("@py").open_resource(
        sim.address, read_termination="\n", write_termination="\n"
    )
    inst.timeout = 5000
    try:
        inst.write("*RST")
        inst.write(":DISP:WIND1:TRAC1:Y:AUTO")
        inst.write(":CALC1:PAR1:DEF Z")
        inst.write(":CALC1:PAR2:DEF TZ")
        inst.write(":SENS1:SWE:TYPE LOG")
        inst.write(":SENS1:SWE:POIN 11")
        inst.write(":SENS1:FREQ:STAR 1E3;:SENS1:FREQ:STOP 1E6")
        inst.write(":TRIG:SOUR BUS")
        inst.write(":TRIG:SING")
        assert inst.query("*OPC?") == "+1"  # Keysight signs <NR1>
        inst.write(":CALC1:PAR1:SEL")
        inst.write(":CALC1:SEL:FORM MLIN")
        magnitude = np.array(inst.query(":CALC1:DATA:FDAT?").split(","), dtype=float)[0::2]
        phase = np.array(inst.query(":CALC1:TRAC2:DATA:FDAT?").split(","), dtype=float)[0::2]
        f = np.array(inst.query(":SENS1:FREQ:DATA?").split(","), dtype=float)
        z = cell.impedance(f)
        np.testing.assert_allclose(magnitude, np.abs(z), rtol=6 * NOISE)
        np.testing.assert_allclose(phase, np.degrees(np.angle(z)), atol=0.5)
        assert inst.query(":SYST:ERR?") == '+0,"No error"'
    finally:
        inst.close()


def test_late_data_within_the_timeout_is_accepted(eis, sim):
    sim.faults.inject("late_reply", delay_s=TIMEOUT / 4, on="FREQ:DATA?")
    assert eis.sweep(1e3, 1e5, 2, 0.1).height == 5


def test_data_later_than_the_timeout_is_not_read_as_the_next_reply(eis, sim, cell):
    sim.faults.inject("late_reply", delay_s=TIMEOUT * 1.5, on="FREQ:DATA?")
    t0 = time.monotonic()
    with pytest.raises(InstrumentTimeout, match="FREQ:DATA"):
        eis.sweep(1e3, 1e5, 2, 0.1)
    assert time.monotonic() - t0 < TIMEOUT + 1.0
    # other frequencies: the late 1 kHz..100 kHz data would show if it were taken as this reply
    frame = eis.sweep(100.0, 1000.0, 2, 0.1)
    f = frame["frequency_hertz"].to_numpy()
    assert f == pytest.approx(np.logspace(2, 3, log_points(100.0, 1000.0, 2)))
    z = _complex(frame)
    assert np.abs(z - cell.impedance(f)) / np.abs(z) == pytest.approx(np.zeros(f.size), abs=0.05)


# --- the instrument's own facts (issue 18) -----------------------------------------------------
def _connect_transcript() -> list[tuple[bytes, bytes | None]]:
    """Connecting, with the replies the public E4990A drivers read (signed <NR1>)."""
    lines = [
        "*CLS",
        ":FORM:DATA ASC",
        ":TRIG:SOUR BUS",
        ":INIT1:CONT ON",
        ":CALC1:PAR:COUN 2",
        ":CALC1:PAR1:DEF R",
        ":CALC1:PAR1:SEL",
        ":CALC1:SEL:FORM REAL",
        ":CALC1:PAR2:DEF X",
        ":CALC1:PAR2:SEL",
        ":CALC1:SEL:FORM REAL",
        ":SENS1:APER:TIME 3",
    ]
    return [
        *((f"{line}\n".encode(), None) for line in lines),
        (b":SYST:ERR?\n", b'+0,"No error"\n'),
    ]


def test_measurement_speed_is_aperture_and_signed_replies_are_read():
    """Speed is ``:SENS1:APER:TIME`` (as in every public E4990A driver), ``*OPC?`` answers
    ``+1`` and ``:SYST:ERR?`` ``+0,"No error"``: a two-point sweep replayed byte for byte."""
    from cellbench.drivers.replay import replay

    sweep = [
        ":SENS1:SWE:TYPE LOG",
        ":SENS1:FREQ:STAR 1000",
        ":SENS1:FREQ:STOP 10000",
        ":SENS1:SWE:POIN 2",
        ":SOUR1:MODE VOLT",
        ":SOUR1:VOLT 0.1",
        ":SOUR1:BIAS:STAT OFF",
    ]
    pairs = [
        *_connect_transcript(),
        *((f"{line}\n".encode(), None) for line in sweep),
        (b":SYST:ERR?\n", b'+0,"No error"\n'),
        (b":TRIG:SING\n", None),
        (b"*OPC?\n", b"+1\n"),
        (b":CALC1:PAR1:SEL\n", None),
        (
            b":CALC1:SEL:DATA:FDAT?\n",
            b"+1.00000000000E+002,+0.00000000000E+000,+9.00000000000E+001,+0.00000000000E+000\n",
        ),
        (b":CALC1:PAR2:SEL\n", None),
        (
            b":CALC1:SEL:DATA:FDAT?\n",
            b"-5.00000000000E+001,+0.00000000000E+000,-5.00000000000E+000,+0.00000000000E+000\n",
        ),
        (b":SENS1:FREQ:DATA?\n", b"+1.00000000000E+003,+1.00000000000E+004\n"),
    ]
    with replay(KeysightE4990A, pairs, measurement_speed=3) as eis:
        frame = eis.sweep(1e3, 1e4, 1, 0.1)
    assert frame["z_real_ohm"].to_list() == [100.0, 90.0]
    assert frame["z_imag_ohm"].to_list() == [-50.0, -5.0]


def test_simulator_has_no_if_bandwidth_command(eis):
    """``:SENS1:BAND`` is a network analyzer's command: the simulated E4990A rejects it, as the
    instrument is expected to, while ``:SENS1:APER:TIME`` is kept."""
    eis._write(":SENS1:BAND 3")
    assert eis.errors() == [(-113, "Undefined header;:SENS1:BAND 3")]
    eis.speed = 4
    assert eis.speed == 4
    with pytest.raises(ArgumentRangeError, match="measurement speed 6"):
        eis.speed = 6
