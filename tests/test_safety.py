"""Safety over data: every output off within one sample period of a breach, however many
instruments (measured over real loopback transports), and a dead or silent sensor of a limited
quantity is a breach, not a gap."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from cellbench.core.clock import ScaledClock
from cellbench.daq.engine import Engine, EngineOptions
from cellbench.daq.protocol import parse_protocol
from cellbench.daq.session import prepare
from cellbench.daq.station import parse_station
from cellbench.daq.store import open_run
from cellbench.drivers.registry import open_instrument
from cellbench.drivers.sim.cell import SimCell, load_cell_params
from cellbench.drivers.sim.keithley2450_sim import Keithley2450Simulator

FX = Path(__file__).resolve().parents[1] / "fixtures"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TIME_SCALE = 100.0
SAMPLE_S = 50.0  # simulated s: 0.5 s wall at TIME_SCALE
LIMIT_V = 4.30


class TimedSmu(Keithley2450Simulator):
    """A 2450 simulator that notes when its output last went from on to off (monotonic s)."""

    def __init__(self, *args, **kwargs):
        self.off_at: float | None = None
        self.on_at_breach: bool | None = None
        self._out = False
        super().__init__(*args, **kwargs)

    @property
    def output(self) -> bool:
        return self._out

    @output.setter
    def output(self, on: bool) -> None:
        if self._out and not on:
            self.off_at = time.monotonic()
        self._out = on


def _protocol():
    return parse_protocol(
        f"""
name = "parallel safe state"
sample_interval = "{SAMPLE_S:g} s"

[safety]
voltage_max = "{LIMIT_V} V"

[[step]]
type = "rest"
duration = "{SAMPLE_S * 3:g} s"

[[step]]
type = "cc"
current = "1 mA"
until = {{ time = "5 h" }}
""",
        source="parallel.toml",
    )


def _station(smus: list[TimedSmu]):
    parts = [
        """
[cell]
name = "coin"
chemistry = "Li|Li6PS5Cl|NMC811"
area_cm2 = 0.785
nominal_capacity_ah = 0.002
"""
    ]
    for k, sim in enumerate(smus):
        parts.append(
            f"""
[[instrument]]
name = "smu{k}"
driver = "keithley2450"
address = "{sim.address}"
roles = ["source"]
channel = "cell{k}"
timeout_s = 2.0
"""
        )
    return parse_station("\n".join(parts), source="parallel station")


@pytest.mark.parametrize(
    ("n", "stuck"),
    [(1, False), (4, False), (16, False), (4, True)],
    ids=["1", "4", "16", "4-one-slow-to-answer"],
)
def test_every_output_off_within_one_sample_period_of_the_breach(tmp_path, n, stuck):
    """From the breaching sample to every output off; ``stuck``: another instrument answers
    its safe-state query 1 s late (a query in flight, a slow USB adapter), which must delay no
    other instrument."""
    clock = ScaledClock(TIME_SCALE)
    params = load_cell_params(FX / "sim" / "sulfide_full_cell.toml")
    cells = [SimCell(params, clock=clock, seed=k) for k in range(n)]
    cells[0].set_soc(0.955)  # charging at 1 mA it crosses LIMIT_V after ~1-2 s wall
    for cell in cells[1:]:
        cell.set_soc(0.5)
    breach_at: list[float] = []  # when the first reading above the limit left the instrument
    smus: list[TimedSmu] = []

    def watch(sim: TimedSmu) -> None:
        measure = sim._measure

        def watched(sense: str, command: str):
            sample = measure(sense, command)
            if sense == "VOLT" and LIMIT_V < sample[0] < 1e30 and not breach_at:
                breach_at.append(time.monotonic())
                for other in smus:
                    other.on_at_breach = other.output
                if stuck:
                    smus[1].faults.inject("late_reply", None, 1.0, on="OUTP?")
            return sample

        sim._measure = watched

    drivers = {}
    try:
        for k, cell in enumerate(cells):
            sim = TimedSmu(cell, name=f"smu{k}")
            sim.start()
            smus.append(sim)
        watch(smus[0])
        for k, sim in enumerate(smus):
            drivers[f"smu{k}"] = open_instrument(
                "keithley2450", sim.address, name=f"smu{k}", timeout_s=2.0
            )
        engine = Engine(
            _protocol(),
            _station(smus),
            tmp_path,
            clock=clock,
            instruments=drivers,
            options=EngineOptions(batch_interval_s=0.1),
        )
        status = engine.run()
    finally:
        for driver in drivers.values():
            driver.close()
        for sim in smus:
            sim.stop()
    assert status == "aborted" and breach_at
    on = [s for s in smus if s.on_at_breach]
    assert len(on) == n, "every output was on when the breach was measured"
    if stuck:  # the slow instrument may be late itself (a query of its own in flight) ...
        assert smus[1].off_at is not None
        on.remove(smus[1])  # ... but must delay no other
    latency = max(s.off_at for s in on) - breach_at[0]
    period_wall = SAMPLE_S / TIME_SCALE
    print(f"\n{n} instruments: every output off {latency * 1e3:.0f} ms after the breaching sample")
    assert 0 < latency < period_wall, f"{n} instruments: outputs off after {latency:.3f} s"
    alarm = open_run(engine.run_path).read("events").filter(pl.col("kind") == "alarm")
    assert alarm.height == 1 and json.loads(alarm["data"][0])["limit"] == "voltage_max_volt"


def test_a_silent_chamber_is_a_temperature_breach_not_a_60_s_gap(tmp_path):
    protocol = tmp_path / "p.toml"
    protocol.write_text(
        """
