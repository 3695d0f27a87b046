"""End-to-end engine tests on the simulators, through the real transports (pyvisa-py sockets for
SCPI instruments, pseudo-terminals for serial ones): protocols complete, counters and
accumulators are right, safety limits trip with outputs off, instrument faults leave gaps and
the run recovers or aborts safely, and a stop is clean."""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from cellbench.analysis.ccd import critical_current_density
from cellbench.daq.engine import Engine
from cellbench.daq.live import LiveMessage
from cellbench.daq.session import Session, prepare
from cellbench.daq.store import open_run

FX = Path(__file__).resolve().parents[1] / "fixtures"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SAFETY = """
[safety]
voltage_min = "2.5 V"
voltage_max = "4.35 V"
current_max = "5 mA"
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def station_copy(tmp_path: Path, name: str) -> Path:
    """A fixture station copied beside the test's files (its sim cell path made absolute)."""
    text = (FX / "stations" / name).read_text(encoding="utf-8")
    text = text.replace('cell = "../sim/', f'cell = "{FX / "sim"}/')
    return write(tmp_path, name, text)


@pytest.fixture
def sessions():
    """Sessions to close (simulators stopped) after the test has looked at their state."""
    made: list[Session] = []
    yield made
    for session in made:
        session.close()


def start(sessions: list[Session], *args, **kwargs) -> Session:
    session = prepare(*args, **kwargs)
    sessions.append(session)
    return session


def run_in_thread(session: Session, action, *, after_s: float) -> str:
    """Start the engine, call ``action(session)`` after ``after_s`` wall seconds, wait."""
    engine = session.engine
    engine.start()
    timer = threading.Timer(after_s, action, args=(session,))
    timer.start()
    try:
        return engine.wait()
    finally:
        timer.cancel()


def events(run_path: Path) -> pl.DataFrame:
    return open_run(run_path).read("events")


def smu_is_off(session: Session, name: str = "smu1") -> bool:
    sim = session.bench.simulators[name]
    return (not sim.output) and session.bench.cell.mode == "open"


# --------------------------------------------------------------------- example protocols

EXAMPLES = [
    # protocol, station, time scale, engine options (loops capped, coarser sampling)
    ("formation_cycling", "coin_cell_station", 20_000, {"max_loop_iterations": 1}),
    ("eis_vs_temperature", "pellet_station", 50_000, {}),
    ("ccd_symmetric", "symmetric_station", 10_000, {}),
    ("interface_tracking", "ssb_station", 20_000, {"max_loop_iterations": 2}),
    ("demo", "demo_station", 10_000, {"max_loop_iterations": 2}),
]


@pytest.mark.parametrize(("protocol", "station", "scale", "options"), EXAMPLES)
def test_example_protocol_completes(sessions, tmp_path, protocol, station, scale, options):
    session = start(
        sessions,
        FX / "protocols" / f"{protocol}.toml",
        FX / "stations" / f"{station}.toml",
        tmp_path,
        time_scale=scale,
        options={"sample_interval_s": 30.0, **options},
    )
    status = session.engine.run()
    run = open_run(session.engine.run_path)
    ev = run.read("events")
    problems = ev.filter(pl.col("severity").is_in(["alarm", "error"]))["message"].to_list()
    assert status == "completed", problems
    assert run.meta.status == "completed"
    assert run.meta.ground_truth  # simulated: the cell's true parameters are kept
    assert run.meta.protocol["text"] and run.meta.station["text"]
    steps_run = ev.filter(pl.col("kind") == "step_start")
    assert steps_run.height == ev.filter(pl.col("kind") == "step_end").height > 0
    samples = run.read("samples")
    if not samples.is_empty():
        # step_count runs 1, 2, 3 ... and never goes back; time moves forward
        counts = samples["step_count"].unique(maintain_order=True).to_list()
        assert counts == sorted(counts)
        assert samples["test_time_second"].is_sorted()
    if protocol == "eis_vs_temperature":  # impedance-only channel: 25..85 degC, then 25 again
        spectra = run.read("spectra")
        # each EIS step repeats its sweep until equilibrium: its last sweep is the point
        newest = pl.col("sweep_index").max().over("step_index")
        last = spectra.filter(pl.col("sweep_index") == newest)
        temps = last.group_by("step_index").agg(pl.col("temperature_celsius").mean())
        assert temps.sort("step_index")["temperature_celsius"].to_list() == pytest.approx(
            [25, 40, 55, 70, 85, 25], abs=1.0
        )
        notes = ev.filter(pl.col("kind") == "note")["message"].to_list()
        assert sum("equilibrium" in m for m in notes) >= 6
    if protocol == "ccd_symmetric":
        notes = ev.filter(pl.col("kind") == "note")["message"].to_list()
        assert any("critical current density" in m for m in notes)


