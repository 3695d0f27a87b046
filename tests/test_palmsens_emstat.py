"""PalmSens EmStat (MethodSCRIPT) driver against its simulator over a real pty."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from serial_sim_support import SLACK_S, TIMEOUT_S, make_cell, raises_within

from cellbench.drivers.errors import (
    ArgumentRangeError,
    InstrumentCommandError,
    InstrumentConnectionError,
    InstrumentRangeError,
    InstrumentReplyError,
    InstrumentTimeout,
)
from cellbench.drivers.methodscript import (
    decode_value,
    encode_package,
    encode_value,
    parse_package,
    parse_si_literal,
    si_literal,
)
from cellbench.drivers.palmsens_emstat import PalmSensEmStat
from cellbench.drivers.roles import ImpedanceAnalyzer, SourceMeter
from cellbench.drivers.sim.emstat import EmStatSimulator

NOISE = 1e-3


@pytest.fixture
def cell():
    return make_cell()


@pytest.fixture
def sim(cell):
    with EmStatSimulator(cell, noise_relative=NOISE) as simulator:
        yield simulator


@pytest.fixture
def pstat(sim):
    driver = PalmSensEmStat(sim.address, name="ch1", timeout_s=TIMEOUT_S, sample_interval_s=1.0)
    yield driver
    driver.close()


def wait_for(condition, seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


# --- wire format ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "literal"),
    [(0.1, "100m"), (4.2, "4200m"), (-1.5e-3, "-1500u"), (200e3, "200k"), (0.0, "0"), (7, "7")],
)
def test_si_literals(value, literal):
    assert si_literal(value) == literal
    assert parse_si_literal(literal) == pytest.approx(value)


def test_package_round_trip_and_spec_example():
    # 2**27 offset, SI prefix: "8000000 " is zero, "8000001m" is 1 mV
    assert decode_value("8000000 ") == 0.0
    assert decode_value("8000001m") == pytest.approx(1e-3)
    assert decode_value("7FFFFFFu") == pytest.approx(-1e-6)
    for value in (3.71234, -2.5e-4, 1.234e5, -7.7e-12):
        assert decode_value(encode_value(value)) == pytest.approx(value, rel=1e-6)
    package = parse_package(encode_package([("ab", 3.7), ("ba", -1e-3)], status=0x2))
    assert package.get("ab").value == pytest.approx(3.7)
    assert package.get("ba").value == pytest.approx(-1e-3)
    assert package.status == 0x2
    with pytest.raises(ValueError):
        parse_package("Pab12")


# --- identity ------------------------------------------------------------------------------
def test_identify_and_roles(pstat, sim):
    assert pstat.identify() == "es4_hr 1.3 R2024-01-01 SN ES4HR24SIM001"
    assert sim.received == [b"Z\n", b"t\n", b"i\n"]  # abort-and-sync at connection first
    assert isinstance(pstat, SourceMeter) and isinstance(pstat, ImpedanceAnalyzer)


# --- EIS -----------------------------------------------------------------------------------
def test_eis_script_is_pinned(pstat, sim):
    pstat.sweep(1000.0, 10.0, 1, 0.01)
    assert sim.scripts[-1] == [
        "var f",
        "var r",
        "var j",
        "set_pgstat_chan 0",
        "set_pgstat_mode 3",
        "set_max_bandwidth 400k",
        "set_range ba 100m",
        "set_autoranging ba 1n 100m",
        "set_e 0",
        "cell_on",
        "meas_loop_eis f r j 10m 1k 10 3i 0",
        "  pck_start",
        "    pck_add f",
        "    pck_add r",
        "    pck_add j",
        "  pck_end",
        "endloop",
        "on_finished:",
        "  cell_off",
    ]


def test_eis_bytes_on_the_wire(pstat, sim):
    sim.received.clear()
    pstat.sweep(1000.0, 100.0, 1, 0.01)
    assert sim.received[0] == b"e\n"
    assert sim.received[1] == b"var f\n"
    assert sim.received[-1] == b"\n"  # the empty line that ends the script
    assert b"meas_loop_eis f r j 10m 1k 100 2i 0\n" in sim.received


def test_eis_matches_analytic_impedance_within_noise(pstat, cell):
    frame = pstat.sweep(100e3, 0.1, 5, 0.01)
    assert frame.columns == ["frequency_hertz", "z_real_ohm", "z_imag_ohm"]
    assert frame.height == 31
    f = frame["frequency_hertz"].to_numpy()
    assert f[0] == pytest.approx(100e3) and f[-1] == pytest.approx(0.1)
    z = frame["z_real_ohm"].to_numpy() + 1j * frame["z_imag_ohm"].to_numpy()
    truth = cell.impedance(f)
    relative = np.abs(z - truth) / np.abs(truth)
    assert relative.max() < 5 * NOISE
    assert relative.mean() > 0.1 * NOISE


def test_eis_arguments_validated(pstat, sim):
    sim.received.clear()
    with pytest.raises(ArgumentRangeError, match="AC amplitude"):
        pstat.sweep(1e3, 1.0, 5, 1.0)
    with pytest.raises(ArgumentRangeError, match="V rms"):
        pstat.sweep(1e3, 1.0, 5, 0.01, amplitude_unit="A")
    with pytest.raises(ArgumentRangeError, match="stop frequency"):
        pstat.sweep(1e3, 1e6, 5, 0.01)
    assert sim.received == []


def test_overload_is_a_range_error_and_the_script_is_aborted(pstat, sim):
    sim.faults.inject("over_range")
    with pytest.raises(InstrumentRangeError, match="overload"):
        pstat.sweep(1000.0, 1.0, 5, 0.01)
    assert wait_for(lambda: not sim.running)
    assert pstat.sweep(1000.0, 100.0, 1, 0.01).height == 2


def test_rejected_script_is_a_command_error(pstat, sim):
    sim.faults.inject("error_queue")
    with pytest.raises(InstrumentCommandError, match=r"!4004: Line 1, Col 1.*'var f'"):
        pstat.sweep(1000.0, 100.0, 1, 0.01)
    assert pstat.sweep(1000.0, 100.0, 1, 0.01).height == 2


# --- CC / CV steps -------------------------------------------------------------------------
def test_constant_current_step(pstat, sim, cell):
    pstat.identify()
    pstat.source_current(1e-4, voltage_limit_volt=5.0)
    assert sim.scripts[-1][:15] == [
        "var p",
        "var c",
        "set_pgstat_chan 0",
        "set_pgstat_mode 6",  # galvanostatic, as PalmSens's examples and template
        "set_max_bandwidth 40",
        "set_range_minmax ab -5 5",
        "set_range db 100u",
        "set_i 100u",  # a set point before cell_on
        "cell_on",
        "meas_loop_cp p c 100u 1 1M",
        "  pck_start",
        "    pck_add p",
        "    pck_add c",
        "  pck_end",
        "  if p > 5",
    ]
    reading = pstat.measure()
    assert reading.current_ampere == pytest.approx(1e-4, rel=1e-6)
    assert reading.voltage_volt == pytest.approx(cell.measure()[0], rel=1e-3)
    assert pstat.step_running
    identity = pstat.identify()  # cached: asking would abort the step
    assert identity.endswith("SN ES4HR24SIM001") and pstat.step_running
    pstat.output_off()
    assert wait_for(lambda: not sim.running)
    assert cell.mode == "open"
    assert b"Z\n" in sim.received[-3:]


def test_voltage_limit_ends_the_step_within_a_sample(pstat, sim, cell):
    resistance = cell.impedance(1e-3)[0].real
    limit = 0.5 * 1e-4 * resistance  # the first sample already exceeds it
    pstat.source_current(1e-4, voltage_limit_volt=limit)
    assert wait_for(lambda: not pstat.step_running)
    assert cell.mode == "open"  # on_finished: cell_off
    assert pstat.measure().current_ampere == 0.0  # OCV with the cell off


def test_discharge_keeps_running_inside_the_compliance_window(pstat, sim, cell):
    # The engine gives a |V| compliance on discharge too (the largest |V| of the safety
    # window): a cell sitting below it must keep being discharged, not be cut off at once.
    assert abs(cell.measure()[0]) < 5.0  # a symmetric cell near 0 V
    pstat.source_current(-2e-4, voltage_limit_volt=5.0)
    assert "  if p > 5" in sim.scripts[-1] and "  if p < -5" in sim.scripts[-1]
    first = pstat.measure()
    time.sleep(0.3)  # several packages at 1000x
    assert pstat.step_running and sim.running
    assert first.current_ampere == pytest.approx(-2e-4, rel=1e-6)
    assert pstat.measure().current_ampere == pytest.approx(-2e-4, rel=1e-6)
    pstat.safe_state()
    assert wait_for(lambda: not sim.running)


def test_compliance_is_a_magnitude(pstat, sim, cell):
    # |V| above the compliance ends a discharge too (an SMU would clamp there)
    limit = 0.5 * 1e-4 * cell.impedance(1e-3)[0].real  # the first sample is already beyond it
    pstat.source_current(-1e-4, voltage_limit_volt=limit)
    assert wait_for(lambda: not pstat.step_running)
    assert cell.mode == "open"
    sim.received.clear()
    for limit in (0.0, -5.0):  # a signed lower bound is refused, not misread
        with pytest.raises(ArgumentRangeError, match="voltage limit"):
            pstat.source_current(-1e-4, voltage_limit_volt=limit)
    assert sim.received == []


def test_constant_voltage_step(pstat, sim, cell):
    pstat.source_voltage(0.02, current_limit_ampere=1e-3)
    assert "meas_loop_ca p c 20m 1 1M" in sim.scripts[-1]
    reading = pstat.measure()
    assert reading.voltage_volt == pytest.approx(0.02, rel=1e-6)
    assert reading.current_ampere == pytest.approx(cell.measure()[1], rel=1e-2)
    assert reading.current_ampere > 0
    pstat.output_off()
    assert cell.mode == "open"


def test_source_arguments_validated(pstat, sim):
    sim.received.clear()
    with pytest.raises(ArgumentRangeError, match="current 1"):
        pstat.source_current(1.0, voltage_limit_volt=4.2)
    with pytest.raises(ArgumentRangeError, match="voltage limit"):
        pstat.source_current(1e-3, voltage_limit_volt=12)
    with pytest.raises(ArgumentRangeError, match="current limit"):
        pstat.source_voltage(0.1, current_limit_ampere=0.0)
    assert sim.received == []


def test_measure_when_off_is_open_circuit_voltage(pstat, cell):
    reading = pstat.measure()
    assert reading.current_ampere == 0.0
    assert math.isclose(reading.voltage_volt, cell.measure()[0], abs_tol=1e-6)


# --- wire faults ---------------------------------------------------------------------------
def test_lost_acknowledgement_is_an_error_and_aborts_the_script(pstat, sim):
    sim.faults.inject("no_reply", on="e")
    # the script runs anyway: its first output line is not the acknowledgement
    with raises_within(InstrumentReplyError, TIMEOUT_S + SLACK_S, match="acknowledgement"):
        pstat.sweep(1000.0, 0.01, 5, 0.01)  # a long sweep that would otherwise keep running
    assert wait_for(lambda: not sim.running)
    assert pstat.sweep(1000.0, 100.0, 1, 0.01).height == 2


def test_no_reply_times_out(pstat, sim):
    sim.faults.inject("no_reply", on="i")
    with raises_within(InstrumentTimeout, TIMEOUT_S + SLACK_S, match="'i'"):
        pstat.identify()
    assert pstat.identify().endswith("SN ES4HR24SIM001")


def test_garbled_and_late_replies(pstat, sim):
    sim.faults.inject("garbled", on="t")
    with raises_within(InstrumentReplyError, TIMEOUT_S + SLACK_S):
        pstat.identify()
    sim.faults.inject("late_reply", delay_s=0.1, on="i")
    assert pstat.identify().endswith("SN ES4HR24SIM001")


def test_disconnect_recovers(pstat, sim):
    sim.faults.inject("disconnect", delay_s=0.2, on="i")
    assert pstat.identify().endswith("SN ES4HR24SIM001")
    assert sim.received.count(b"i\n") == 2


def test_port_lost_during_a_step_is_reported_and_output_off_recovers(pstat, sim, cell):
    pstat.source_current(1e-4, voltage_limit_volt=5.0)
    assert pstat.measure().current_ampere == pytest.approx(1e-4, rel=1e-6)
    sim.disconnect(0.2)
    with pytest.raises(InstrumentConnectionError):
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # the reader notices within its 50 ms poll
            pstat.measure()
            time.sleep(0.02)
    assert cell.mode == "current"  # the instrument runs its script on its own meanwhile
    pstat.output_off()  # reconnects, aborts the script; on_finished opens the cell
    assert wait_for(lambda: not sim.running)
    assert cell.mode == "open"


def test_a_stalled_step_is_reported_not_papered_over(sim, cell):
    with PalmSensEmStat(sim.address, timeout_s=TIMEOUT_S, sample_interval_s=0.2) as pstat:
        pstat.source_current(1e-4, voltage_limit_volt=5.0)
        assert pstat.measure().current_ampere == pytest.approx(1e-4, rel=1e-6)
        sim.min_package_wall_s = 5.0  # the instrument stops sending
        time.sleep(0.1)
        with raises_within(InstrumentTimeout, TIMEOUT_S + 0.2 + SLACK_S, match="no reading"):
            deadline = time.monotonic() + TIMEOUT_S + 0.2 + SLACK_S
            while time.monotonic() < deadline:
                pstat.measure()
                time.sleep(0.02)
        sim.min_package_wall_s = 0.01
        pstat.output_off()
        assert wait_for(lambda: not sim.running)


# --- PalmSens's own sources (issue 18) ---------------------------------------------------------
def _methodscript_validator():
    """``pypalmsens``'s MethodSCRIPT grammar (PalmSens's ANTLR parser), loaded without the
    package's ``__init__`` (which starts the .NET runtime the grammar does not need)."""
    import importlib.util
    import sys
    import types

    spec = importlib.util.find_spec("pypalmsens")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pypalmsens (the dev extra) is not installed")
    if "pypalmsens" not in sys.modules:
        stub = types.ModuleType("pypalmsens")
        stub.__path__ = list(spec.submodule_search_locations)
        sys.modules["pypalmsens"] = stub
    from pypalmsens._methodscript import validate

    return validate


