"""Keithley 2450 driver end to end through pyvisa-py to its simulator on the shared cell."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from cellbench.drivers.errors import (
    ArgumentRangeError,
    InstrumentCommandError,
    InstrumentRangeError,
    InstrumentReplyError,
    InstrumentTimeout,
    InterlockError,
)
from cellbench.drivers.keithley2450 import Keithley2450
from cellbench.drivers.registry import open_instrument
from cellbench.drivers.roles import SourceMeter
from cellbench.drivers.sim.cell import SimCell, load_cell_params
from cellbench.drivers.sim.keithley2450_sim import Keithley2450Simulator

SIM = Path(__file__).resolve().parents[1] / "fixtures" / "sim"
TIMEOUT = 0.5


class ManualClock:
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


@pytest.fixture
def cell(clock):
    cell = SimCell(load_cell_params(SIM / "sulfide_full_cell.toml"), clock=clock, seed=3)
    cell.set_soc(0.5)
    return cell


@pytest.fixture
def sim(cell):
    with Keithley2450Simulator(cell, noise_relative=1e-5, seed=7) as server:
        yield server


@pytest.fixture
def smu(sim):
    driver = Keithley2450(sim.address, name="smu1", timeout_s=TIMEOUT)
    sim.received.clear()
    yield driver
    driver.close()


def test_connect_selects_high_impedance_off_state(sim):
    assert sim.off_mode == {"CURR": "NORM", "VOLT": "NORM"}  # the instrument default
    driver = Keithley2450(sim.address, timeout_s=TIMEOUT)
    # :ABOR: a trigger model left running by a logger that died would lock the settings below
    assert sim.received[:5] == [
        "*LANG?",
        "*CLS",
        ":ABOR",
        ":OUTP:CURR:SMOD HIMP",
        ":OUTP:VOLT:SMOD HIMP",
    ]
    assert driver.output_off_mode_current == "HIMP" == driver.output_off_mode_voltage
    assert isinstance(driver, SourceMeter)
    assert driver.identify().startswith("KEITHLEY INSTRUMENTS,MODEL 2450")
    driver.close()


def test_source_current_protocol_and_reading(smu, sim, cell, clock):
    smu.source_current(1e-3, voltage_limit_volt=4.2)
    assert sim.received == [
        ":SOUR:FUNC CURR",
        ':SENS:FUNC "VOLT"',
        ":SENS:VOLT:RANG:AUTO ON",
        ":SOUR:CURR:READ:BACK ON",
        ":SOUR:CURR:VLIM 4.2",
        ":SOUR:CURR 0.001",
        ":OUTP ON",
        ":OUTP?;:SOUR:CURR?;:SOUR:CURR:VLIM?",
        ":SYST:ERR?",
    ]
    assert cell.mode == "current"
    clock.t += 60.0
    sim.received.clear()
    reading = smu.measure()
    assert sim.received == [':READ? "defbuffer1", READ, SOUR, REL;:OUTP?']
    v_true, i_true = cell.measure()
    assert reading.voltage_volt == pytest.approx(v_true, rel=1e-4)
    assert reading.current_ampere == pytest.approx(i_true, rel=1e-4)
    assert reading.timestamp_second == pytest.approx(60.0)


def test_source_voltage_maps_reading_and_source(smu, sim, cell, clock):
    smu.source_voltage(3.9, current_limit_ampere=5e-3)
    assert sim.received[:6] == [
        ":SOUR:FUNC VOLT",
        ':SENS:FUNC "CURR"',
        ":SENS:CURR:RANG:AUTO ON",
        ":SOUR:VOLT:READ:BACK ON",
        ":SOUR:VOLT:ILIM 0.005",
        ":SOUR:VOLT 3.9",
    ]
    clock.t += 10.0
    reading = smu.measure()
    assert reading.voltage_volt == pytest.approx(3.9, rel=1e-4)
    assert reading.current_ampere == pytest.approx(cell.measure()[1], rel=1e-3)
    assert reading.current_ampere > 0  # charging towards 3.9 V from 3.85 V OCV


def test_level_change_at_same_limit_sends_only_the_level(smu, sim, cell):
    smu.source_current(1e-3, voltage_limit_volt=4.2)
    sim.received.clear()
    smu.source_current(-2e-3, voltage_limit_volt=4.2)  # a pulse: one line plus the checks
    assert sim.received == [
        ":SOUR:CURR -0.002",
        ":OUTP?;:SOUR:CURR?;:SOUR:CURR:VLIM?",
        ":SYST:ERR?",
    ]
    assert cell.measure()[1] == pytest.approx(-2e-3)
    sim.received.clear()
    smu.source_current(1e-3, voltage_limit_volt=4.1)  # new limit: full set-up again
    assert ":SOUR:CURR:VLIM 4.1" in sim.received


def test_new_connection_to_a_sourcing_instrument_reads_it_right(smu, sim, cell):
    smu.source_voltage(3.9, current_limit_ampere=5e-3)  # e.g. the logger restarts mid-step
    again = Keithley2450(sim.address, timeout_s=TIMEOUT)
    reading = again.measure()
    assert reading.voltage_volt == pytest.approx(3.9, rel=1e-4)
    assert cell.mode == "voltage"  # connecting does not disturb the running step
    again.close()


def test_function_change_passes_through_relay_open(smu, sim):
    smu.source_current(1e-3, voltage_limit_volt=4.2)
    sim.received.clear()
    smu.source_voltage(3.9, current_limit_ampere=1e-3)
    assert sim.received[0] == ":OUTP OFF"
    smu.source_voltage(3.95, current_limit_ampere=1e-3)  # same function: no off
    assert sim.received.count(":OUTP OFF") == 1


def test_compliance_reported(smu, cell, clock):
    smu.source_current(5e-3, voltage_limit_volt=3.9)  # 5 mA x 85 ohm would exceed 3.9 V
    clock.t += 1.0
    reading = smu.measure()
    assert reading.voltage_volt == pytest.approx(3.9, rel=1e-4)
    assert reading.current_ampere < 5e-3
    assert smu.voltage_limit_tripped


def test_rest_measures_ocv_and_safe_state_opens_the_relay(smu, sim, cell, clock):
    smu.source_current(1e-3, voltage_limit_volt=4.2)
    clock.t += 600.0
    smu.output_off()
    clock.t += 3000.0
    reading = smu.measure()
    assert abs(reading.current_ampere) < 1e-7
    assert reading.voltage_volt == pytest.approx(cell.ground_truth()["ocv_volt"], abs=1e-3)
    smu.safe_state()
    smu.safe_state()  # idempotent
    assert not sim.output and sim.off_mode == {"CURR": "HIMP", "VOLT": "HIMP"}
    assert cell.mode == "open"
    assert math.isnan(smu.measure().voltage_volt)


def test_normal_off_state_would_load_the_cell(cell):
    """Why the driver insists on HIMP: the 2450's NORMal off state holds 0 V on the cell."""
    with Keithley2450Simulator(cell) as raw:
        raw.handle_line(":OUTP OFF")
        assert cell.mode == "voltage"
        raw.handle_line(":OUTP:VOLT:SMOD HIMP")
        assert cell.mode == "open"


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda d: d.source_current(1.2, voltage_limit_volt=5), "source current"),
        (lambda d: d.source_current(1e-3, voltage_limit_volt=250), "voltage limit"),
        (lambda d: d.source_current(0.5, voltage_limit_volt=30), "power envelope"),
        (lambda d: d.source_voltage(-211, current_limit_ampere=1e-3), "source voltage"),
        (lambda d: d.source_voltage(1, current_limit_ampere=0), "current limit"),
        (lambda d: setattr(d, "nplc", 20), "nplc"),
    ],
)
def test_out_of_range_arguments_are_refused_before_the_wire(smu, sim, call, match):
    with pytest.raises(ArgumentRangeError, match=match):
        call(smu)
    assert sim.received == []


