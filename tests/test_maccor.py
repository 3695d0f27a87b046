"""Maccor MacNet: the driver and the simulator on loopback, pymacnet's client against the
simulator, the channel's own safety limits, faults, and a protocol run end to end."""

from __future__ import annotations

import json
import socket
import struct
import time
from pathlib import Path

import pytest

from cellbench.core.clock import ScaledClock
from cellbench.daq.session import prepare
from cellbench.drivers.errors import (
    ArgumentRangeError,
    InstrumentConnectionError,
    InstrumentTimeout,
    InterlockError,
)
from cellbench.drivers.maccor import MaccorChannel
from cellbench.drivers.sim.cell import SimCell, load_cell_params
from cellbench.drivers.sim.maccor_sim import MaccorSimulator
from cellbench.drivers.transport import json_object_end

FX = Path(__file__).resolve().parents[1] / "fixtures"
PROCEDURE = {
    "charge_current_ampere": 1e-3,
    "charge_voltage_volt": 4.2,
    "discharge_current_ampere": 1e-3,
    "discharge_voltage_volt": 3.0,
    "cycles": 2,
}


@pytest.fixture
def sim():
    clock = ScaledClock(200.0)
    cell = SimCell(load_cell_params(FX / "sim" / "sulfide_full_cell.toml"), clock=clock)
    with MaccorSimulator(cell, channels=8, procedures={"FORM": PROCEDURE}) as simulator:
        yield simulator


def _port(address: str) -> int:
    return int(address.split("::")[2])


def test_json_framing_finds_whole_objects_only():
    assert json_object_end(bytearray(b'{"a": "}{", "b": {"c": 1}}{"x"')) == 26
    assert json_object_end(bytearray(b'{"a": {"b": 1}')) is None
    assert json_object_end(bytearray(b'noise {"a": "\\"}"}')) == 18


def test_status_and_direct_control_on_the_wire(sim):
    ch = MaccorChannel(sim.address, name="m3", channel=3)
    try:
        assert ch.identify() == "Maccor MacNet channel 3 (Available)"
        ch.program_safety_limits(
            voltage_min_volt=2.5, voltage_max_volt=4.35, current_max_ampere=0.01
        )
        ch.source_current(2e-3, voltage_limit_volt=4.2)
        time.sleep(0.05)
        r = ch.measure()
        assert r.current_ampere == pytest.approx(2e-3)
        assert ch.status().running
        ch.source_current(-1e-3, voltage_limit_volt=4.35)
        time.sleep(0.05)
        assert ch.measure().current_ampere == pytest.approx(-1e-3)
        ch.output_off()
        assert ch.measure().current_ampere == 0.0
    finally:
        ch.close()
    # the messages as MacNet wants them: JSON-RPC, channel numbered from 0
    sent = [(m["params"]["FClass"], m["params"]["FNum"]) for m in sim.messages]
    assert (6, 10) in sent and (6, 7) in sent and (6, 8) in sent and (6, 5) in sent
    assert all(m["params"]["Chan"] == 3 for m in sim.messages)
    assert all(m["jsonrpc"] == "2.0" and m["method"] == "MacNet" for m in sim.messages)
    start = next(m for m in sim.messages if m["params"]["FNum"] == 7 and m["params"]["FClass"] == 6)
    assert start["params"]["ChMode"] == "C" and start["params"]["Current"] == 0.0
    # rest went to the binary port, never as ChMode R over JSON
    assert (6, 8, 3, "R") in sim.binary_messages
    assert not any(m["params"].get("ChMode") == "R" for m in sim.messages)
    assert sim.channels[3].state == "idle"  # reset on close: the channel is free again


def test_channel_limits_stop_a_channel_whose_logger_died(sim):
    """The protocol's limits, programmed into the channel, stop it with nobody polling."""
    ch = MaccorChannel(sim.address, channel=1)
    ch.program_safety_limits(voltage_min_volt=2.5, voltage_max_volt=3.6, current_max_ampere=0.01)
    ch.set_output("C", 8e-3, 4.5)  # would charge to 4.5 V; the channel's limit is 3.6 V
    ch.transport.close()  # the logger dies: no more commands
    ch.binary.close()
    deadline = time.monotonic() + 20
    while sim.channels[1].state != "faulted" and time.monotonic() < deadline:
        time.sleep(0.02)
    channel = sim.channels[1]
    assert channel.state == "faulted", "the channel never stopped itself"
    assert "above the channel limit 3.6 V" in channel.fault_reason
    assert max(r.voltage_volt for r in channel.records) < 3.6 + 0.05
    again = MaccorChannel(sim.address, channel=1)
    with pytest.raises(InterlockError, match="Suspended"):
        again.measure()
    again.close()