def test_counters_accumulators_and_eis_every(sessions, tmp_path):
    """Cycle counting (EIS-only steps do not advance it), per-cycle capacity, every_cycles."""
    protocol = write(
        tmp_path,
        "cycles.toml",
        f"""
name = "counters"
sample_interval = "30 s"
{SAFETY}
[[step]]
type = "eis"
start = "10 kHz"
stop = "10 Hz"
points_per_decade = 3
amplitude = "10 mV"

[[step]]
type = "loop"
repeat = 3

[[step.steps]]
type = "eis"
every = 2
start = "10 kHz"
stop = "10 Hz"
points_per_decade = 3
amplitude = "10 mV"

[[step.steps]]
type = "cc"
current = "C/2"
until = {{ voltage_above = "4.1 V", time = "3 h" }}

[[step.steps]]
type = "cc"
current = "-C/2"
until = {{ voltage_below = "3.2 V", time = "3 h" }}
""",
    )
    session = start(
        sessions, protocol, FX / "stations" / "demo_station.toml", tmp_path, time_scale=10000
    )
    assert session.engine.run() == "completed"
    run = open_run(session.engine.run_path)
    samples = run.read("samples")
    spectra = run.read("spectra")
    # three loop iterations = three cycles; the EIS before the loop belongs to cycle 1
    assert samples["cycle_count"].unique().sort().to_list() == [1, 2, 3]
    sweeps = spectra.group_by("sweep_index").agg(
        pl.col("cycle_count").first(), pl.col("step_index").first()
    )
    # before the loop (step 0), then iterations 0 and 2 of every = 2 (step 2)
    assert sorted(sweeps.select("cycle_count", "step_index").rows()) == [(1, 0), (1, 2), (3, 2)]
    per_cycle = samples.group_by("cycle_count").agg(
        pl.col("charging_capacity_ampere_hour").max(),
        pl.col("discharging_capacity_ampere_hour").max(),
    )
    for row in per_cycle.iter_rows(named=True):
        # C/2 charge then discharge of a 2 mAh cell between 3.2 and 4.1 V: about 1-2 mAh each
        assert 0.5e-3 < row["charging_capacity_ampere_hour"] < 2.2e-3
        assert 0.5e-3 < row["discharging_capacity_ampere_hour"] < 2.2e-3
    # accumulators restart at each cycle: the first row of cycle 2 has (almost) nothing yet
    first2 = samples.filter(pl.col("cycle_count") == 2).row(0, named=True)
    assert first2["discharging_capacity_ampere_hour"] < 1e-5
    # the analysis of the recorded samples agrees with the engine's own accumulators
    from cellbench.analysis.cycling import cycle_summary

    summary = cycle_summary(samples).sort("cycle_count")
    engine_q = per_cycle.sort("cycle_count")["discharging_capacity_ampere_hour"].to_numpy()
    assert summary["discharge_capacity_ampere_hour"].to_numpy() == pytest.approx(engine_q, rel=0.05)


# ------------------------------------------------------------------------------- safety


def _safety_run(sessions, tmp_path, protocol_text, station="demo_station.toml", *, during=None):
    protocol = write(tmp_path, "p.toml", protocol_text)
    session = start(sessions, protocol, FX / "stations" / station, tmp_path, time_scale=2000)
    engine = session.engine
    status = session.engine.run() if during is None else run_in_thread(session, during, after_s=0.3)
    ev = events(engine.run_path)
    alarms = ev.filter(pl.col("kind") == "alarm")
    assert status == "aborted"
    assert open_run(engine.run_path).meta.status == "aborted"
    assert alarms.height == 1
    assert alarms["severity"][0] == "alarm"
    return session, alarms.row(0, named=True)


