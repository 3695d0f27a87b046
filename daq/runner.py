"""One channel running a protocol: step state machine, counters, accumulators, per-sample safety.

A :class:`ChannelRunner` owns one source instrument (its thread is that connection's only user
apart from an abort) and borrows the impedance analyzer and the auxiliary samplers that serve its
channel. Every sample it takes is integrated into the cycle's charge/discharge capacity and energy,
checked against the safety limits, and handed to the recorder.

Counters follow the Battery Data Format:

* ``step_index``: the protocol step being executed, numbered from 0 in the order the steps are
  written (a loop's own entry has an index too; its body's steps follow it).
* ``step_count``: running count of steps executed, from 1; every execution of a step in a loop
  counts again.
* ``cycle_count``: from 1. A new cycle starts at the beginning of a loop iteration when the
  current cycle has already passed charge (so rests and EIS before the first charge belong to
  cycle 1, and an EIS-vs-temperature loop without current does not advance the count). The
  charge/discharge capacity and energy columns restart at 0 with each cycle.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from cellbench.daq import steps as st
from cellbench.daq.counters import integrate_sample
from cellbench.daq.link import Cancelled, InstrumentLink
from cellbench.daq.lockstep import register_actor
from cellbench.daq.protocol import Ends, Limits, Loop, Step
from cellbench.daq.safety import Breach, check

if TYPE_CHECKING:
    from cellbench.daq.aux import AuxSampler
    from cellbench.daq.engine import RunContext

log = logging.getLogger(__name__)

#: wall s a source that times itself (EmStat script) may run past the step's planned end
SOURCE_TIME_MARGIN_WALL_S = 60.0
_SHORT_WAIT_S = 0.2  # wall s: shorter waits between samples sleep instead of waiting on the stop


class StopRun(Exception):
    """Raised inside a runner when the run stops (``stopped``) or aborts (``aborted``)."""

    def __init__(self, status: str, reason: str):
        self.status = status
        self.reason = reason
        super().__init__(reason)


@dataclass
class ChannelIO:
    """What one channel talks to. The impedance link may be shared by several channels (its lock
    then makes their sweeps take turns)."""

    channel: str
    source: InstrumentLink | None  # None: an impedance-only channel (a pellet in a chamber)
    impedance: InstrumentLink | None = None
    temperature: AuxSampler | None = None
    pressure: AuxSampler | None = None
    resistance: AuxSampler | None = None
    temperature_control: InstrumentLink | None = None
    press: InstrumentLink | None = None  # a motorised press (pressure set-point steps)


@dataclass
class ChannelState:
    """Where a channel is; read by displays (plain attributes, updated by the runner thread)."""

    channel: str
    cycle_count: int = 1
    step_count: int = 0
    step_index: int = -1
    step_kind: str = ""
    step_label: str = ""
    step_start_second: float = 0.0
    step_time_limit_second: float | None = None
    test_time_second: float = 0.0
    voltage_volt: float = math.nan
    current_ampere: float = math.nan
    temperature_celsius: float = math.nan
    pressure_megapascal: float = math.nan
    charging_capacity_ampere_hour: float = 0.0
    discharging_capacity_ampere_hour: float = 0.0
    charging_energy_watt_hour: float = 0.0
    discharging_energy_watt_hour: float = 0.0
    step_capacity_ampere_hour: float = 0.0
    cycle_has_current: bool = False
    sweep_index: int = 0
    samples: int = 0
    finished: bool = False
    end_reason: str = ""
    measured_monotonic: float = math.nan  # time.monotonic() of the newest V/I reading
    stale_after_wall_s: float = 2.0  # a reading older than this (wall s) is shown as stale

    @property
    def reading_age_second(self) -> float:
        """Wall seconds since V and I were last read (NaN before the first reading)."""
        return time.monotonic() - self.measured_monotonic

    @property
    def stale_age_second(self) -> float | None:
        """The reading's age when it is stale (an instrument not answering), else None: a
        display shows this beside V and I instead of showing them as if live."""
        age = self.reading_age_second
        return age if age > self.stale_after_wall_s and not self.finished else None

    @property
    def step_remaining_second(self) -> float | None:
        if self.step_time_limit_second is None:
            return None
        return max(
            0.0, self.step_start_second + self.step_time_limit_second - self.test_time_second
        )


@dataclass
class Checkpoint:
    """Enough to restart a channel at the start of a step (stored in each step_start event)."""

    frames: list[dict[str, int]]  # path through the protocol: {"i": index in block, "iter": n}
    cycle_count: int
    step_count: int  # before the step started
    sweep_index: int
    cycle_has_current: bool
    accumulators: dict[str, float]
    loop_first_discharge: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


ACCUMULATORS = (
    "charging_capacity_ampere_hour",
    "discharging_capacity_ampere_hour",
    "charging_energy_watt_hour",
    "discharging_energy_watt_hour",
)


class ChannelRunner:
    """Runs ``protocol`` on one channel; :meth:`run` is the thread body."""

    def __init__(self, ctx: RunContext, io: ChannelIO, protocol: Any):
        self.ctx = ctx
        self.io = io
        self.protocol = protocol
        self.channel = io.channel
        self.state = ChannelState(io.channel)
        self.interval_s = ctx.sample_interval_s
        self.run_limits: Limits = ctx.limits
        self._limits = self.run_limits
        self._prev: tuple[float, float, float] | None = None  # (t, V, I) of the last sample
        self._loop_first: dict[str, float] = {}
        self._drive: Callable[[], None] | None = None  # re-applies the output after a reconnect
        self._record_every: float | None = None  # decimation of recorded rows (step options)
        self._record_dv: float | None = None
        self._last_recorded: tuple[float, float] | None = None  # (t, V) of the last row kept
        self._held: tuple[tuple, float] | None = None  # newest row not kept (yet)
        self.thread = threading.Thread(target=self.run, name=f"cellbench-{io.channel}", daemon=True)
        # on a lockstep clock (repeatable simulations) time waits for this thread's samples
        self._actor = register_actor(ctx.clock)
        self.error: BaseException | None = None
        self.resume: Checkpoint | None = None
        self._max_step_s: float | None = None  # the source's own run-time bound, as configured
        wall = getattr(ctx.clock, "wall_seconds", None)
        interval_wall = float(wall(self.interval_s)) if wall is not None else self.interval_s
        self.state.stale_after_wall_s = max(2.0, 3.0 * interval_wall)

    # --------------------------------------------------------------------------- thread body

    def run(self) -> None:
        if self._actor is not None:
            self._actor.bind(self.ctx.stop)  # a stop is seen by the first step
        try:
            self._run()
        finally:
            self.ctx.pause.finished(self.channel)  # nothing left to hold
            if self._actor is not None:
                self._actor.finish()

    def _run(self) -> None:
        try:
            resume = self.resume
            if resume is not None:
                self._restore(resume)
            source = self.io.source.driver if self.io.source is not None else None
            if getattr(source, "runs_own_schedule", False) is True:  # Neware; harvest
                from cellbench.daq.cycler_runs import run_on_cycler

                run_on_cycler(self)
            else:
                self._block(self.protocol.steps, [], resume.frames if resume else None)
            self.state.finished = True
            self.state.end_reason = "completed"
            self._off()
        except StopRun as stop:
            self.keep_last_sample()  # the last measurement before the stop is kept
            self.state.end_reason = stop.reason
            if stop.status != "aborted":
                self._off()
        except Cancelled as exc:
            self.state.end_reason = str(exc)
        except Exception as exc:  # the engine aborts the run and records the fault
            self.error = exc
            self.state.end_reason = f"{type(exc).__name__}: {exc}"
            # The engine logs the fault once ("run aborted: ..."), and records it as an event;
            # a lost instrument is an event of the run, not a crash: no traceback unless debug.
            log.info("channel %s failed: %s: %s", self.channel, type(exc).__name__, exc)
            log.debug("channel %s failure", self.channel, exc_info=True)
            self.ctx.fault(exc, self.channel)

    def _off(self) -> None:
        if self.io.source is None:
            return
        try:
            self.io.source.call(self.io.source.driver.output_off)
        except Exception as exc:  # the engine's final safe_state() still follows
            log.warning("channel %s: output off failed: %s", self.channel, exc)

    def _restore(self, cp: Checkpoint) -> None:
        s = self.state
        s.cycle_count = cp.cycle_count
        s.step_count = cp.step_count
        s.sweep_index = cp.sweep_index
        s.cycle_has_current = cp.cycle_has_current
        for k in ACCUMULATORS:
            setattr(s, k, float(cp.accumulators.get(k, 0.0)))
        self._loop_first = dict(cp.loop_first_discharge)

    # ------------------------------------------------------------------------- protocol walk

    def _block(
        self, steps: Sequence[Step], frames: list[dict[str, int]], resume: list[dict] | None
    ) -> None:
        start = int(resume[0]["i"]) if resume else 0
        for i in range(start, len(steps)):
            step = steps[i]
            here = resume if (resume and i == start) else None
            if isinstance(step, Loop):
                first_iter = int(here[0].get("iter", 0)) if here else 0
                self._loop(step, frames, i, first_iter, here[1:] if here else None)
            else:
                self._step(step, [*frames, {"i": i}])

    def _loop(
        self,
        loop: Loop,
        frames: list[dict[str, int]],
        i: int,
        first_iter: int,
        resume: list[dict] | None,
    ) -> None:
        key = "/".join(str(f["i"]) for f in [*frames, {"i": i}])
        count = st.loop_count(loop, self.ctx.options.max_loop_iterations)
        until = loop.until
        clock0 = self.ctx.clock.now()
        it = first_iter
        while it < count:
            if self.state.cycle_has_current and not (resume and it == first_iter):
                self._new_cycle()
            here = [*frames, {"i": i, "iter": it}]
            self._block(loop.steps, here, resume if it == first_iter else None)
            resume = None
            it += 1
            if until is not None:
                why = self._loop_done(loop, until, key, self.ctx.clock.now() - clock0)
                if why:
                    self.event_now(
                        "note",
                        f"loop step {loop.index} ends after {it} iteration(s): {why}",
                        step_index=loop.index,
                    )
                    return

    def _loop_done(self, loop: Loop, until: Any, key: str, elapsed_s: float) -> str | None:
        """Whether a loop's ``until`` holds after an iteration (first met wins)."""
        dis = self.state.discharging_capacity_ampere_hour
        if until.discharge_capacity_below_fraction is not None:
            first = self._loop_first.get(key)
            if first is None:
                if dis > 0:
                    self._loop_first[key] = dis
            elif dis < until.discharge_capacity_below_fraction * first:
                return (
                    f"discharge capacity {dis * 1e3:.4g} mAh of cycle {self.state.cycle_count} "
                    f"is below {until.discharge_capacity_below_fraction:.0%} of the first "
                    f"({first * 1e3:.4g} mAh)"
                )
        ah = until.discharge_capacity_below_ampere_hour
        if ah is not None and dis < ah:
            return f"discharge capacity {dis * 1e3:.4g} mAh is below {ah * 1e3:.4g} mAh"
        if until.time_second is not None and elapsed_s >= until.time_second:
            return f"loop time {until.time_second:g} s reached"
        return None

    def _new_cycle(self) -> None:
        s = self.state
        s.cycle_count += 1
        s.cycle_has_current = False
        for k in ACCUMULATORS:
            setattr(s, k, 0.0)

    def _due(self, step: Any, frames: list[dict[str, int]]) -> bool:
        """EIS ``every_cycles = N`` inside a loop: run on iterations 0, N, 2N, ..."""
        every = getattr(step, "every_cycles", None)
        if not every or every <= 1:
            return True
        loops = [f for f in frames if "iter" in f]
        if not loops:
            return True
        return loops[-1]["iter"] % every == 0

    def _step(self, step: Any, frames: list[dict[str, int]]) -> None:
        if not self._due(step, frames):
            return
        self._check_stop()
        if self.ctx.pause.asked(self.channel):  # a safe point: the previous step has ended
            where = f"before step {step.index} ({st.describe(step)})"
            self.state.step_label = f"paused {where}"
            self.state.step_time_limit_second = None
            self.hold_paused(where)
        s = self.state
        cp = Checkpoint(
            frames=frames,
            cycle_count=s.cycle_count,
            step_count=s.step_count,
            sweep_index=s.sweep_index,
            cycle_has_current=s.cycle_has_current,
            accumulators={k: getattr(s, k) for k in ACCUMULATORS},
            loop_first_discharge=dict(self._loop_first),
        )
        s.step_count += 1
        s.step_index = step.index
        s.step_kind = step.kind
        s.step_label = st.describe(step)
        s.step_start_second = self.ctx.test_time()
        s.step_time_limit_second = st.time_limit(step)
        s.step_capacity_ampere_hour = 0.0
        self._limits = self.run_limits.merged(step.limits)
        self._record_every = step.record_interval_second
        self._record_dv = step.record_dv_volt
        self._last_recorded = None
        run = st.executor(step)
        self.event_now("step_start", f"step {s.step_index} {s.step_label}", data=cp.to_dict())
        reason = run(self, step)
        self.keep_last_sample()
        self._drive = None
        self.event_now(
            "step_end",
            f"step {s.step_index} {s.step_kind} ended: {reason}",
            data={"reason": reason, "step_capacity_ah": s.step_capacity_ampere_hour},
        )

    # ------------------------------------------------------------------------ step primitives

    def event_now(self, kind: str, message: str, *, severity: str = "info", **fields: Any) -> None:
        s = self.state
        self.ctx.recorder.event(
            kind,
            message,
            severity=severity,
            channel=self.channel,
            test_time_second=self.ctx.test_time(),
            cycle_count=s.cycle_count,
            **{"step_index": s.step_index if s.step_index >= 0 else None, **fields},
        )

    def _check_stop(self) -> None:
        if self.ctx.stop.is_set():
            raise StopRun(self.ctx.status_on_stop, self.ctx.stop_reason)

    def output_off(self) -> None:
        """Open circuit; remembered as the drive to restore after a reconnect."""
        src = self.io.source
        if src is None:
            self._drive = None
            return
        self._drive = lambda: src.call(src.driver.output_off)
        self._drive()

    def source_current(self, current_ampere: float, voltage_limit_volt: float) -> None:
        src = self._source()
        self.state.cycle_has_current = True  # driven current makes this cycle a cycle

        def drive() -> None:
            self._bound_source_time(src)
            src.enable(
                src.driver.source_current, current_ampere, voltage_limit_volt=voltage_limit_volt
            )

        self._drive = drive
        drive()

    def source_voltage(self, voltage_volt: float, current_limit_ampere: float) -> None:
        src = self._source()
        self.state.cycle_has_current = True

        def drive() -> None:
            self._bound_source_time(src)
            src.enable(
                src.driver.source_voltage, voltage_volt, current_limit_ampere=current_limit_ampere
            )

        self._drive = drive
        drive()

    def _bound_source_time(self, src: InstrumentLink) -> None:
        """Where the instrument itself runs a source for a set time (a PalmSens EmStat's
        MethodSCRIPT run time, the driver's ``max_step_s``), set it to what is left of the step
        plus a margin: a logger that dies then leaves the cell sourced no longer than the step
        would have lasted (the script also keeps checking its |V| or |I| limit by itself). Steps
        without a time limit keep the driver's configured run time (None: unbounded, as a
        Keithley 2450's trigger-model bound by default). Clock seconds: simulated instruments
        run their scripts on the simulated clock, real ones on the wall (scale 1).
        """
        driver = src.driver
        if not hasattr(driver, "max_step_s"):
            return
        if self._max_step_s is None:  # as configured (station options)
            configured = driver.max_step_s
            self._max_step_s = math.inf if configured is None else float(configured)
        left = self.state.step_remaining_second
        bound = self._max_step_s
        if left is not None:
            scale = float(getattr(self.ctx.clock, "time_scale", 1.0) or 1.0)
            bound = min(bound, left * 1.05 + SOURCE_TIME_MARGIN_WALL_S * scale)
        driver.max_step_s = max(bound, 1.0) if math.isfinite(bound) else None

    def _source(self) -> InstrumentLink:
        if self.io.source is None:
            raise st.EngineConfigError(f"channel {self.channel}: the step needs a source")
        return self.io.source

    def abort(self, reason: str) -> None:
        """Abort the whole run from this channel (alarm), then leave the step."""
        self.ctx.abort(f"channel {self.channel}: {reason}", channel=self.channel)
        raise StopRun("aborted", reason)

    def hold(
        self,
        ends: Ends,
        *,
        extra: Callable[[float, float, float], str | None] | None = None,
        pausable: bool = False,
    ) -> str:
        """Sample every interval until an end condition holds; returns why it ended.

        ``extra(elapsed_s, voltage_V, current_A)`` may end the phase too (stability, shorts).
        Time ends are hit on the dot: the last wait is shortened to land on the limit.
        ``pausable`` (a rest at open circuit): a pause request holds here at once, and the
        phase's clock stops meanwhile, so the phase keeps the time it had left.
        """
        clock = self.ctx.clock
        phase_clock0 = clock.now()
        q0 = self.state.step_capacity_ampere_hour
        next_t = phase_clock0
        while True:
            self._check_stop()
            if pausable and self.ctx.pause.asked(self.channel):
                left = ""
                if ends.time_second is not None:
                    remaining = max(0.0, ends.time_second - (clock.now() - phase_clock0))
                    left = f", {remaining:.4g} s of it left"
                step = f"step {self.state.step_index} ({self.state.step_label})"
                limit, self.state.step_time_limit_second = self.state.step_time_limit_second, None
                held = self.hold_paused(f"in rest {step}{left}")
                phase_clock0 += held  # the rest's own clock stood still
                self.state.step_start_second += held
                self.state.step_time_limit_second = limit
                next_t = clock.now()
            _, v, i = self.sample()
            elapsed = clock.now() - phase_clock0
            q = self.state.step_capacity_ampere_hour - q0
            reason = st.ends_reached(ends, elapsed, v, i, q)
            if reason is None and extra is not None:
                reason = extra(elapsed, v, i)
            if reason is not None:
                self.keep_last_sample()  # the sample that ended a phase is always recorded
                return reason
            next_t += self.interval_s
            now = clock.now()
            if next_t < now - self.interval_s:
                # More than a whole sample behind (slow instrument, outage): skip the missed
                # slots rather than burst; a late wake-up within one interval is caught up.
                next_t = now
            if ends.time_second is not None:
                next_t = min(next_t, phase_clock0 + ends.time_second)
            self._sleep_until(next_t)

    def hold_paused(self, where: str) -> float:
        """Hold here, output off, until the channel is continued (or the run stops): sampled
        every interval, safety limits checked, recorded. Returns the clock seconds held."""
        ctx, clock = self.ctx, self.ctx.clock
        self.output_off()
        t0 = clock.now()
        ctx.pause.holding(self.channel, True)
        self.event_now("status", f"paused {where}", data={"action": "paused"})
        try:
            next_t = t0
            while ctx.pause.asked(self.channel):
                self._check_stop()
                self.sample()
                next_t += self.interval_s
                now = clock.now()
                if next_t < now - self.interval_s:
                    next_t = now
                self._wait_paused(next_t)
            self._check_stop()
        finally:
            ctx.pause.holding(self.channel, False)
        held = clock.now() - t0
        self.event_now(
            "status",
            f"continued after {held:.4g} s paused",
            data={"action": "continued", "paused_second": held},
        )
        return held

    def _wait_paused(self, clock_t: float) -> None:
        """Wait until ``clock_t`` or a continue; a stop is seen within a quarter second."""
        if self._actor is not None:  # lockstep clock: time goes on; the continue is seen next
            self._sleep_until(clock_t)  # interval, a few wall ms at a demo's time scale
            return
        clock = self.ctx.clock
        while True:
            self._check_stop()
            wait = clock.wall_seconds(clock_t - clock.now())
            if wait <= 0 or self.ctx.pause.wait_changed(self.channel, min(wait, 0.25)):
                return

    def _sleep_until(self, clock_t: float) -> None:
        if self._actor is not None:  # lockstep clock: no wall-time wait, the clock wakes us
            if self._actor.wait_until(clock_t, self.ctx.stop):
                raise StopRun(self.ctx.status_on_stop, self.ctx.stop_reason)
            return
        clock = self.ctx.clock
        wait = clock.wall_seconds(clock_t - clock.now())
        if wait <= 0:
            return
        if wait <= _SHORT_WAIT_S:
            # A plain sleep costs a fraction of Event.wait's condition-variable round trip, which
            # matters at 64 channels x 10 Hz; a stop is still seen within this one short wait.
            time.sleep(wait)
            self._check_stop()
        elif self.ctx.stop.wait(wait):
            raise StopRun(self.ctx.status_on_stop, self.ctx.stop_reason)

    def sample(self) -> tuple[float, float, float]:
        """Measure, integrate, check limits, record; returns (test time s, V, A)."""
        src = self.io.source
        if src is None:
            return self._sample_aux_only()
        outages = len(src.outages)
        called = time.monotonic()
        reading = src.call(src.driver.measure)
        wall = time.monotonic()
        ctx = self.ctx
        t = ctx.test_time()
        v, i = float(reading.voltage_volt), float(reading.current_ampere)
        s = self.state
        if len(src.outages) > outages:
            self._after_outage(t, src.outages[-1])
        elif self._actor is None and wall - called > self.ctx.options.gap_threshold_s:
            # (on a lockstep clock a slow call costs no simulated time: no sample was missed)
            # The driver recovered by itself (e.g. reopened its port), but samples were missed.
            self._after_outage(t, None, wall - called)
        self._prev = integrate_sample(s, self._prev, t, v, i)
        temp = self.io.temperature.value() if self.io.temperature is not None else math.nan
        pres = self.io.pressure.value() if self.io.pressure is not None else math.nan
        s.test_time_second, s.voltage_volt, s.current_ampere = t, v, i
        s.temperature_celsius, s.pressure_megapascal = temp, pres
        s.measured_monotonic = wall
        s.samples += 1
        self._record(
            (
                self.channel,
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
                self._resistance(),
            ),
            wall,
            t,
            v,
        )
        breach = check(
            self._limits,
            voltage_volt=v,
            current_ampere=i,
            **self._aux_readings(),
        )
        if breach is not None:
            self._breach(breach)
        return t, v, i

    def _aux_readings(self) -> dict[str, float]:
        """Temperature and pressure to check: those of the instruments serving this channel. A
        NaN from one of them (dead sensor, or its reading stale) is a breach of its limit."""
        out = {}
        if self.io.temperature is not None:
            out["temperature_celsius"] = self.io.temperature.checked_value()
        if self.io.pressure is not None:
            out["pressure_megapascal"] = self.io.pressure.checked_value()
        return out

    def _resistance(self) -> float | None:
        if self.io.resistance is None:
            return None
        value = self.io.resistance.value()
        return None if math.isnan(value) else value

    def _sample_aux_only(self) -> tuple[float, float, float]:
        """A channel without a source records no samples, but its time, temperature and
        pressure still advance and are checked against the limits."""
        s = self.state
        t = self.ctx.test_time()
        temp = self.io.temperature.value() if self.io.temperature is not None else math.nan
        pres = self.io.pressure.value() if self.io.pressure is not None else math.nan
        s.test_time_second, s.temperature_celsius, s.pressure_megapascal = t, temp, pres
        breach = check(self._limits, **self._aux_readings())
        if breach is not None:
            self._breach(breach)
        return t, math.nan, math.nan

    def _record(self, row: tuple, wall: float, t: float, v: float) -> None:
        """Keep the row, or hold it back when the step records less often (record_every /
        record_dv); a held row is kept if it turns out to be the last of a phase or a breach."""
        last = self._last_recorded
        if last is not None and (self._record_every is not None or self._record_dv is not None):
            due_t = self._record_every is not None and t - last[0] >= self._record_every - 1e-9
            due_v = self._record_dv is not None and abs(v - last[1]) >= self._record_dv
            if not (due_t or due_v):
                self._held = (row, wall)
                return
        self._held = None
        self._last_recorded = (t, v)
        self.ctx.recorder.add_sample(row, wall)

    def keep_last_sample(self) -> None:
        """Record the newest sample even if record_every / record_dv held it back (the sample
        that ends a phase, a breach, or an end condition building up its evidence)."""
        if self._held is not None:
            row, wall = self._held
            self._held = None
            self._last_recorded = (row[1], row[3])
            self.ctx.recorder.add_sample(row, wall)

    def _breach(self, breach: Breach) -> None:
        self.keep_last_sample()
        self.ctx.abort_on_breach(breach, self.channel, self.state)
        raise StopRun("aborted", f"safety limit: {breach.message}")

    def _after_outage(self, t: float, outage: Any, slow_wall_s: float = 0.0) -> None:
        """Record the samples that were missed as a gap and restore the output.

        ``outage``: the link's record of failed calls; None when one call was just very slow
        (``slow_wall_s``, over the engine's ``gap_threshold_s``: the driver reconnected itself).
        """
        last = self._prev[0] if self._prev is not None else self.state.step_start_second
        self._prev = None  # no integration across a gap: the current then is unknown
        name = self.io.source.name if self.io.source is not None else ""
        if outage is None:
            why = f"one reading took {slow_wall_s:.2f} s (wall)"
            data = {"instrument": name, "wall_second": slow_wall_s, "attempts": 1, "reconnects": 0}
        else:
            why = (
                f"{outage.attempts} failed attempts, {outage.reconnects} reconnects: "
                f"{outage.first_error}"
            )
            data = {
                "instrument": outage.instrument,
                "wall_second": outage.duration_wall_second,
                "attempts": outage.attempts,
                "reconnects": outage.reconnects,
            }
        self.event_now(
            "gap",
            f"no samples from {name} for {t - last:.3g} s ({why})",
            severity="warning",
            duration_second=t - last,
            data={**data, "from_test_time_second": last, "to_test_time_second": t},
        )
        if self._drive is not None:
            self._drive()

    # ----------------------------------------------------------------------------- EIS

    def sweep(
        self,
        start_hertz: float,
        stop_hertz: float,
        points_per_decade: int,
        amplitude: float,
        *,
        amplitude_unit: str,
        dc_bias_volt: float | None,
    ) -> pl.DataFrame:
        """One impedance sweep recorded to ``spectra``; the source output is off meanwhile."""
        imp = self.io.impedance
        if imp is None:
            raise RuntimeError(f"channel {self.channel}: EIS step but no impedance instrument")
        self.output_off()
        self._check_stop()
        _, v0, _ = self.sample()
        self.keep_last_sample()
        t_a = self.ctx.test_time()
        frame = imp.call(
            imp.driver.sweep,
            start_hertz,
            stop_hertz,
            points_per_decade,
            amplitude,
            amplitude_unit=amplitude_unit,
            dc_bias_volt=dc_bias_volt,
        )
        t_b = self.ctx.test_time()
        n = frame.height
        # Points are timed by linear interpolation over the sweep: drivers return a whole sweep.
        times = np.linspace(t_a, t_b, n) if n else np.zeros(0)
        s = self.state
        temp = self.io.temperature.value() if self.io.temperature is not None else math.nan
        extra = []
        if "dc_voltage_volt" not in frame.columns:
            dc = dc_bias_volt if dc_bias_volt is not None else v0
            dc = None if dc is None or math.isnan(dc) else dc
            extra.append(pl.lit(dc, dtype=pl.Float64).alias("dc_voltage_volt"))
        if "dc_current_ampere" not in frame.columns and dc_bias_volt is None:
            extra.append(pl.lit(0.0, dtype=pl.Float64).alias("dc_current_ampere"))
        out = frame.with_columns(
            pl.lit(self.channel).alias("channel"),
            pl.lit(s.sweep_index, dtype=pl.Int32).alias("sweep_index"),
            pl.Series("test_time_second", times, dtype=pl.Float64),
            pl.Series("unix_time_second", [self.ctx.unix_time(x) for x in times], dtype=pl.Float64),
            pl.lit(s.cycle_count, dtype=pl.Int32).alias("cycle_count"),
            pl.lit(s.step_index, dtype=pl.Int32).alias("step_index"),
            pl.lit(None if math.isnan(temp) else temp, dtype=pl.Float64).alias(
                "temperature_celsius"
            ),
            *extra,
        )
        self.ctx.recorder.add_spectrum(out)
        s.sweep_index += 1
        self._prev = None  # the source was idle: no integration over the sweep
        return out