def test_over_range_reading(smu, sim):
    smu.source_current(1e-3, voltage_limit_volt=4.2)
    sim.faults.inject("over_range")
    with pytest.raises(InstrumentRangeError, match="overflow"):
        smu.measure()
    assert smu.measure().current_ampere == pytest.approx(1e-3, rel=1e-3)


def test_interlock_trip_during_a_step(smu, sim, cell):
    smu.source_current(1e-3, voltage_limit_volt=4.2)
    sim.faults.inject("interlock")
    with pytest.raises(InterlockError, match="interlock tripped"):
        smu.measure()
    assert cell.mode == "open"
    with pytest.raises(InterlockError, match="did not turn on"):
        smu.source_current(1e-3, voltage_limit_volt=4.2)
    sim.close_interlock()
    smu.source_current(1e-3, voltage_limit_volt=4.2)
    assert cell.mode == "current"


def test_require_interlock_refuses_output(sim):
    sim.trip_interlock()
    driver = Keithley2450(sim.address, timeout_s=TIMEOUT, require_interlock=True)
    with pytest.raises(InterlockError, match="not engaged"):
        driver.source_current(1e-3, voltage_limit_volt=4.2)
    assert ":OUTP ON" not in sim.received
    driver.close()


def test_error_queue_entry_raises_and_leaves_output_off(smu, sim, cell):
    sim.faults.inject("error_queue", on=":SOUR:CURR 0.001", code=-222, message="Data out of range")
    with pytest.raises(InstrumentCommandError, match="-222 Data out of range"):
        smu.source_current(1e-3, voltage_limit_volt=4.2)
    assert not sim.output and cell.mode == "open"


