"""Neware BTS: the driver on captured BTS 8.0 replies, aurora-neware's client against the
simulator, protocol -> step file translation (and refusal at the line), runs end to end, and
harvest (a channel running the vendor's own schedule recorded into a normal run)."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cellbench.core.clock import ScaledClock
from cellbench.daq.neware_steps import NewareStepError, protocol_to_step_file
from cellbench.daq.protocol import ProtocolError
from cellbench.daq.run_reader import open_run
from cellbench.daq.session import load_checked, prepare
from cellbench.drivers.errors import InstrumentTimeout, InterlockError
from cellbench.drivers.neware import HEADER, TERMINATION, NewareChannel
from cellbench.drivers.replay import replay
from cellbench.drivers.sim.cell import SimCell, load_cell_params
from cellbench.drivers.sim.neware_sim import NewareSimulator, parse_step_file

FX = Path(__file__).resolve().parents[1] / "fixtures"
END = TERMINATION.encode()

# Replies as a BTS 8.0 server sent them (captured by aurora-neware's authors, one channel kept)
CONNECT = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n<bts version="1.0">\r\n'
    b"  <cmd>connect_resp</cmd>\r\n  <result>ok</result>\r\n</bts>"
)
DEVINFO = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n<bts version="1.0">\r\n'
    b'  <cmd>getdevinfo_resp</cmd>\r\n  <serverip count="1">\r\n'
    b'    <server ip="127.0.0.1" port="3306" />\r\n  </serverip>\r\n'
    b'  <middle count="2">\r\n'
    b'    <channel ip="127.0.0.1" devtype="27" devid="21" subdevid="1" Channelid="1">'
    b"true</channel>\r\n"
    b'    <channel ip="127.0.0.1" devtype="27" devid="21" subdevid="1" Channelid="2">'
    b"false</channel>\r\n"
    b"</middle>\r\n</bts>"
)
INQUIRE = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n<bts version="1.0">\r\n'
    b'  <cmd>inquire_resp</cmd>\r\n  <list count="1">\r\n'
    b'    <inquire dev="27-21-1-2-0" cycle_id="44" step_id="4" step_type="dc" '
    b'workstatus="working" barcode="251203_kigr_gen17_02" current="-0.0003" voltage="4.6947" '
    b'capacity="0.001" energy="0.0047" totaltime="3189199.3" relativetime="12319" '
    b'open_or_close="0" log_code="102000" />\r\n  </list>\r\n</bts>'
)
DOWNLOAD = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n<bts version="1.0">\r\n'
    b"  <cmd>donwload_resp</cmd>\r\n"
    b'  <download devtype="27" devid="21" subdevid="1" chlid="2" testid="143" '
    b'startpos="219576" count="1000" auxid="0" />\r\n  <list count="2">\r\n'
    b'    <data seqid="219576" stepid="24" cycleid="29" steptype="dc" testtime="36070000" '
    b'atime="2025-12-28 22:29:05" volt="3.6780698299408" curr="-0.000295051460852847" '
    b'cap="0.00295628436449786" eng="0.0135611368830335" />\r\n'
    b'    <data seqid="219577" stepid="24" cycleid="29" steptype="dc" testtime="36080000" '
    b'atime="2025-12-28 22:29:15" volt="3.65799260139465" curr="-0.000295052188448608" '
    b'cap="0.00295710395391022" eng="0.0135641349350401" />\r\n  </list>\r\n</bts>'
)


def _sent(body: str) -> bytes:
    return (HEADER + body + "</bts>" + TERMINATION).encode()


def test_driver_reads_the_replies_a_bts_8_server_sends():
    attrs = 'ip="127.0.0.1" devtype="27" devid="21" subdevid="1" chlid="2"'
    pairs = [
        (
            _sent(
                "<cmd>connect</cmd><username>admin</username><password>neware</password>"
                "<type>bfgs</type>"
            ),
            CONNECT + END,
        ),
        (_sent("<cmd>getdevinfo</cmd>"), DEVINFO + END),
        (
            _sent(
                f'<cmd>inquire</cmd><list count = "1"><inquire {attrs} aux="0" barcode="1">'
                "true</inquire></list>"
            ),
            INQUIRE + END,
        ),
        (
            _sent(
                '<cmd>download</cmd><download devtype="27" devid="21" subdevid="1" chlid="2" '
                'auxid="0" testid="0" startpos="219576" count="1000"/>'
            ),
            DOWNLOAD + END,
        ),
    ]
    with replay(NewareChannel, pairs, address="TCPIP::bts::502::SOCKET", pipeline="21-1-2") as ch:
        reading = ch.measure()
        assert (reading.voltage_volt, reading.current_ampere) == (4.6947, -0.0003)
        assert reading.timestamp_second == pytest.approx(3189199.3)
        ch._next_seq = 219576
        rows = ch.download(219576)
        records = [ch._record(r) for r in rows]
    assert [r.cycle for r in records] == [29, 29] and records[0].step == 24
    assert records[1].test_time_second - records[0].test_time_second == pytest.approx(10.0)
    assert records[0].current_ampere == pytest.approx(-0.000295051460852847)


@pytest.fixture
def bts():
    clock = ScaledClock(20000.0)
    cell = SimCell(load_cell_params(FX / "sim" / "sulfide_full_cell.toml"), clock=clock)
    with NewareSimulator(cell, cell_channel="21-1-1") as simulator:
        yield simulator


@pytest.fixture
def step_file(tmp_path):
    protocol, _ = load_checked(FX / "protocols" / "demo_cycling.toml",
                               FX / "stations" / "neware_station.toml")  # fmt: skip
    return protocol_to_step_file(protocol, max_loop_iterations=2).write(tmp_path / "s.xml")


def test_demo_cycling_step_file_structure(step_file):
    """The file has the structure of BTS Client 8 step files, with the protocol's values."""
    config = ET.parse(step_file).getroot().find("config")
    assert config.get("type") == "Step File"
    assert config.find("Whole_Prt/Protect/Main/Volt/Upper").get("Value") == "43500"
    assert config.find("Whole_Prt/Protect/Main/Volt/Lower").get("Value") == "25000"
    assert config.find("Whole_Prt/Record/Main/Time").get("Value") == "20000"  # 20 s, in ms
    info = config.find("Step_Info")
    steps = list(info)
    assert info.get("Num") == str(len(steps)) == "6"
    assert [(s.tag, s.get("Step_ID"), s.get("Step_Type")) for s in steps] == [
        ("Step1", "1", "7"), ("Step2", "2", "4"), ("Step3", "3", "2"),
        ("Step4", "4", "4"), ("Step5", "5", "5"), ("Step6", "6", "6"),
    ]  # fmt: skip
    cccv = {e.tag: e.get("Value") for e in steps[0].find("Limit/Main")}
    assert cccv == {"Curr": "1", "Volt": "42000", "Stop_Curr": "0.2", "Time": "10800000"}
    dis = {e.tag: e.get("Value") for e in steps[2].find("Limit/Main")}
    assert dis == {"Curr": "1", "Stop_Volt": "30000", "Time": "10800000"}
    cycle = {e.tag: e.get("Value") for e in steps[4].find("Limit/Other")}
    assert cycle == {"Start_Step": "1", "Cycle_Count": "2"}
    sim_steps, _, window = parse_step_file(step_file)  # and the simulator reads it back
    assert [s.kind for s in sim_steps] == ["cccv", "rest", "cc", "rest", "cycle", "end"]
    assert sim_steps[2].current_ampere == pytest.approx(-1e-3) and window == (2.5, 4.35)


