"""Engine pieces that need no instrument: loop end conditions, resume points, safety checks,
the live bus."""

from __future__ import annotations

import json
import queue
from types import SimpleNamespace

import polars as pl
import pytest

from cellbench.core.clock import WallClock
from cellbench.daq.live import LiveBus, LiveMessage
from cellbench.daq.protocol import Limits, parse_protocol
from cellbench.daq.resume import ResumeError, checkpoints, restart_point
from cellbench.daq.runner import ChannelIO, ChannelRunner, Checkpoint
from cellbench.daq.safety import check

PROTOCOL = """
name = "units"
[safety]
voltage_min = "2.5 V"
voltage_max = "4.3 V"
current_max = "5 mA"

[[step]]
type = "rest"
duration = "1 min"

[[step]]
type = "gitt"
current = "-0.1 mA"
pulse = "1 min"
rest = "1 min"
count = 2

[[step]]
type = "loop"
until = { discharge_capacity_below = "80 %" }
max_repeat = 10

[[step.steps]]
type = "cc"
current = "1 mA"
until = { voltage_above = "4.2 V" }

[[step.steps]]
type = "gitt"
current = "-0.1 mA"
pulse = "1 min"
rest = "1 min"
count = 2
"""


@pytest.fixture
def protocol():
    return parse_protocol(PROTOCOL, source="units.toml")


def runner(protocol) -> ChannelRunner:
    ctx = SimpleNamespace(sample_interval_s=1.0, limits=protocol.safety, clock=WallClock())
    return ChannelRunner(ctx, ChannelIO("c1", None), protocol)


def test_loop_until_fraction_of_first_cycle(protocol):
    r = runner(protocol)
    loop = protocol.steps[2]
    r.state.discharging_capacity_ampere_hour = 2.0e-3
    assert r._loop_done(loop, loop.until, "2", 0.0) is None  # the first cycle sets the reference
    r.state.discharging_capacity_ampere_hour = 1.7e-3
    assert r._loop_done(loop, loop.until, "2", 0.0) is None  # 85 %
    r.state.discharging_capacity_ampere_hour = 1.5e-3
    why = r._loop_done(loop, loop.until, "2", 0.0)
    assert why is not None and "below 80% of the first" in why


def cp(frames, **kw) -> Checkpoint:
    base = dict(
        frames=frames,
        cycle_count=4,
        step_count=17,
        sweep_index=2,
        cycle_has_current=True,
        accumulators={"charging_capacity_ampere_hour": 1e-3},
    )
    return Checkpoint(**{**base, **kw})


def test_restart_points(protocol):
    same = cp([{"i": 2, "iter": 3}, {"i": 0}])  # the CC inside the loop: restart it
    assert restart_point(protocol, same) is same
    nxt = restart_point(protocol, cp([{"i": 2, "iter": 3}, {"i": 1}]))  # GITT in the loop
    assert nxt.frames == [{"i": 2, "iter": 4}, {"i": 0}]
    assert nxt.cycle_count == 5 and nxt.accumulators == {} and not nxt.cycle_has_current
    with pytest.raises(ResumeError, match="cannot be restarted halfway"):
        restart_point(protocol, cp([{"i": 1}]))  # GITT at top level


def test_checkpoints_take_each_channels_last_step_start():
    def row(channel, kind, data):
        return {"channel": channel, "kind": kind, "data": json.dumps(data) if data else None}

    events = pl.DataFrame(
        [
            row("a", "step_start", cp([{"i": 0}]).to_dict()),
            row("b", "step_start", cp([{"i": 0}]).to_dict()),
            row("a", "step_end", {"reason": "time"}),
            row("a", "step_start", cp([{"i": 1}]).to_dict()),
            row("", "run_start", None),
        ]
    )
    found = checkpoints(events)
    assert found["a"].frames == [{"i": 1}] and found["b"].frames == [{"i": 0}]