def _replay_pstat(pairs, **options):
    from cellbench.drivers.replay import replay

    return replay(PalmSensEmStat, [(b"Z\n", b"Z!0006\n"), *pairs], **options)


def test_palmsens_grammar_accepts_every_generated_script():
    validate = _methodscript_validator()
    with _replay_pstat([]) as pstat:
        scripts = {
            "eis": pstat.eis_script((1e5, 0.1), 31, 0.01, 0.0),
            "eis at OCV": pstat.eis_script((200e3, 1e-3), 81, 0.25, -2.5),
            "charge": pstat.cc_script(1e-3, 4.2),
            "discharge": pstat.cc_script(-2.5e-4, 3.0),
            "rest": pstat.cc_script(0.0, 4.2),
            "cv": pstat.cv_script(4.2, 1e-4),
            "cv negative": pstat.cv_script(-0.5, 3e-6),
            "ocp": pstat.ocp_script(),
        }
    for name, lines in scripts.items():
        try:
            validate("\n".join(lines) + "\n")
        except SyntaxError as exc:
            pytest.fail(f"PalmSens's grammar rejects the {name} script: {exc}")
    # the grammar is not a rubber stamp
    with pytest.raises(SyntaxError):
        validate("set_pgstat_mode 6\nmeas_loop_cp p c\nbogus_command 1\n")