def test_protocols_bts_cannot_express_are_refused_at_their_line(tmp_path):
    protocol, _ = load_checked(FX / "protocols" / "formation_cycling.toml",
                               FX / "stations" / "maccor_station.toml")  # fmt: skip
    with pytest.raises(NewareStepError, match=r"formation_cycling.toml:32: step 6 \(loop\)"):
        protocol_to_step_file(protocol)
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "bad"\nsample_interval = "10 s"\n[safety]\nvoltage_min = "2.5 V"\n'
        'voltage_max = "4.3 V"\ncurrent_max = "5 mA"\n'
        '[[step]]\ntype = "cc"\ncurrent = "-1 mA"\nrecord_dv = "5 mV"\n'
        'until = { voltage_below = "3 V" }\n'
        '[[step]]\ntype = "gitt"\ncurrent = "1 mA"\npulse = "10 min"\nrest = "1 h"\n'
        'until = { voltage_above = "4.2 V" }\n'
    )
    # checked with the station, before any simulator or instrument is touched
    with pytest.raises(ProtocolError) as err:
        prepare(bad, FX / "stations" / "neware_station.toml", tmp_path / "runs")
    text = str(err.value)
    assert "bad.toml:7: step 0 (cc): record_dv cannot be written" in text
    assert "bad.toml:12: step 1 (gitt): a gitt step has no BTS step type" in text
    assert not (tmp_path / "runs").exists()