def test_setting_lost_on_the_wire_is_detected(smu, sim, cell):
    # the instrument silently drops the level line: the read-back catches it, the relay opens
    original = sim.execute

    def dropping(message: str):
        return None if message == ":SOUR:CURR 0.002" else original(message)

    sim.execute = dropping
    with pytest.raises(InstrumentCommandError, match=r"not 0\.002"):
        smu.source_current(2e-3, voltage_limit_volt=4.2)
    assert not sim.output and cell.mode == "open"


def test_no_reply_times_out_within_bound(smu, sim):
    smu.source_current(1e-3, voltage_limit_volt=4.2)
    sim.faults.inject("no_reply", on="READ?")
    t0 = time.monotonic()
    with pytest.raises(InstrumentTimeout, match="READ"):
        smu.measure()
    assert time.monotonic() - t0 < TIMEOUT + 0.5
    assert smu.measure().current_ampere == pytest.approx(1e-3, rel=1e-3)


def test_late_reply_within_timeout_succeeds(smu, sim):
    smu.source_current(1e-3, voltage_limit_volt=4.2)
    sim.faults.inject("late_reply", delay_s=TIMEOUT / 4, on="READ?")
    assert smu.measure().current_ampere == pytest.approx(1e-3, rel=1e-3)


def test_garbled_reply(smu, sim):
    smu.source_current(1e-3, voltage_limit_volt=4.2)
    sim.faults.inject("garbled", on="READ?")
    with pytest.raises(InstrumentReplyError):
        smu.measure()
    assert smu.measure().current_ampere == pytest.approx(1e-3, rel=1e-3)


def test_disconnect_is_recovered_by_reconnect(smu, sim):
    smu.source_current(1e-3, voltage_limit_volt=4.2)
    sim.faults.inject("disconnect", delay_s=0.2, on="READ?")
    reading = smu.measure()  # connection lost -> reopened with back-off -> query resent
    assert reading.current_ampere == pytest.approx(1e-3, rel=1e-3)


def test_reading_buffer(smu, clock):
    smu.source_current(2e-3, voltage_limit_volt=4.2)
    smu.clear_buffer()
    readings = []
    for _ in range(3):
        clock.t += 5.0
        readings.append(smu.measure())
    smu.source_voltage(3.9, current_limit_ampere=1e-2)
    readings.append(smu.measure())
    assert smu.buffer_count == 4
    stored = smu.read_buffer()
    for got, want in zip(stored, readings, strict=True):
        assert got.voltage_volt == pytest.approx(want.voltage_volt, rel=1e-6)
        assert got.current_ampere == pytest.approx(want.current_ampere, rel=1e-6)
    assert [r.timestamp_second for r in stored[:3]] == pytest.approx([5.0, 10.0, 15.0])


def test_buffer_keeps_the_newest_readings(smu, sim):
    smu.source_current(1e-3, voltage_limit_volt=4.2)
    smu._write(":TRAC:POIN 10")  # raw SCPI: the driver exposes no resize
    for _ in range(12):
        smu.measure()
    assert smu.buffer_count == 10
    assert len(smu.read_buffer(1, 10)) == 10


def test_registry_opens_the_driver(sim):
    driver = open_instrument("keithley2450", sim.address, name="smu9", timeout_s=TIMEOUT, nplc=0.1)
    assert isinstance(driver, Keithley2450) and driver.name == "smu9"
    assert driver.nplc == pytest.approx(0.1)
    driver.close()


def test_third_party_style_commands(sim, cell):
    """Commands as PyMeasure's Keithley2450 and plain scripts send them work unchanged."""
    import pyvisa

    rm = pyvisa.ResourceManager("@py")
    inst = rm.open_resource(sim.address, read_termination="\n", write_termination="\n")
    inst.timeout = 1000
    try:
        inst.write("*RST")
        inst.write(":SOUR:FUNC CURR")
        inst.write(":SOUR:CURR:VLIM 10")
        inst.write(":SOUR:CURR:LEV 0.0005")
        inst.write(":SOUR:CURR:RANG:AUTO 0;:SOUR:CURR:RANG 0.001")
        inst.write(":OUTP ON")
        assert inst.query("OUTPUT?") == "1"
        assert float(inst.query(":SOUR:CURR?")) == pytest.approx(5e-4)
        assert float(inst.query(":MEAS:VOLT?")) == pytest.approx(cell.measure()[0], rel=1e-3)
        assert inst.query(":SYST:ERR:COUN?") == "0"
    finally:
        inst.close()