def test_protocol_without_limits_is_refused_and_current_over_limit(sim):
    ch = MaccorChannel(sim.address, channel=2)
    with pytest.raises(ArgumentRangeError, match="voltage_min, current_max"):
        ch.program_safety_limits(voltage_min_volt=None, voltage_max_volt=4.2,
                                 current_max_ampere=None)  # fmt: skip
    ch.program_safety_limits(voltage_min_volt=2.5, voltage_max_volt=4.3, current_max_ampere=1e-3)
    with pytest.raises(ArgumentRangeError, match="ISafeChg"):
        ch.source_current(5e-3, voltage_limit_volt=4.2)
    ch.close()


def test_faults_no_reply_disconnect_and_a_faulty_channel(sim):
    ch = MaccorChannel(sim.address, channel=0, timeout_s=0.3)
    sim.faults.inject("no_reply")
    with pytest.raises(InstrumentTimeout):
        ch.status()
    assert ch.status().stat == 0  # the late reply never mixes with the next one
    sim.faults.inject("disconnect", delay_s=0.2)
    assert ch.status().stat == 0  # the dropped connection is reopened (with back-off)
    assert ch.transport.reconnects == 1
    assert sim.faults.history[-1][:1] == ("disconnect",)
    sim.faults.inject("disconnect", delay_s=30.0)
    ch.transport.reconnect_attempts = 2
    with pytest.raises(InstrumentConnectionError, match="could not reconnect"):
        ch.status()
    sim._json.disconnect(0.0)  # the Maccor PC is back
    ch.transport.reconnect()
    sim.faults.inject("interlock", on='"Chan":0')
    with pytest.raises(InterlockError, match="Problem"):
        ch.measure()
    ch.close()


def test_monitor_control_never_touches_the_channel(sim):
    runner = MaccorChannel(sim.address, channel=4)
    runner.start_procedure("FORM")
    watcher = MaccorChannel(sim.address, channel=4, control="monitor")
    assert watcher.binary is None
    watcher.safe_state()
    watcher.close()
    assert sim.channels[4].state == "schedule"
    with pytest.raises(Exception, match="monitored only"):
        watcher.output_off()
    runner.close()


def test_pymacnet_maccor_interface_against_the_simulator(sim):
    """pymacnet 0.0.2's unchanged MaccorInterface: status, a procedure, direct control."""
    interface = pytest.importorskip("pymacnet.MaccorInterface")
    config = {
        "channel": 2,  # pymacnet counts from 1: MacNet channel 1
        "test_name": "",
        "test_procedure": "FORM",
        "v_max_safety_limit_v": 4.4,
        "v_min_safety_limit_v": 2.5,
        "i_max_safety_limit_a": 0.01,
        "i_min_safety_limit_a": 0.01,
        "v_max_v": 4.2,
        "v_min_v": 3.0,
        "c_rate_ah": 0.002,
        "data_record_time_s": 1,
        "data_record_voltage_delta_vbys": 0,
        "data_record_current_delta_abys": 0,
        "server_ip": "127.0.0.1",
        "json_server_port": _port(sim.address),
        "tcp_server_port": sim.binary_port,
    }
    mi = interface.MaccorInterface(config)
    assert mi.start()
    status = mi.read_status()
    assert status["Stat"] == 0 and status["Chan"] == 2  # pymacnet adds 1 back
    assert mi.start_test_with_procedure()
    assert sim.channels[1].state == "schedule"
    assert mi.read_status()["Stat"] == 2
    assert mi.reset_channel()
    assert mi.start_test_with_direct_control()
    assert sim.channels[1].limits == {"vmax": 4.4, "vmin": 2.5, "ichg": 0.01, "idis": 0.01}
    assert mi.set_direct_mode_output(0.002, 4.2)
    time.sleep(0.05)
    assert mi.read_status()["Current"] == pytest.approx(0.002)
    assert mi.set_direct_mode_output(-0.001)
    status = mi.read_status()  # discharging; held at v_min_v = 3.0 V once there
    assert -0.001 - 1e-9 <= status["Current"] < 0 and status["Voltage"] >= 3.0 - 1e-3
    assert mi.set_direct_mode_output(0)  # rest: over the binary port
    assert mi.read_status()["Current"] == 0.0
    assert sim.binary_messages[-1] == (6, 8, 1, "R")
    assert mi.set_channel_variable(3, 1.5)