def test_aurora_neware_client_against_the_simulator(bts, step_file):
    """aurora-neware's unchanged NewareAPI: device info, status, start with a step file path,
    inquire, download, stop."""
    api_module = pytest.importorskip("aurora_neware")
    port = int(bts.address.split("::")[2])
    with api_module.NewareAPI("127.0.0.1", port) as api:
        assert len(api.channel_map) == 16 and "21-2-8" in api.channel_map
        assert api.getchlstatus("21-1-1")["21-1-1"]["status"] == "finish"
        started = api.start("21-1-1", "cell-A", str(step_file))
        assert started[0]["start"] == "ok"
        assert bts.started_files == [str(step_file)]
        with pytest.raises(ValueError, match="blocked states"):  # working: cannot start again
            api.start("21-1-1", "cell-A", str(step_file))
        status = api.inquire("21-1-1")["21-1-1"]
        assert status["workstatus"] == "working" and status["barcode"] == "cell-A"
        assert status["step_id"] in (1, 2, 3, 4) and isinstance(status["voltage"], float)
        data = api.download("21-1-1", last_n_points=0)
        assert len(data["seqid"]) >= 2 and data["seqid"][0] == 1
        assert set(data) >= {"stepid", "cycleid", "testtime", "volt", "curr", "cap", "eng"}
        assert api.stop("21-1-1")[0]["stop"] == "ok"
        assert api.getchlstatus("21-1-1")["21-1-1"]["status"] == "stop"
        assert api.light("21-1-2")[0]["light"] == "ok"
        assert api.get_testid("21-1-1")["21-1-1"]["test_id"] == 1


def test_faults_no_reply_and_a_channel_in_protection(bts, step_file):
    ch = NewareChannel(bts.address, pipeline="21-1-3", timeout_s=0.3)
    bts.faults.inject("no_reply", on="inquire")
    with pytest.raises(InstrumentTimeout):
        ch.inquire()
    assert ch.channel_status() == "finish"  # the late reply never answers the next command
    ch.start_schedule(step_file)
    bts.faults.inject("interlock", on='chlid="3"')
    with pytest.raises(InterlockError, match="protection"):
        ch.measure()
    assert ch.poll().state == "faulted"
    ch.close()


def _per_cycle(truth: list[dict]) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for t in truth:
        q = t["charge_ampere_hour"]
        pair = out.setdefault(t["cycle"], [0.0, 0.0])
        if t["kind"] == "cccv" and q > 0:
            pair[0] += q
        elif t["kind"] == "cc" and q < 0:
            pair[1] -= q
    return out


def test_demo_cycling_on_neware_agrees_with_the_cell(tmp_path, capsys):
    """The demo's cycling part, translated to a step file and run by the simulated BTS server,
    logged live; analyze cycling of the run is within 1 % of what the cell really did."""
    session = prepare(
        FX / "protocols" / "demo_cycling.toml",
        FX / "stations" / "neware_station.toml",
        tmp_path,
        time_scale=20000.0,
        options={"max_loop_iterations": 2},
    )
    try:
        status = session.engine.run()
        truth = session.bench.simulators["bts1"].truth("21-1-1")
    finally:
        session.close()
    run = session.engine.run_path
    assert status == "completed"
    assert (run / "neware_steps.xml").exists()
    from cellbench.cli.main import main

    capsys.readouterr()
    assert main(["analyze", "cycling", str(run), "--json"]) == 0
    cycles = json.loads(capsys.readouterr().out)
    expected = _per_cycle(truth)
    assert [c["cycle_count"] for c in cycles] == sorted(expected) == [1, 2]
    for cycle in cycles:
        charged, discharged = expected[cycle["cycle_count"]]
        assert cycle["charge_capacity_ampere_hour"] == pytest.approx(charged, rel=0.01)
        assert cycle["discharge_capacity_ampere_hour"] == pytest.approx(discharged, rel=0.01)
        assert discharged > 1.5e-3
    notes = [e for e in open_run(run).read("events").to_dicts() if "cycler step" in e["message"]]
    assert len(notes) == 8  # 4 BTS steps x 2 cycles, each an event