def test_voltage_window_trips_with_outputs_off(sessions, tmp_path):
    # The demo cell starts empty (3.0 V): a discharge drives it below voltage_min at once.
    session, alarm = _safety_run(
        sessions,
        tmp_path,
        f"""
name = "undervoltage"
sample_interval = "10 s"
{SAFETY}
[[step]]
type = "cc"
current = "-C/2"
until = {{ time = "2 h" }}
""",
    )
    assert "voltage" in alarm["message"] and "below limit 2.5" in alarm["message"]
    assert json.loads(alarm["data"])["limit"] == "voltage_min_volt"
    assert smu_is_off(session)


def test_step_limit_tightens_the_window(sessions, tmp_path):
    session, alarm = _safety_run(
        sessions,
        tmp_path,
        f"""
name = "step limit"
sample_interval = "10 s"
{SAFETY}
[[step]]
type = "cc"
current = "C/2"
until = {{ time = "3 h" }}
limits = {{ voltage_max = "3.6 V" }}
""",
    )
    assert "above limit 3.6" in alarm["message"]
    data = json.loads(alarm["data"])
    assert data["limit"] == "voltage_max_volt" and data["step_index"] == 0
    # the breaching sample itself is recorded
    samples = open_run(session.engine.run_path).read("samples")
    assert samples["voltage_volt"].max() > 3.6
    assert smu_is_off(session)


def test_max_current_trips(sessions, tmp_path):
    session, alarm = _safety_run(
        sessions,
        tmp_path,
        f"""
name = "overcurrent"
sample_interval = "10 s"
{SAFETY}
[[step]]
type = "rest"
duration = "1 min"

[[step]]
type = "cc"
current = "1 mA"
until = {{ time = "1 h" }}
limits = {{ current_max = "0.5 mA" }}
""",
    )
    assert "current" in alarm["message"]
    assert json.loads(alarm["data"])["limit"] == "current_max_ampere"
    assert smu_is_off(session)


def test_max_temperature_trips(sessions, tmp_path):
    def chamber_runaway(session):
        session.bench.cell.set_chamber_setpoint(90.0)

    session, alarm = _safety_run(
        sessions,
        tmp_path,
        f"""
name = "overtemperature"
sample_interval = "10 s"
{SAFETY}temperature_max = "40 degC"

[[step]]
type = "rest"
duration = "10 h"
""",
        during=chamber_runaway,
    )
    assert "temperature" in alarm["message"] and "above limit 40" in alarm["message"]
    assert smu_is_off(session)


def test_max_pressure_trips(sessions, tmp_path):
    def overpressure(session):
        session.bench.cell.pressure_megapascal = 30.0

    session, alarm = _safety_run(
        sessions,
        tmp_path,
        f"""
name = "overpressure"
sample_interval = "10 s"
{SAFETY}pressure_max = "20 MPa"

[[step]]
type = "rest"
duration = "10 h"
""",
        station="ssb_station.toml",
        during=overpressure,
    )
    assert "pressure" in alarm["message"] and "above limit 20" in alarm["message"]
    assert smu_is_off(session)


# ------------------------------------------------------------------------------ faults

REST_HOUR = f"""
name = "rest"
sample_interval = "5 s"
{SAFETY}
[[step]]
type = "cc"
current = "C/5"
until = {{ time = "50 min" }}

[[step]]
type = "rest"
duration = "10 min"
"""