name = "dead chamber"
sample_interval = "10 s"
[safety]
voltage_max = "4.4 V"
temperature_max = "40 degC"
[[step]]
type = "rest"
duration = "10 h"
""",
        encoding="utf-8",
    )
    session = prepare(protocol, FX / "stations" / "coin_cell_station.toml", tmp_path, time_scale=50)
    engine = session.engine
    try:
        engine.start()
        time.sleep(0.5)
        session.bench.faults("chamber").inject("no_reply", count=None)  # the chamber goes silent
        t0 = time.monotonic()
        status = engine.wait(timeout=30)
        took = time.monotonic() - t0
    finally:
        if engine.status == "running":
            engine.request_stop("test over")
            engine.wait()
        session.close()
    assert status == "aborted", "a silent chamber left temperature_max unenforced"
    assert took < 15, f"temperature limit unenforced for {took:.1f} s (fault timeout is 60 s)"
    ev = open_run(engine.run_path).read("events")
    alarm = ev.filter(pl.col("kind") == "alarm").row(0, named=True)
    assert "no valid temperature reading" in alarm["message"]
    assert json.loads(alarm["data"])["limit"] == "temperature_max_celsius"
    assert math.isnan(json.loads(alarm["data"])["value"])


def test_safe_state_in_parallel_does_not_wait_for_a_stuck_instrument():
    from cellbench.daq.safety import all_safe

    class Slow:
        def __init__(self, name, delay):
            self.name, self.delay, self.done = name, delay, None

        def safe_state(self):
            time.sleep(self.delay)
            self.done = time.monotonic()

    from cellbench.daq.link import InstrumentLink

    drivers = [Slow("stuck", 1.5), *(Slow(f"ok{k}", 0.01) for k in range(8))]
    links = [InstrumentLink(d) for d in drivers]
    gate_holder = threading.Event()
    t0 = time.monotonic()
    results = all_safe(links, first=links[3], wait_s=5.0)
    gate_holder.set()
    assert all(r is None for r in results.values())
    fast = [d.done - t0 for d in drivers[1:]]
    assert max(fast) < 0.5, f"a stuck instrument delayed the others by {max(fast):.2f} s"


def test_a_source_that_times_itself_is_bounded_to_the_step(tmp_path):
    """The EmStat runs each CC/CV step as an on-instrument script with a run time: the engine
    sets it to the step's remaining time plus a margin, so a dead logger cannot leave the cell
    sourced for the driver's default 11 days."""
    protocol = tmp_path / "p.toml"
    protocol.write_text(
        """
name = "bounded"
sample_interval = "10 s"
[safety]
voltage_min = "-2 V"
voltage_max = "2 V"
[[step]]
type = "cc"
current = "0.05 mA"
until = { time = "2 min" }
""",
        encoding="utf-8",
    )
    session = prepare(
        protocol, FX / "stations" / "symmetric_station.toml", tmp_path, time_scale=100
    )
    try:
        status = session.engine.run()
        driver = session.engine.links["pstat"].driver
    finally:
        session.close()
    assert status == "completed"
    margin = 60.0 * 100  # SOURCE_TIME_MARGIN_WALL_S on the simulated clock
    assert 120.0 <= driver.max_step_s <= 120.0 * 1.05 + margin + 1.0


def test_a_lost_instrument_is_one_log_line_and_its_reading_shows_its_age(tmp_path, caplog):
    from cellbench.cli.display import status_line

    protocol = tmp_path / "p.toml"
    protocol.write_text(
        """
name = "lost smu"
sample_interval = "10 s"
[safety]
voltage_min = "2.5 V"
voltage_max = "4.4 V"
[[step]]
type = "cc"
current = "0.2 mA"
until = { time = "10 h" }
""",
        encoding="utf-8",
    )
    session = prepare(
        protocol,
        FX / "stations" / "demo_station.toml",
        tmp_path,
        time_scale=100,
        options={"fault_timeout_s": 4.0},
    )
    engine = session.engine
    lines = []
    try:
        engine.start()
        time.sleep(0.5)
        caplog.clear()
        session.bench.faults("smu1").inject("no_reply", count=None)
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            lines.append(status_line(engine.states["cell1"]))
            time.sleep(0.25)
        status = engine.wait(timeout=30)
    finally:
        if engine.status == "running":
            engine.request_stop("test over")
            engine.wait()
        session.close()
    assert status == "aborted"
    assert "STALE: read" in lines[-1] and "STALE" not in lines[0]
    tracebacks = [r for r in caplog.records if r.exc_info and r.levelno >= 30]
    assert not tracebacks, f"{len(tracebacks)} tracebacks logged for one lost instrument"
    loud = [r for r in caplog.records if r.levelno >= 30]
    assert len(loud) <= 3, [r.getMessage() for r in loud]  # not responding, safe state, abort