def test_harvest_records_the_vendors_own_schedule(tmp_path, capsys):
    """A monitor-only protocol records a Maccor procedure started on the Maccor PC into a
    normal run (samples with the cycler's cycle numbers, step events) and never commands it."""
    session = prepare(
        FX / "protocols" / "harvest.toml",
        FX / "stations" / "maccor_harvest.toml",
        tmp_path,
        time_scale=20000.0,
    )
    try:
        status = session.engine.run()
        sim = session.bench.simulators["maccor1"]
        commands = {(m["params"]["FClass"], m["params"]["FNum"]) for m in sim.messages}
        truth = sim.truth(0)
    finally:
        session.close()
    assert status == "completed"
    assert commands == {(4, 7)}  # status reads only
    from cellbench.cli.main import main

    capsys.readouterr()
    assert main(["analyze", "cycling", str(session.engine.run_path), "--json"]) == 0
    cycles = json.loads(capsys.readouterr().out)
    assert [c["cycle_count"] for c in cycles] == [1, 2, 3]
    expected = _per_cycle(truth)
    for cycle in cycles[1:]:  # cycle 1 began before the logger attached
        charged, discharged = expected[cycle["cycle_count"]]
        assert cycle["charge_capacity_ampere_hour"] == pytest.approx(charged, rel=0.02)
        assert cycle["discharge_capacity_ampere_hour"] == pytest.approx(discharged, rel=0.02)


def test_monitor_only_protocol_must_not_drive(tmp_path):
    with pytest.raises(Exception, match=r"only monitors its channel"):
        prepare(FX / "protocols" / "demo_cycling.toml", FX / "stations" / "maccor_harvest.toml",
                tmp_path)  # fmt: skip