def test_disconnect_leaves_gap_and_run_recovers(sessions, tmp_path):
    protocol = write(tmp_path, "p.toml", REST_HOUR)
    session = start(
        sessions, protocol, FX / "stations" / "demo_station.toml", tmp_path, time_scale=1000
    )

    def unplug(s):
        s.bench.faults("smu1").inject("disconnect", delay_s=1.2)

    status = run_in_thread(session, unplug, after_s=0.5)
    run = open_run(session.engine.run_path)
    ev = run.read("events")
    assert status == "completed", ev.filter(pl.col("severity") != "info")["message"].to_list()
    gaps = ev.filter(pl.col("kind") == "gap")
    assert gaps.height >= 1
    gap = gaps.row(0, named=True)
    assert gap["duration_second"] > 0
    assert json.loads(gap["data"])["wall_second"] > 1.0
    samples = run.read("samples")
    # samples go on after the gap until the protocol's end (60 min)
    assert samples["test_time_second"].max() > 3590
    # the output was restored after the reconnect: charge kept flowing in the CC step
    resumed_at = json.loads(gap["data"])["to_test_time_second"]
    after = samples.filter((pl.col("step_index") == 0) & (pl.col("test_time_second") >= resumed_at))
    assert after.height > 0 and after["current_ampere"].min() > 0.3e-3


def test_instrument_lost_aborts_safely(sessions, tmp_path):
    protocol = write(tmp_path, "p.toml", REST_HOUR)
    station = station_copy(tmp_path, "demo_station.toml").read_text(encoding="utf-8")
    station = station.replace('channel = "cell1"\n', 'channel = "cell1"\ntimeout_s = 0.3\n', 1)
    session = start(
        sessions,
        protocol,
        write(tmp_path, "station.toml", station),
        tmp_path,
        time_scale=1000,
        options={"fault_timeout_s": 0.5},
    )

    def silence(s):  # connected, but never answers again
        s.bench.faults("smu1").inject("no_reply", count=None)

    status = run_in_thread(session, silence, after_s=0.3)
    ev = events(session.engine.run_path)
    assert status == "aborted"
    faults = ev.filter((pl.col("kind") == "fault") & (pl.col("severity") == "error"))
    assert faults.height == 1 and "unreachable" in faults["message"][0]


def test_stop_is_clean_and_live_subscribers_see_every_row(sessions, tmp_path):
    protocol = write(tmp_path, "p.toml", REST_HOUR)
    session = start(
        sessions, protocol, FX / "stations" / "demo_station.toml", tmp_path, time_scale=500
    )
    q: queue.Queue[LiveMessage] = queue.Queue()
    session.engine.subscribe(q)
    status = run_in_thread(session, lambda s: s.engine.request_stop("test"), after_s=0.5)
    assert status == "stopped"
    run = open_run(session.engine.run_path)
    assert run.meta.status == "stopped"
    assert smu_is_off(session)
    messages = []
    while not q.empty():
        messages.append(q.get())
    published = sum(m.frame.height for m in messages if m.kind == "samples")
    assert published == run.read("samples").height > 0
    kinds = [m.event["kind"] for m in messages if m.kind == "event"]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    assert [m.status for m in messages if m.kind == "status"] == ["running", "stopped"]


def test_two_channels_run_at_once(sessions, tmp_path):
    station = write(
        tmp_path,
        "two.toml",
        f"""
[cell]
name = "pair"
nominal_capacity_ah = 0.002

[simulation]
cell = "{FX / "sim" / "sulfide_full_cell.toml"}"
time_scale = 2000.0

[[instrument]]
name = "smu1"
driver = "keithley2450"
address = "sim"
roles = ["source"]
channel = "A"

[[instrument]]
name = "smu2"
driver = "keithley2450"
address = "sim"
roles = ["source"]
channel = "B"
""",
    )
    protocol = write(
        tmp_path,
        "ocv.toml",
        'name = "ocv"\nsample_interval = "10 s"\n[[step]]\ntype = "ocv"\nduration = "30 min"\n',
    )
    session = start(sessions, protocol, station, tmp_path)
    assert isinstance(session.engine, Engine)
    assert session.engine.run() == "completed"
    samples = open_run(session.engine.run_path).read("samples")
    per = samples.group_by("channel").agg(pl.len(), pl.col("test_time_second").max())
    assert sorted(per["channel"].to_list()) == ["A", "B"]
    assert per["len"].min() > 20
    assert per["test_time_second"].min() >= 1799