def test_galvanostatic_steps_use_mode_6_and_a_db_range_with_a_set_point():
    """PalmSens's battery-cycling template and galvanostatic examples: ``set_pgstat_mode 6``
    and ``set_range db``; ``cell_on`` comes after the set point (``set_i`` / ``set_e``)."""
    with _replay_pstat([]) as pstat:
        cc = pstat.cc_script(-1e-3, 4.2)
        cv = pstat.cv_script(3.9, 1e-4)
    assert "set_pgstat_mode 6" in cc and "set_range db 1m" in cc
    assert not any(line.startswith("set_range ba") for line in cc)
    assert cc.index("set_i -1m") < cc.index("cell_on")
    assert cv.index("set_e 3900m") < cv.index("cell_on")


def test_vendor_example_package_decodes_to_the_stated_values():
    """``Example_Python/README.adoc``: ``Pda84E63DAn;ba82AB973f,14,284`` is "Applied potential =
    0.005137 V, WE current = 2.8e-09 A, STATUS: UNDERLOAD, CR: 25 uA (High speed)"."""
    from cellbench.drivers.methodscript import STATUS_UNDERLOAD

    package = parse_package("Pda84E63DAn;ba82AB973f,14,284")
    potential, current = package.get("da"), package.get("ba")
    assert potential.value == pytest.approx(0.005137, abs=5e-7)
    assert current.value == pytest.approx(2.8e-9, abs=5e-11)
    assert current.status == STATUS_UNDERLOAD
    assert current.current_range == 0x84  # 132: "25 uA (High speed)" in PalmSens's table


