"""A channel on a cycler that runs its schedule by itself, logged into a normal run.

Two cases, both for a source whose driver has ``runs_own_schedule`` (see
:class:`cellbench.drivers.roles.ScheduleChannel`):

* **Run a protocol on a Neware BTS channel:** the protocol is translated to a BTS step file
  (:mod:`cellbench.daq.neware_steps`, refused at its line if BTS cannot express it), written into
  the run folder, started, and the channel's records are downloaded every sample interval into
  the run's samples (the cycler's own cycle numbers; the protocol step each BTS step came from).
* **Harvest (``control = "monitor"``):** a channel running the vendor's own schedule (a Maccor
  procedure, a BTS step file started in BTS Client) is recorded as it goes, from when the run
  starts until the cycler's test ends or the protocol's rest time is over. The protocol then has
  only rest/ocv steps (their total duration bounds the recording) and its ``[safety]`` limits,
  which the logger checks on every record (alarm and run aborted; a monitored channel is never
  commanded, so what it does about a breach is the cycler's own protection).

Samples carry the cycler's cycle numbers (charge and discharge capacity restart with each), the
step counters advance at every change of the cycler's step, and every step change is an event.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from cellbench.daq.counters import integrate_sample
from cellbench.daq.neware_steps import protocol_to_step_file
from cellbench.daq.protocol import Loop, Ocv, Problem, Protocol, Rest
from cellbench.daq.safety import check
from cellbench.daq.steps import EngineConfigError

if TYPE_CHECKING:
    from cellbench.daq.runner import ChannelRunner
    from cellbench.daq.station import Station

#: wall seconds a freshly started schedule may still read as not running
START_GRACE_WALL_S = 10.0
STEP_FILE_NAME = "neware_steps.xml"


def monitored(spec: Any) -> bool:
    return str(dict(spec.options or {}).get("control", "")) == "monitor"


def _translates(spec: Any) -> bool:
    from cellbench.drivers.registry import load_driver

    cls = load_driver(spec.driver)
    return bool(getattr(cls, "runs_own_schedule", False) is True) and not monitored(spec)


def check_fit(protocol: Protocol, station: Station) -> list[Problem]:
    """Problems running ``protocol`` (resolved) on the station's schedule-running cycler
    channels: a step BTS cannot express, a monitor-only channel given steps to run."""
    from cellbench.daq.neware_steps import NewareStepError

    problems: list[Problem] = []
    source = str(protocol.path) if protocol.path else "<protocol>"
    for spec in station.instruments:
        if "source" not in spec.roles:
            continue
        if monitored(spec):
            for step, _ in protocol.walk():
                if not isinstance(step, Rest | Ocv | Loop):
                    problems.append(Problem(
                        source, step.line, f"step {step.index} ({step.kind})",
                        f"instrument {spec.name} only monitors its channel (control = "
                        '"monitor"): a monitor-only protocol has rest steps (how long to '
                        "record) and [safety]",
                    ))  # fmt: skip
        elif _translates(spec):
            try:
                protocol_to_step_file(protocol)
            except NewareStepError as exc:
                for line, where, why in exc.problems:
                    problems.append(Problem(
                        source, line, where,
                        f"{why} (instrument {spec.name} runs protocols as Neware BTS step files)",
                    ))  # fmt: skip
    return problems


def _rest_total(protocol: Protocol) -> float:
    total = 0.0
    for step, _ in protocol.walk():
        if isinstance(step, Rest | Ocv):
            total += step.duration_second
    return total


def run_on_cycler(r: ChannelRunner) -> str:
    """The thread body of a channel on a schedule-running cycler; returns why it ended."""
    link = r.io.source
    assert link is not None
    driver, ctx = link.driver, r.ctx
    monitor = getattr(driver, "control", "") == "monitor"
    mapping: dict[int, int] = {}
    limit_s: float | None = None
    r._check_stop()
    if r.resume is not None:
        raise EngineConfigError(
            f"channel {r.channel}: a run on {link.name}, a cycler running its own schedule, "
            "cannot be resumed; its test goes on (or ended) at the cycler: record the rest "
            'with a new run (control = "monitor") or read the cycler\'s data file'
        )
    if monitor:
        limit_s = _rest_total(r.protocol)
        link.call(driver.attach)
        r.event_now("note", f"recording {link.name}'s own schedule for at most {limit_s:g} s")
        offset: float | None = None
    else:
        cap = getattr(ctx.options, "max_loop_iterations", None)
        step_file = protocol_to_step_file(r.protocol, max_loop_iterations=cap)
        run_path = getattr(ctx, "run_path", None)
        path = (run_path / STEP_FILE_NAME) if run_path is not None else None
        if path is None:
            raise RuntimeError("the run folder is needed to hand the step file to the cycler")
        step_file.write(path)
        mapping = step_file.step_index
        offset = ctx.test_time()
        link.enable(driver.start_schedule, str(path.resolve()))
        r.event_now(
            "note",
            f"{link.name}: started the protocol as BTS step file {path.name}",
            data={"step_file": str(path), "step_index": mapping},
        )
    started_wall = time.monotonic()
    clock0 = ctx.clock.now()
    seen_running = False
    last_key: tuple[int, int] | None = None
    next_t = clock0
    while True:
        r._check_stop()
        if ctx.pause.asked(r.channel):  # the cycler runs the schedule: nothing to hold here
            ctx.pause.ask_continue([r.channel])
            r.event_now(
                "status",
                f"{link.name} runs its own schedule: pause it at the cycler (not paused here)",
                severity="warning",
                data={"action": "pause_refused"},
            )
        poll = link.call(driver.poll)
        for rec in poll.records:
            if offset is None:
                offset = ctx.test_time() - rec.test_time_second
            last_key = _record(r, rec, offset + rec.test_time_second, mapping, last_key)
        if poll.state == "running" or poll.records:
            seen_running = True
        if poll.state == "faulted":
            r.abort(f"the cycler stopped the channel itself (protection): {poll.detail}")
        if poll.state != "running" and (
            seen_running or time.monotonic() - started_wall > START_GRACE_WALL_S
        ):
            reason = {
                "finished": "the cycler's schedule finished",
                "stopped": "the test was stopped at the cycler",
                "idle": "the channel is not running a test",
            }.get(poll.state, poll.state)
            r.event_now("note", f"{link.name}: {reason} ({poll.detail})")
            r.keep_last_sample()
            return reason
        if limit_s is not None and ctx.clock.now() - clock0 >= limit_s:
            r.event_now("note", f"recorded {limit_s:g} s of {link.name}'s own schedule")
            return f"time {limit_s:g} s"
        next_t += r.interval_s
        now = ctx.clock.now()
        if next_t < now - r.interval_s:
            next_t = now
        r._sleep_until(next_t)
    return ""  # pragma: no cover


def _record(
    r: ChannelRunner,
    rec: Any,
    t: float,
    mapping: dict[int, int],
    last_key: tuple[int, int] | None,
) -> tuple[int, int]:
    """One cycler record into the run: counters, integration, the row, the safety check."""
    s, ctx = r.state, r.ctx
    key = (rec.cycle, rec.step)
    if key != last_key:
        if last_key is None or rec.cycle != s.cycle_count:
            if last_key is not None:
                for k in ("charging_capacity_ampere_hour", "discharging_capacity_ampere_hour",
                          "charging_energy_watt_hour", "discharging_energy_watt_hour"):  # fmt: skip
                    setattr(s, k, 0.0)
            s.cycle_count = rec.cycle
        s.step_count += 1
        s.step_index = mapping.get(rec.step, rec.step)
        s.step_kind = rec.step_kind
        s.step_label = f"cycler step {rec.step} ({rec.step_kind})"
        s.step_start_second = t
        s.step_time_limit_second = None
        s.step_capacity_ampere_hour = 0.0
        r.event_now(
            "note",
            f"cycler step {rec.step} ({rec.step_kind}), cycle {rec.cycle}",
            data={"cycler_step": rec.step, "cycle": rec.cycle, "kind": rec.step_kind},
        )
    v, i = float(rec.voltage_volt), float(rec.current_ampere)
    r._prev = integrate_sample(s, r._prev, t, v, i)
    temp = r.io.temperature.value() if r.io.temperature is not None else math.nan
    pres = r.io.pressure.value() if r.io.pressure is not None else math.nan
    s.test_time_second, s.voltage_volt, s.current_ampere = t, v, i
    s.temperature_celsius, s.pressure_megapascal = temp, pres
    wall = time.monotonic()
    s.measured_monotonic = wall
    s.samples += 1
    ctx.recorder.add_sample(
        (
            r.channel,
            t,
            ctx.unix_time(t),
            v,
            i,
            s.cycle_count,
            s.step_count,
            s.step_index,
            None if math.isnan(temp) else temp,
            None if math.isnan(pres) else pres,
            s.charging_capacity_ampere_hour,
            s.discharging_capacity_ampere_hour,
            s.charging_energy_watt_hour,
            s.discharging_energy_watt_hour,
            s.step_capacity_ampere_hour,
            None,
        ),
        wall,
    )
    breach = check(r._limits, voltage_volt=v, current_ampere=i, **r._aux_readings())
    if breach is not None:
        r._breach(breach)
    return key