def test_malformed_protocol_touches_no_instrument(sessions, tmp_path):
    """Every problem with its line, and not a single connection to the instrument's port."""
    import socket

    from cellbench.daq.protocol import ProtocolError

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.3)
    port = listener.getsockname()[1]
    station = write(
        tmp_path,
        "real.toml",
        f"""
[cell]
nominal_capacity_ah = 0.002

[[instrument]]
name = "smu1"
driver = "keithley2450"
address = "TCPIP::127.0.0.1::{port}::SOCKET"
roles = ["source"]
channel = "cell1"
""",
    )
    with pytest.raises(ProtocolError) as info:
        prepare(FX / "protocols" / "bad" / "loops.toml", station, tmp_path)
    assert len(info.value.problems) >= 3
    assert all(p.line > 0 for p in info.value.problems)
    with pytest.raises(TimeoutError):
        listener.accept()
    listener.close()
    assert not any(tmp_path.glob("*/run.json"))  # no run folder either


def test_protocol_needing_a_missing_instrument_is_refused_before_start(sessions, tmp_path):
    from cellbench.daq.protocol import ProtocolError

    protocol = write(
        tmp_path,
        "p.toml",
        f"""
name = "needs eis"
{SAFETY}
[[step]]
type = "eis"
start = "10 kHz"
stop = "1 Hz"
amplitude = "10 mV"
""",
    )
    t0 = time.monotonic()
    with pytest.raises(ProtocolError, match="impedance"):
        prepare(protocol, FX / "stations" / "coin_cell_station.toml", tmp_path)
    assert time.monotonic() - t0 < 5


def test_resistance_meter_on_the_sample_timeline(sessions, tmp_path):
    station = write(
        tmp_path,
        "ohm.toml",
        f"""
[cell]
nominal_capacity_ah = 0.002

[simulation]
cell = "{FX / "sim" / "sulfide_full_cell.toml"}"
time_scale = 1000.0

[[instrument]]
name = "smu1"
driver = "keithley2450"
address = "sim"
roles = ["source"]
channel = "cell1"

[[instrument]]
name = "ohm"
driver = "bt3562"
address = "sim"
roles = ["resistance"]
channel = "cell1"
""",
    )
    protocol = write(
        tmp_path,
        "ocv.toml",
        'name = "ocv"\nsample_interval = "10 s"\n[[step]]\ntype = "ocv"\nduration = "30 min"\n',
    )
    session = start(sessions, protocol, station, tmp_path)
    assert session.engine.run() == "completed"
    samples = open_run(session.engine.run_path).read("samples")
    r = samples["internal_resistance_ohm"].drop_nulls()
    assert r.len() > samples.height // 2
    # the simulated cell's AC resistance at 1 kHz: leads + electrolyte, tens of ohms
    assert 1.0 < r.median() < 500.0


def test_cv_pulse_hppc_and_gitt_steps(sessions, tmp_path):
    protocol = write(
        tmp_path,
        "p.toml",
        f"""
name = "pulses"
sample_interval = "5 s"
{SAFETY}
[[step]]
type = "cc"
current = "C/2"
until = {{ voltage_above = "3.8 V", time = "3 h" }}

[[step]]
type = "cv"
voltage = "3.8 V"
current_limit = "1 mA"
until = {{ current_below = "0.2 mA", time = "2 h" }}

[[step]]
type = "hppc"
current = "-1.5 mA"        # 1.9 mA/cm2: below the simulated cell's 2 mA/cm2 CCD, which a
charge_current = "1.2 mA"  # -2 mA pulse pair crossed when a loaded machine stretched it
pulse = "60 s"
rest = "5 min"
count = 2

[[step]]
type = "gitt"
current = "-C/5"
pulse = "10 min"
rest = "20 min"
count = 3
record_every = "30 s"
""",
    )
    session = start(
        sessions, protocol, FX / "stations" / "demo_station.toml", tmp_path, time_scale=4000
    )
    assert session.engine.run() == "completed"
    run = open_run(session.engine.run_path)
    samples = run.read("samples")
    ends = run.read("events").filter(pl.col("kind") == "step_end")["message"].to_list()
    assert "voltage" in ends[0] or "compliance" in ends[0]
    assert "|current|" in ends[1]
    assert "2 pulse(s) done" in ends[2] and "3 pulse(s) done" in ends[3]
    cv = samples.filter(pl.col("step_index") == 1)
    assert cv["voltage_volt"].to_numpy() == pytest.approx(3.8, abs=0.01)
    hppc = samples.filter(pl.col("step_index") == 2)["current_ampere"]
    assert hppc.min() == pytest.approx(-1.5e-3, rel=0.01)
    assert hppc.max() == pytest.approx(1.2e-3, rel=0.01)
    gitt = samples.filter(pl.col("step_index") == 3)
    # 3 pulses of 10 min at C/5 = 0.4 mA: 0.2 mAh out
    assert gitt["step_capacity_ampere_hour"].min() == pytest.approx(-0.2e-3, rel=0.1)
    # record_every = 30 s: at most one row per 30 s, but pulse edges are all kept
    assert gitt.height < (3 * 30 * 60) / 30 + 20