def test_vendor_lsv_transcript_runs_through_the_driver():
    """The LSV output printed in PalmSens's README (10 kOhm dummy cell), byte for byte: the
    ``e`` acknowledgement shares its line with the loop's ``M0000``."""
    script = ["var c", "var p", "set_pgstat_mode 2", "cell_on",
              "meas_loop_lsv p c -500m 500m 10m 1", "  pck_start", "    pck_add p",
              "    pck_add c", "  pck_end", "endloop", "on_finished:", "  cell_off"]  # fmt: skip
    output = (
        b"eM0000\n"
        b"Pda7F85F3Fu;ba48D503Dp,10,288\n"
        b"Pda7F9234Bu;ba4E2C324p,10,288\n"
        b"Pda806EC24u;baAE16C6Dp,10,288\n"
        b"Pda807B031u;baB360495p,10,288\n"
        b"*\n"
        b"\n"
    )
    pairs = [(b"e\n", None), *((f"{line}\n".encode(), None) for line in script), (b"\n", output)]
    with _replay_pstat(pairs) as pstat:
        packages = pstat.run_script(script)
    potentials = [p.get("da").value for p in packages]
    currents = [p.get("ba").value for p in packages]
    assert potentials == pytest.approx(
        [(int(h, 16) - 2**27) * 1e-6 for h in ("7F85F3F", "7F9234B", "806EC24", "807B031")]
    )
    assert potentials[0] == pytest.approx(-0.4999, abs=1e-4)
    # 10 kOhm: I = E / R within the dummy cell's tolerance and the instrument's offset
    assert currents == pytest.approx([e / 10e3 for e in potentials], rel=0.2, abs=2e-6)