def test_binary_rest_packet_layout(sim):
    """The rest packet as pymacnet packs it, sent by hand: accepted only in direct mode."""
    with socket.create_connection(("127.0.0.1", sim.binary_port), timeout=2) as s:
        s.sendall(struct.pack("<HHHHffffBB", 6, 8, 5, 18, 0, 0, 0, 0, 4, ord("R")))
        assert struct.unpack("<HHHH", s.recv(64)) == (6, 8, 5, 4)  # direct mode not active


def test_demo_cycling_on_maccor_agrees_with_the_cell(tmp_path, capsys):
    """The demo's cycling part in direct control, end to end; analyze cycling of the run is
    within 1 % of the charge the simulated cell really took and gave."""
    session = prepare(
        FX / "protocols" / "demo_cycling.toml",
        FX / "stations" / "maccor_station.toml",
        tmp_path,
        time_scale=20000.0,
        options={"max_loop_iterations": 2},
    )
    try:
        status = session.engine.run()
        truth = session.bench.simulators["maccor1"].truth(0)
    finally:
        session.close()
    assert status == "completed"
    from cellbench.cli.main import main

    capsys.readouterr()
    assert main(["analyze", "cycling", str(session.engine.run_path), "--json"]) == 0
    cycles = json.loads(capsys.readouterr().out)
    assert len(cycles) == 2
    # the cell's truth per cycle: charge phases (CC then CV) until the next discharge
    per_cycle: list[list[float]] = []
    last = ""
    for t in truth:
        if t["kind"] == "C" and (last == "D" or not per_cycle):
            per_cycle.append([0.0, 0.0])
        if t["kind"] == "C":
            per_cycle[-1][0] += t["charge_ampere_hour"]
        elif t["kind"] == "D":
            per_cycle[-1][1] -= t["charge_ampere_hour"]
        last = t["kind"] if t["kind"] in "CD" else last
    assert len(per_cycle) == 2
    for cycle, (charged, discharged) in zip(cycles, per_cycle, strict=True):
        assert cycle["charge_capacity_ampere_hour"] == pytest.approx(charged, rel=0.01)
        assert cycle["discharge_capacity_ampere_hour"] == pytest.approx(discharged, rel=0.01)
        assert cycle["discharge_capacity_ampere_hour"] > 1.5e-3  # a real cycle of a 2 mAh cell


def test_direct_mode_watchdog_and_the_drivers_keep_alive():
    """With MacNet's direct-mode watchdog set, the driver re-sends the output while it is alive
    (refresh_s) and the channel suspends itself once the logger stops talking."""
    clock = ScaledClock(50.0)
    cell = SimCell(load_cell_params(FX / "sim" / "sulfide_full_cell.toml"), clock=clock)
    with MaccorSimulator(cell, channels=2, direct_watchdog_s=0.4) as sim:
        ch = MaccorChannel(sim.address, channel=0, refresh_s=0.1)
        ch.program_safety_limits(voltage_min_volt=2.5, voltage_max_volt=4.3,
                                 current_max_ampere=0.01)  # fmt: skip
        ch.source_current(1e-3, voltage_limit_volt=4.2)
        until = time.monotonic() + 1.2  # three watchdog periods, alive
        while time.monotonic() < until:
            assert ch.measure().current_ampere == pytest.approx(1e-3)
            time.sleep(0.05)
        assert sim.channels[0].state == "direct"
        time.sleep(0.8)  # the logger is gone
        assert sim.channels[0].state == "faulted"
        assert "watchdog" in sim.channels[0].fault_reason
        with pytest.raises(InterlockError, match="Suspended"):
            ch.measure()
        ch.close()


def test_a_start_whose_reply_is_lost_is_not_sent_twice(sim):
    """(6, 7) reaches the Maccor, the connection drops before its reply: the driver does not
    start a second test; the retry (as the engine's link makes it) finds its own test running."""
    ch = MaccorChannel(sim.address, channel=6, timeout_s=0.5)
    ch.program_safety_limits(voltage_min_volt=2.5, voltage_max_volt=4.3, current_max_ampere=0.01)
    sim.faults.inject("no_reply", on='"FNum":7,"Chan":6,"TestName"')
    with pytest.raises(InstrumentTimeout):
        ch.source_current(1e-3, voltage_limit_volt=4.2)
    assert sim.channels[6].state == "direct"  # it did start
    ch.source_current(1e-3, voltage_limit_volt=4.2)  # the retry
    starts = [m for m in sim.messages if (m["params"]["FClass"], m["params"]["FNum"]) == (6, 7)]
    assert len(starts) == 1
    assert ch.measure().current_ampere == pytest.approx(1e-3)
    ch.close()