def test_temperature_that_does_not_settle_aborts(sessions, tmp_path):
    session, alarm = _safety_run(
        sessions,
        tmp_path,
        f"""
name = "slow chamber"
sample_interval = "10 s"
{SAFETY}
[[step]]
type = "temperature"
setpoint = "70 degC"
tolerance = "0.5 K"
stable_for = "1 min"
timeout = "3 min"
""",
    )
    assert "did not settle at 70 degC" in alarm["message"]
    assert smu_is_off(session)


def test_loop_until_capacity_ends_the_loop(sessions, tmp_path):
    protocol = write(
        tmp_path,
        "p.toml",
        f"""
name = "until"
sample_interval = "30 s"
{SAFETY}
[[step]]
type = "loop"
until = {{ discharge_capacity_below = "5 mAh" }}
max_repeat = 5

[[step.steps]]
type = "cc"
current = "C/2"
until = {{ voltage_above = "4.0 V", time = "3 h" }}

[[step.steps]]
type = "cc"
current = "-C/2"
until = {{ voltage_below = "3.3 V", time = "3 h" }}
""",
    )
    session = start(
        sessions, protocol, FX / "stations" / "demo_station.toml", tmp_path, time_scale=5000
    )
    assert session.engine.run() == "completed"
    run = open_run(session.engine.run_path)
    notes = run.read("events").filter(pl.col("kind") == "note")["message"].to_list()
    assert any("ends after 1 iteration(s)" in n and "below 5 mAh" in n for n in notes)
    assert run.read("samples")["cycle_count"].max() == 1


def test_chamber_silent_for_a_while_leaves_a_gap_and_the_run_goes_on(sessions, tmp_path):
    # Temperature is recorded but not limited here: with a temperature_max, a reading gone stale
    # is a breach (tests/test_safety.py: a silent chamber aborts the run).
    protocol = write(
        tmp_path,
        "p.toml",
        'name = "rest"\nsample_interval = "5 s"\n[safety]\nvoltage_max = "4.4 V"\n'
        '[[step]]\ntype = "rest"\nduration = "1 h"\n',
    )
    session = start(
        sessions, protocol, FX / "stations" / "demo_station.toml", tmp_path, time_scale=1000
    )

    def unplug(s):
        s.bench.faults("chamber").inject("disconnect", delay_s=1.5)

    assert run_in_thread(session, unplug, after_s=0.8) == "completed"
    run = open_run(session.engine.run_path)
    gaps = run.read("events").filter(pl.col("kind") == "gap")
    assert gaps.height == 1 and "temperature" in gaps["message"][0]
    assert gaps["duration_second"][0] > 1000  # 1.5 s wall at 1000x
    temps = run.read("samples")["temperature_celsius"]
    assert 0 < temps.null_count() < temps.len()  # missing while silent, not made up


REST_ONLY = f"""
name = "rest only"
sample_interval = "5 s"
{SAFETY}
[[step]]
type = "rest"
duration = "20 min"
"""


def test_rest_only_run_ends_with_the_output_off(sessions, tmp_path):
    # The 2450 rests a cell by sourcing 0 A with the output on; the run's end must still open it.
    protocol = write(tmp_path, "p.toml", REST_ONLY)
    session = start(
        sessions, protocol, FX / "stations" / "demo_station.toml", tmp_path, time_scale=2000
    )
    assert session.engine.run() == "completed"
    assert smu_is_off(session)