@pytest.mark.parametrize(
    ("station", "driver"),
    [("maccor_station.toml", "maccor"), ("neware_station.toml", "neware")],
)
def test_sim_serve_prints_addresses_that_answer(station, driver):
    """``cellbench sim serve`` of each cycler station prints an address a driver opens."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "cellbench.cli", "sim", "serve", str(FX / "stations" / station)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        name, shown, address = proc.stdout.readline().strip().split("\t")
        assert (
            name in ("maccor1", "bts1")
            and shown == driver
            and address.startswith("TCPIP::127.0.0.1::")
        )
        if driver == "maccor":
            from cellbench.drivers.maccor import MaccorChannel

            ch = MaccorChannel(address, channel=15)  # a 16-channel cycler, numbered from 0
            assert ch.identify() == "Maccor MacNet channel 15 (Available)"
        else:
            ch = NewareChannel(address, pipeline="21-2-8")
            assert ch.identify() == "Neware BTS channel 21-2-8 (devtype 27)"
        ch.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_dropped_bts_connection_is_reopened_and_logged_in_again(bts):
    ch = NewareChannel(bts.address, pipeline="21-1-4", timeout_s=0.5)
    assert ch.channel_status() == "finish"
    bts.faults.inject("disconnect", delay_s=0.2)
    assert ch.channel_status() == "finish"  # reconnected with back-off, connect sent again
    assert ch.transport.reconnects == 1
    assert bts.commands.count("connect") == 2
    ch.close()


def test_a_pause_request_on_a_bts_channel_is_refused_in_the_run(tmp_path):
    """BTS runs the schedule itself: a pause is recorded as refused and the run goes on."""
    session = prepare(
        FX / "protocols" / "demo_cycling.toml",
        FX / "stations" / "neware_station.toml",
        tmp_path,
        time_scale=20000.0,
        options={"max_loop_iterations": 1},
    )
    try:
        engine = session.engine
        engine.start()
        time.sleep(0.3)
        engine.request_pause("test")
        status = engine.wait(timeout=60)
    finally:
        session.close()
    assert status == "completed"
    events = open_run(engine.run_path).read("events").to_dicts()
    assert any("pause it at the cycler" in e["message"] for e in events)


# Step_Type -> the Limit/Main values a BTS step of that type must carry (BTS Client 8 files)
_REQUIRED = {1: {"Curr"}, 2: {"Curr"}, 3: {"Curr", "Volt"}, 4: {"Time"}, 7: {"Curr", "Volt"},
             19: {"Curr", "Volt"}, 20: {"Curr", "Volt"}}  # fmt: skip


def check_step_file_structure(path: Path) -> None:
    """The structure BTS Client 8 step files have (and the BTS server reads from the path the
    client sends): ``root/config[@type='Step File']`` with Head_Info, Whole_Prt and Step_Info;
    Step1..StepN with Step_ID = N; every value an integer or decimal; cycles pointing back; End
    last."""
    config = ET.parse(path).getroot().find("config")
    assert config is not None and config.get("type") == "Step File"
    assert config.find("Head_Info/Start_Step").get("Value") == "1"
    assert config.find("Whole_Prt/Record/Main/Time") is not None
    info = config.find("Step_Info")
    steps = list(info)
    assert int(info.get("Num")) == len(steps) >= 2
    for n, step in enumerate(steps, start=1):
        assert step.tag == f"Step{n}" and step.get("Step_ID") == str(n)
        code = int(step.get("Step_Type"))
        main = {e.tag: e.get("Value") for e in step.findall("Limit/Main/*")}
        for value in main.values():
            assert float(value) >= 0
        if code == 5:
            other = {e.tag: int(e.get("Value")) for e in step.findall("Limit/Other/*")}
            assert 1 <= other["Start_Step"] < n and other["Cycle_Count"] >= 1
        elif code == 6:
            assert n == len(steps)
        else:
            assert _REQUIRED[code] <= set(main), (n, code, main)
            assert {"Time", "Stop_Volt", "Stop_Curr", "Cap"} & set(main) or code == 4


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (FX / "protocols").glob("*.toml") if p.name != "harvest.toml")
)
def test_every_fixture_protocol_translates_or_is_refused_at_a_line(name, tmp_path):
    from cellbench.daq.protocol import load_protocol
    from cellbench.daq.station import load_station

    cell = load_station(FX / "stations" / "neware_station.toml").cell
    protocol = load_protocol(FX / "protocols" / name, cell=cell)
    try:
        step_file = protocol_to_step_file(protocol)
    except NewareStepError as exc:
        assert exc.problems and all(line > 0 for line, _, _ in exc.problems)
        assert f"{name}:{exc.problems[0][0]}: step " in str(exc)
        return
    path = step_file.write(tmp_path / "steps.xml")
    check_step_file_structure(path)
    steps, _, _ = parse_step_file(path)  # the simulated BTS server runs it
    assert steps[-1].kind == "end"
    assert set(step_file.step_index.values()) <= {s.index for s, _ in protocol.walk()}


def test_a_start_whose_reply_is_lost_is_not_sent_twice(bts, step_file):
    ch = NewareChannel(bts.address, pipeline="21-1-5", timeout_s=0.5)
    bts.faults.inject("no_reply", on="<cmd>start</cmd>")
    with pytest.raises(InstrumentTimeout):
        ch.start_schedule(step_file)
    assert bts.channels["21-1-5"].state == "schedule"  # it did start
    ch.start_schedule(step_file)  # the retry (as the engine's link makes it)
    assert bts.commands.count("start") == 1 and bts.started_files == [str(step_file)]
    assert ch.poll().state == "running"
    ch.close()


def test_a_channel_going_to_protection_aborts_the_run(tmp_path):
    session = prepare(
        FX / "protocols" / "demo_cycling.toml",
        FX / "stations" / "neware_station.toml",
        tmp_path,
        time_scale=2000.0,
    )
    try:
        engine = session.engine
        engine.start()
        time.sleep(0.5)
        session.bench.faults("bts1").inject("interlock", on="<cmd>getchlstatus</cmd>")
        status = engine.wait(timeout=60)
    finally:
        session.close()
    assert status == "aborted"
    events = open_run(engine.run_path).read("events").to_dicts()
    alarms = [e for e in events if e["kind"] == "alarm"]
    assert alarms and "protection" in alarms[0]["message"]


def test_monitor_control_reads_new_records_and_never_commands(bts, step_file):
    starter = NewareChannel(bts.address, pipeline="21-2-1")
    starter.start_schedule(step_file)  # as if started in BTS Client
    time.sleep(0.1)
    watcher = NewareChannel(bts.address, pipeline="21-2-1", control="monitor")
    watcher.attach()
    first = len(bts.channels["21-2-1"].records)
    time.sleep(0.3)
    poll = watcher.poll()
    assert poll.state == "running" and poll.records
    assert all(r.cycle >= 1 and r.step >= 1 for r in poll.records)
    assert len(poll.records) <= len(bts.channels["21-2-1"].records) - first + 1
    watcher.safe_state()
    watcher.output_off()
    with pytest.raises(Exception, match="monitored only"):
        watcher.stop()
    assert bts.channels["21-2-1"].state == "schedule"
    assert "stop" not in bts.commands
    watcher.close()
    starter.close()
