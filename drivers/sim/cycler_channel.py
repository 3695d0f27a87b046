"""One channel of a simulated cycler: direct control, a step schedule, the channel's own safety
limits, records at an interval, and the true charge each step moved through the cell.

A :class:`SimChannel` drives one :class:`~cellbench.drivers.sim.cell.SimCell`. The cycler's
:class:`Ticker` thread calls :meth:`SimChannel.tick` on every running channel about every
millisecond of wall time (and each server calls it before answering), so end conditions and
safety limits are checked as the cell evolves, whether or not anyone polls: a channel whose
logger died still stops at its own limits. Units: V, A (positive on charge), s, Ah, Wh.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

from cellbench.drivers.sim.cell import SimCell

#: step kinds a schedule runs (a Neware BTS step type or a Maccor procedure step maps to one)
KINDS = ("rest", "cc", "cv", "cccv", "cycle", "end")


@dataclass
class SimStep:
    """One schedule step. ``current_ampere`` is signed (negative: discharge).

    Ends (first met): ``time_second``; ``stop_voltage_volt`` (reached from the side the current
    drives to); ``stop_current_ampere`` (|I| at or below, in CV); ``capacity_ampere_hour``.
    A ``cycle`` step goes back to ``goto`` (an index in the schedule) until it has done so
    ``count - 1`` times; each jump starts a new cycle.
    """

    kind: str
    step_id: int
    current_ampere: float = 0.0
    voltage_volt: float | None = None
    time_second: float | None = None
    stop_voltage_volt: float | None = None
    stop_current_ampere: float | None = None
    capacity_ampere_hour: float | None = None
    record_second: float | None = None
    goto: int = 0
    count: int = 1
    type_code: int = 0  # the vendor's step type (BTS Step_Type), reported back


@dataclass
class Record:
    """One data record (what a cycler stores and downloads)."""

    seq: int
    test_time_second: float
    step_id: int
    cycle: int
    kind: str
    voltage_volt: float
    current_ampere: float
    step_capacity_ampere_hour: float
    step_energy_watt_hour: float
    unix_time_second: float


@dataclass
class StepTruth:
    """The charge a step really moved through the cell (from the cell's own state)."""

    cycle: int
    step_id: int
    kind: str
    charge_ampere_hour: float  # signed: positive charged into the cell


@dataclass
class SimChannel:
    """A cycler channel on ``cell``. Not thread-safe by itself: the cycler's lock guards it."""

    index: int
    cell: SimCell
    state: str = "idle"  # idle | direct | schedule | finished | stopped | faulted
    fault_reason: str = ""
    mode: str = "R"  # R, C, D (direct control)
    limits: dict[str, float] | None = None  # vmin, vmax, ichg, idis
    schedule: list[SimStep] = field(default_factory=list)
    position: int = 0
    cycle: int = 1
    loop_done: dict[int, int] = field(default_factory=dict)
    step_number: int = 0  # steps executed (direct: changes of output)
    test_start: float = 0.0
    step_start: float = 0.0
    last_time: float = math.nan
    last_v: float = math.nan
    last_i: float = 0.0
    step_capacity_ah: float = 0.0
    step_energy_wh: float = 0.0
    record_second: float = 10.0
    next_record: float = 0.0
    records: list[Record] = field(default_factory=list)
    truth: list[StepTruth] = field(default_factory=list)
    floor_volt: float | None = None  # direct discharge: mutually limiting voltage
    barcode: str = ""
    test_id: int = 0
    watchdog_s: float | None = None  # direct mode: suspend when no output command this long
    commanded_wall: float = 0.0  # time.monotonic() of the last output command
    _charge0: float = 0.0

    # -- control ------------------------------------------------------------------------------
    def now(self) -> float:
        return self.cell.clock.now()

    def charge_ah(self) -> float:
        return self.cell.soc * self.cell.capacity_ah

    def begin_test(self, state: str, record_second: float) -> None:
        now = self.now()
        self.state, self.fault_reason = state, ""
        self.commanded_wall = time.monotonic()
        self.test_start = self.step_start = now
        self.cycle, self.step_number, self.position = 1, 0, 0
        self.loop_done = {}
        self.records, self.truth = [], []
        self.record_second = max(float(record_second), 1e-3)
        self.next_record = now
        self.test_id += 1
        self.last_time = math.nan
        self._begin_step()

    def _begin_step(self) -> None:
        self.step_number += 1
        self.step_start = self.now()
        self.step_capacity_ah = self.step_energy_wh = 0.0
        self._charge0 = self.charge_ah()

    def _end_step_truth(self, step_id: int, kind: str) -> None:
        self.truth.append(StepTruth(self.cycle, step_id, kind, self.charge_ah() - self._charge0))

    def set_direct(self, mode: str, current: float, voltage: float) -> None:
        """Direct output: ``C`` charge at |current| limited at ``voltage``; ``D`` discharge at
        |current| floored at ``voltage``; ``R`` rest."""
        self.tick()
        self.commanded_wall = time.monotonic()
        if self.mode != mode or mode != "R":
            self._end_step_truth(self.step_number, self.mode)
            self._begin_step()
        self.mode = mode
        self.floor_volt = None
        if mode == "R":
            self.cell.open_circuit()
        elif mode == "C":
            self.cell.set_current(abs(current), voltage_limit_volt=max(voltage, 1e-3))
        else:
            self.floor_volt = voltage
            self.cell.set_current(-abs(current))

    def start_schedule(self, steps: list[SimStep], record_second: float) -> None:
        self.schedule = list(steps)
        self.begin_test("schedule", record_second)
        self._apply()

    def stop(self, state: str = "stopped", reason: str = "") -> None:
        """Open circuit; the test ends (``stopped`` by command, ``faulted`` by a limit)."""
        if self.state in ("direct", "schedule"):
            self._record(self.now(), force=True)
            self._end_step_truth(self._step_id(), self._kind())
        self.cell.open_circuit()
        self.state, self.fault_reason, self.mode = state, reason, "R"

    # -- time ---------------------------------------------------------------------------------
    def tick(self) -> None:
        """Integrate, check the channel's safety limits and the step's ends, record."""
        if self.state not in ("direct", "schedule"):
            return
        now = self.now()
        v, i = self.cell.measure()
        if not math.isnan(self.last_time) and now > self.last_time:
            dt_h = (now - self.last_time) / 3600.0
            dq = 0.5 * (i + self.last_i) * dt_h
            self.step_capacity_ah += abs(dq)
            self.step_energy_wh += abs(0.5 * (i * v + self.last_i * self.last_v) * dt_h)
        self.last_time, self.last_v, self.last_i = now, v, i
        breach = self._breach(v, i)
        if (
            not breach
            and self.state == "direct"
            and self.watchdog_s is not None
            and time.monotonic() - self.commanded_wall > self.watchdog_s
        ):
            breach = f"direct-mode watchdog: no output command for {self.watchdog_s:g} s"
        if breach:
            self.stop("faulted", breach)
            return
        if self.state == "direct":
            floor = self.floor_volt
            at_floor = floor is not None and v <= floor
            if self.mode == "D" and at_floor and self.cell.mode == "current":
                self.cell.set_voltage(floor, abs(i) or 1e-9)  # type: ignore[arg-type]
        else:
            self._check_ends(now, v, i)
        if self.state in ("direct", "schedule"):
            self._record(now)

    def _breach(self, v: float, i: float) -> str:
        lim = self.limits
        if lim is None:
            return ""
        if v > lim["vmax"]:
            return f"voltage {v:.4g} V above the channel limit {lim['vmax']:g} V"
        if v < lim["vmin"]:
            return f"voltage {v:.4g} V below the channel limit {lim['vmin']:g} V"
        if i > lim["ichg"] * 1.001 + 1e-9:
            return f"charge current {i:.4g} A above the channel limit {lim['ichg']:g} A"
        if -i > lim["idis"] * 1.001 + 1e-9:
            return f"discharge current {-i:.4g} A above the channel limit {lim['idis']:g} A"
        return ""

    def _record(self, now: float, *, force: bool = False) -> None:
        interval = self.record_second
        if self.state == "schedule" and self.position < len(self.schedule):
            interval = self.schedule[self.position].record_second or interval
        if not force and now + 1e-9 < self.next_record:
            return
        v, i = self.cell.measure()
        self.records.append(
            Record(
                len(self.records) + 1,
                now - self.test_start,
                self._step_id(),
                self.cycle,
                self._kind(),
                v,
                i,
                self.step_capacity_ah,
                self.step_energy_wh,
                time.time(),
            )
        )
        self.next_record = now + interval

    def _step_id(self) -> int:
        if self.state == "schedule" and self.position < len(self.schedule):
            return self.schedule[self.position].step_id
        return self.step_number

    def _kind(self) -> str:
        if self.state == "schedule" and self.position < len(self.schedule):
            return self.schedule[self.position].kind
        return {"R": "rest", "C": "cc", "D": "cc"}.get(self.mode, "rest")

    # -- schedules ----------------------------------------------------------------------------
    def _apply(self) -> None:
        """Set the cell for the step at ``position`` (cycle and end steps act at once)."""
        while self.position < len(self.schedule):
            step = self.schedule[self.position]
            if step.kind == "cycle":
                done = self.loop_done.get(self.position, 0)
                if done + 1 < step.count:
                    self.loop_done[self.position] = done + 1
                    for inner in range(step.goto, self.position):  # nested loops start over
                        self.loop_done.pop(inner, None)
                    self.position = step.goto
                    self.cycle += 1
                else:
                    self.loop_done.pop(self.position, None)
                    self.position += 1
                continue
            if step.kind == "end":
                self.position = len(self.schedule)
                break
            if step.kind == "rest":
                self.cell.open_circuit()
            elif step.kind == "cc":
                self.cell.set_current(step.current_ampere)
            elif step.kind == "cv":
                assert step.voltage_volt is not None
                self.cell.set_voltage(step.voltage_volt, abs(step.current_ampere))
            elif step.kind == "cccv":
                assert step.voltage_volt is not None
                if step.current_ampere > 0:
                    self.cell.set_current(step.current_ampere, voltage_limit_volt=step.voltage_volt)
                else:  # discharge to the voltage, then hold it (checked in _check_ends)
                    self.cell.set_current(step.current_ampere)
            self._record(self.now(), force=True)
            return
        self.cell.open_circuit()  # the end: the last step's end was recorded as it ended
        self.state = "finished"

    def _check_ends(self, now: float, v: float, i: float) -> None:
        if self.position >= len(self.schedule):
            return
        step = self.schedule[self.position]
        elapsed = now - self.step_start
        ended = step.time_second is not None and elapsed >= step.time_second
        charging = step.current_ampere > 0
        if step.stop_voltage_volt is not None and step.kind == "cc":
            ended |= v >= step.stop_voltage_volt if charging else v <= step.stop_voltage_volt
        holding = step.kind == "cccv" and step.current_ampere < 0 and self.cell.mode == "current"
        if holding and step.voltage_volt is not None and v <= step.voltage_volt:
            self.cell.set_voltage(step.voltage_volt, abs(step.current_ampere))
        if step.stop_current_ampere is not None and step.kind in ("cv", "cccv"):
            held = self.cell.mode == "voltage" or self.cell.in_compliance
            ended |= held and abs(i) <= step.stop_current_ampere
        if step.capacity_ampere_hour is not None:
            ended |= self.step_capacity_ah >= step.capacity_ampere_hour
        if ended:
            self._record(now, force=True)
            self._end_step_truth(step.step_id, step.kind)
            self.position += 1
            self._begin_step()
            self._apply()


class Ticker:
    """Ticks every running channel of a cycler about every ``period_s`` wall seconds."""

    def __init__(self, channels: list[SimChannel], lock: threading.RLock, period_s: float = 1e-3):
        self.channels = channels
        self.lock = lock
        self.period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cycler-ticker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self.lock:
                for channel in self.channels:
                    if channel.state in ("direct", "schedule"):
                        channel.tick()
            time.sleep(self.period_s)