def test_step_readings_come_from_da_and_db_packages(pstat, sim, cell):
    """Potentiostatic loops report the applied potential as ``da``, galvanostatic ones the
    applied current as ``db``: readings must come from them (not only from ab/ba)."""
    pstat.source_voltage(float(cell.measure()[0]), current_limit_ampere=1e-2)
    reading = pstat.measure()
    assert reading.voltage_volt == pytest.approx(float(cell.measure()[0]), abs=1e-6)
    pstat.source_current(2e-4, voltage_limit_volt=5.0)
    assert pstat.measure().current_ampere == pytest.approx(2e-4, rel=1e-6)
    pstat.output_off()
    assert sim.loop_setups[0] == ("meas_loop_ca", 2, "set_e")
    assert sim.loop_setups[1] == ("meas_loop_cp", 6, "set_i")


def test_default_baud_rate_is_the_emstat4s(sim):
    """921600 for EmStat4 and Nexus, 230400 for the EmStat Pico (PalmSens's README)."""
    driver = PalmSensEmStat(sim.address, timeout_s=TIMEOUT_S)
    try:
        assert driver.transport.baud_rate == 921600
    finally:
        driver.close()
    pico = PalmSensEmStat(sim.address, timeout_s=TIMEOUT_S, baud_rate=230400)
    try:
        assert pico.transport.baud_rate == 230400
    finally:
        pico.close()