def test_pymeasure_keithley2450_driver_runs_unchanged(sim, cell):
    """PyMeasure's own Keithley2450 class (a third-party driver written for the real
    instrument) sources, measures and reads the error queue through the simulator unchanged."""
    pytest.importorskip("pymeasure", reason="pymeasure (the dev extra) is not installed")
    from pymeasure.instruments.keithley import Keithley2450 as PyMeasure2450

    k = PyMeasure2450(
        sim.address,
        visa_library="@py",
        read_termination="\n",
        write_termination="\n",
        timeout=2000,
    )
    try:
        assert "MODEL 2450" in k.id
        k.reset()
        k.apply_current(compliance_voltage=5)
        k.source_current_range = 1e-3
        k.source_current = 5e-4
        k.enable_source()
        k.measure_voltage()
        assert k.voltage == pytest.approx(cell.measure()[0], rel=1e-3)
        k.measure_current()
        assert k.current == pytest.approx(5e-4, rel=1e-3)
        assert cell.mode == "current"
        assert k.check_errors() == []
        # the off state a cell needs, then PyMeasure's shutdown (ramp to 0 A, output off)
        k.write(":OUTP:CURR:SMOD HIMP")
        k.shutdown()
        assert k.check_errors() == []  # a query: the writes before it have been applied
        assert cell.mode == "open"
    finally:
        k.adapter.close()


# --- the instrument's own facts (issue 18): replayed transcripts, no simulator ---------------
def _connect_transcript(*, output: str = "0") -> list[tuple[bytes, bytes | None]]:
    """What connecting sends, with the replies a 2450 in SCPI mode gives (reference manual
    2450-901-01 Rev. D: ``*LANG?`` answers the command set, ``:SYST:ERR?`` ``0,"No error"``)."""
    return [
        (b"*LANG?\n", b"SCPI\n"),
        (b"*CLS\n", None),
        (b":ABOR\n", None),
        (b":OUTP:CURR:SMOD HIMP\n", None),
        (b":OUTP:VOLT:SMOD HIMP\n", None),
        (b":SENS:VOLT:NPLC 1\n", None),
        (b":SENS:CURR:NPLC 1\n", None),
        (b":SYST:ERR?\n", b'0,"No error"\n'),
        (b":OUTP?\n", output.encode() + b"\n"),
    ]


def test_interlock_query_is_the_2450s_and_1_means_asserted():
    """Manual p. 6-33: ``OUTP:INT:TRIP?`` returns 1 if the interlock is asserted (all ranges
    available), 0 if not. There is no ``:OUTP:INT:STAT?`` on the 2450."""
    from cellbench.drivers.replay import replay

    pairs = [*_connect_transcript(), (b":OUTP:INT:TRIP?\n", b"1\n"), (b":OUTP:INT:TRIP?\n", b"0\n")]
    with replay(Keithley2450, pairs) as smu:
        assert smu.interlock_engaged is True  # 1: asserted
        assert smu.interlock_tripped is True  # 0: not asserted


def test_require_interlock_turns_on_only_when_asserted():
    from cellbench.drivers.replay import replay

    pairs = [*_connect_transcript(), (b":OUTP:INT:TRIP?\n", b"0\n")]
    refused = pytest.raises(InterlockError, match="not engaged")
    with replay(Keithley2450, pairs, require_interlock=True) as smu, refused:
        smu.source_current(1e-3, voltage_limit_volt=4.2)


def test_a_2450_in_tsp_mode_is_refused_with_the_fix(sim):
    """In TSP or SCPI2400 mode every native SCPI command fails; the driver checks ``*LANG?``
    first and says what to do instead of failing on the first setting."""
    sim.language = sim.pending_language = "TSP"
    with pytest.raises(InstrumentCommandError, match=r"'TSP'.*\*LANG SCPI.*power cycle"):
        Keithley2450(sim.address, timeout_s=TIMEOUT)
    assert sim.received == ["*LANG?"]  # nothing else was sent to a TSP instrument
    sim.received.clear()
    import pyvisa

    inst = pyvisa.ResourceManager("@py").open_resource(
        sim.address, read_termination="\n", write_termination="\n"
    )
    try:
        inst.write("*LANG SCPI")
        assert inst.query("*LANG?") == "TSP"  # until the power cycle
        sim.power_cycle()
        assert inst.query("*LANG?") == "SCPI"
    finally:
        inst.close()
    Keithley2450(sim.address, timeout_s=TIMEOUT).close()


def test_simulator_rejects_the_2400_interlock_query(smu, sim):
    """The simulator answers the 2450's interlock query only, as the instrument does."""
    assert smu._query(":OUTP:INT:TRIP?") == "1"
    smu._write(":OUTP:INT:STAT?")
    assert smu.errors() == [(-113, "Undefined header;:OUTP:INT:STAT?")]
    sim.trip_interlock()
    assert smu._query(":OUTP:INT:TRIP?") == "0"