def test_stop_before_any_current_leaves_the_output_off(sessions, tmp_path):
    protocol = write(tmp_path, "p.toml", REST_ONLY.replace("20 min", "10 h"))
    session = start(
        sessions, protocol, FX / "stations" / "demo_station.toml", tmp_path, time_scale=500
    )
    status = run_in_thread(session, lambda s: s.engine.request_stop("test"), after_s=0.5)
    assert status == "stopped"
    assert smu_is_off(session)


CCD_AROUND_THE_SHORT = """
name = "CCD around the short"
sample_interval = "20 s"

[safety]
voltage_min = "-2 V"
voltage_max = "2 V"
current_max = "5 mA"

[[step]]
type = "ccd"
start = "0.5 mA/cm2"
step = "0.05 mA/cm2"
max = "0.8 mA/cm2"
half_cycle = "10 min"
cycles_per_step = 1
short = { voltage_fraction = "20 %", voltage_below = "1 mV" }
"""


def test_ccd_on_the_emstat_strips_and_finds_the_short(sessions, tmp_path):
    """The simulated cell shorts above 0.6 mA/cm2 (fixtures/sim/llzo_symmetric.toml). Every
    stripping half must carry its current: a potentiostat that read the engine's |V| compliance
    as a signed lower bound stopped each one at its first sample and read 0 V, 0 A after."""
    session = start(
        sessions,
        write(tmp_path, "ccd.toml", CCD_AROUND_THE_SHORT),
        FX / "stations" / "symmetric_station.toml",
        tmp_path,
        time_scale=2000,
    )
    assert session.engine.run() == "completed"
    run = open_run(session.engine.run_path)
    ev = run.read("events")
    notes = ev.filter(pl.col("kind") == "note")
    assert notes.height == 1 and "critical current density" in notes["message"][0]
    assert json.loads(notes["data"][0])["ccd_ampere_per_cm2"] == pytest.approx(0.65e-3)
    ccd = run.read("samples").filter(pl.col("test_time_second") < notes["test_time_second"][0])
    area = 0.785
    # before the short every sample sources a level: none at 0 A, half of them stripping
    assert (ccd["current_ampere"].abs() >= 0.5e-3 * area * 0.99).all()
    stripping = ccd.filter(pl.col("current_ampere") < 0)
    assert stripping.height >= 0.4 * ccd.height
    assert (stripping["voltage_volt"] < -1e-3).all()


def test_ccd_record_thinned_by_record_dv_still_holds_the_short(sessions, tmp_path):
    """record_dv drops the flat collapsed voltage, yet the samples that confirm the short are
    kept, so the offline analysis of the run finds the short where the engine did."""
    session = start(
        sessions,
        write(tmp_path, "ccd.toml", CCD_AROUND_THE_SHORT + 'record_dv = "0.5 mV"\n'),
        FX / "stations" / "symmetric_station.toml",
        tmp_path,
        time_scale=2000,
    )
    assert session.engine.run() == "completed"
    samples = open_run(session.engine.run_path).read("samples")
    found = critical_current_density(samples, 0.785)
    assert found.shorted and found.mechanism == "collapse"
    assert found.short_current_density_milliampere_per_square_centimeter == pytest.approx(0.65)
    assert found.ccd_milliampere_per_square_centimeter == pytest.approx(0.6)


def test_ccd_aborts_when_the_source_stops_sourcing(sessions, tmp_path):
    """An output the instrument ended on its own (here the EmStat's script run time) must not
    pass for a healthy cell at 0 V, 0 A for the rest of the staircase."""
    station = station_copy(tmp_path, "symmetric_station.toml")
    station.write_text(
        station.read_text(encoding="utf-8") + "\n[instrument.options]\nmax_step_s = 120.0\n",
        encoding="utf-8",
    )
    session = start(
        sessions,
        write(tmp_path, "ccd.toml", CCD_AROUND_THE_SHORT),
        station,
        tmp_path,
        time_scale=2000,
    )
    assert session.engine.run() == "aborted"
    alarms = events(session.engine.run_path).filter(pl.col("severity") == "alarm")
    assert any("no current" in m and "0.3925 mA" in m for m in alarms["message"].to_list())
    assert session.bench.cell.mode == "open"