def test_safety_check():
    lim = Limits(voltage_min_volt=2.5, voltage_max_volt=4.3, current_max_ampere=5e-3,
                 temperature_max_celsius=60, pressure_max_megapascal=20)  # fmt: skip
    assert check(lim, voltage_volt=3.7, current_ampere=-4e-3, temperature_celsius=25.0) is None
    assert check(lim, voltage_volt=4.31).limit == "voltage_max_volt"
    assert check(lim, voltage_volt=2.49).limit == "voltage_min_volt"
    assert check(lim, current_ampere=-5.1e-3).limit == "current_max_ampere"
    assert check(lim, temperature_celsius=61.0).limit == "temperature_max_celsius"
    assert check(lim, pressure_megapascal=21.0).limit == "pressure_max_megapascal"
    # a NaN reading (dead sensor, stale reading) cannot be shown to be inside the window
    assert check(lim, voltage_volt=float("nan")) is not None
    breach = check(lim, temperature_celsius=float("nan"))
    assert breach is not None and breach.limit == "temperature_max_celsius"
    assert "no valid temperature reading" in breach.message
    assert check(lim, pressure_megapascal=float("inf")).limit == "pressure_max_megapascal"
    # a quantity nobody measures on the channel is not passed, so not checked
    assert check(lim, voltage_volt=3.0) is None
    tight = lim.merged(Limits(voltage_max_volt=3.6))
    assert check(tight, voltage_volt=3.7).bound == 3.6


def test_live_bus_queue_drops_oldest_and_callbacks_cannot_break_it():
    bus = LiveBus()
    q: queue.Queue = queue.Queue(maxsize=2)
    sub = bus.subscribe(q)
    seen = []

    def broken(msg):
        raise RuntimeError("display bug")

    bus.subscribe(broken)
    bus.subscribe(seen.append)
    for k in range(4):
        bus.publish(LiveMessage("status", status=str(k)))
    assert [q.get().status, q.get().status] == ["2", "3"] and sub.dropped == 2
    assert [m.status for m in seen] == ["0", "1", "2", "3"]
    sub.close()
    bus.publish(LiveMessage("status", status="x"))
    assert q.empty()
    with pytest.raises(TypeError):
        bus.subscribe(42)


def test_engine_options_from_station_table(tmp_path):
    from cellbench.daq.engine import EngineOptions
    from cellbench.daq.station import StationError, parse_station
    from cellbench.daq.steps import EngineConfigError

    text = """
[cell]
name = "c"

[engine]
fault_timeout_s = 5.0
{extra}

[[instrument]]
name = "smu1"
driver = "keithley2450"
address = "TCPIP::127.0.0.1::5025::SOCKET"
roles = ["source"]
channel = "cell1"
"""
    station = parse_station(text.format(extra=""), source="s.toml")
    options = EngineOptions.from_station(station, retries=4, sample_interval_s=None)
    assert options.fault_timeout_s == 5.0 and options.retries == 4
    assert options.sample_interval_s is None and options.batch_interval_s == 0.25
    # The station loader checks [engine] like the rest of the file: every problem, with its line.
    with pytest.raises(StationError) as info:
        parse_station(
            text.format(extra='fault_timout_s = 1\nretries = 1.5\nstop_grace_s = "10 s"'),
            source="s.toml",
        )
    assert [str(p) for p in info.value.problems] == [
        "s.toml:7: engine.fault_timout_s: unknown key; did you mean 'fault_timeout_s'?",
        "s.toml:8: engine.retries: must be a whole number >= 0, got 1.5",
        "s.toml:9: engine.stop_grace_s: must be a number of seconds, got '10 s'",
    ]
    # Overrides (command line, GUI) are checked too, by name.
    with pytest.raises(EngineConfigError, match="retries: must be a whole number >= 0, got -1"):
        EngineOptions.from_station(station, retries=-1)
    with pytest.raises(TypeError, match="fault_timout_s"):
        EngineOptions.from_station(station, fault_timout_s=3.0)
