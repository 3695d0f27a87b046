"""What the live view shows, kept without Qt: bounded per-channel histories fed by live messages.

Both sources of a live view produce :class:`~cellbench.daq.live.LiveMessage` objects — the
engine's live bus for a run started in this process, :class:`~cellbench.gui.poller.RunPoller` for
a run folder written by another process — and :class:`LiveModel` takes them one by one. Memory
stays bounded however long the run: each channel's samples live in a
:class:`~cellbench.gui.history.History` (recent rows at full resolution, min/max levels back to
the start, so months of history keep every spike), its cycles in a
:class:`~cellbench.gui.cycles.CycleTracker`; sweeps are kept up to a bound, and the event list
is a ring.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from cellbench.core.schema import RunMeta
from cellbench.daq.live import LiveMessage
from cellbench.gui.cycles import CycleTracker
from cellbench.gui.history import HISTORY_COLUMNS, History

#: Columns of ``samples`` the live view plots (BDF names from core/schema.py).
TRACE_COLUMNS: tuple[str, ...] = HISTORY_COLUMNS
#: Event kinds shown highlighted (they stop or endanger a run).
ALARM_KINDS = ("alarm", "fault")
ALARM_SEVERITIES = ("alarm", "error")


@dataclass
class Sweep:
    """One impedance sweep as plotted: frequency, Z', Z'' (ohm; Z'' negative = capacitive)."""

    sweep_index: int
    test_time_second: float
    frequency_hertz: np.ndarray
    z_real_ohm: np.ndarray
    z_imag_ohm: np.ndarray
    temperature_celsius: float = math.nan
    cycle_count: int | None = None


@dataclass
class ChannelView:
    """What the live view knows about one channel."""

    name: str
    trace: History
    sweeps: deque[Sweep]
    cycles: CycleTracker = field(default_factory=CycleTracker)
    last: dict[str, Any] = field(default_factory=dict)  # newest samples row (all its columns)
    step_label: str = ""  # from the newest step_start event ("step 3 CC charge")
    step_started: float | None = None  # its test time, s
    alarm_count: int = 0


@dataclass(frozen=True)
class EventRow:
    """One event as listed (newest last)."""

    channel: str
    test_time_second: float | None
    unix_time_second: float
    kind: str
    severity: str
    message: str

    @property
    def is_alarm(self) -> bool:
        return self.kind in ALARM_KINDS or self.severity in ALARM_SEVERITIES


def event_row(event: dict[str, Any]) -> EventRow:
    """An event from the live bus (a dict of ``events`` fields) or a row of the events table."""
    t = event.get("test_time_second")
    unix = event.get("unix_time_second")
    return EventRow(
        channel=str(event.get("channel") or ""),
        test_time_second=None if t is None else float(t),
        unix_time_second=time.time() if unix is None else float(unix),
        kind=str(event.get("kind") or ""),
        severity=str(event.get("severity") or "info"),
        message=readable_message(str(event.get("message") or "")),
    )


_NUMBER_UNIT = re.compile(
    r"(?<![\w.])(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s?(V|A|Ah|Wh|W|Ω|ohm|Hz|°C|degC|MPa|s)(?![\w/])"
)


def readable_message(message: str) -> str:
    """Numbers with a unit in ``message`` as ``61.47 µV`` (SI prefix, 4 digits), not ``6.15e-05 V``.

    Temperatures, pressures and seconds keep their unit and get 4 significant digits.
    """

    def fix(match: re.Match[str]) -> str:
        value, unit = float(match.group(1)), match.group(2)
        if unit in ("°C", "degC", "MPa", "s"):
            return f"{value:.4g} {'°C' if unit == 'degC' else unit}"
        return fmt_si(value, "Ω" if unit == "ohm" else unit)

    return _NUMBER_UNIT.sub(fix, message)


def event_data(event: dict[str, Any]) -> dict[str, Any]:
    """The event's ``data`` as a dict (JSON text in the table, a dict on the live bus)."""
    data = event.get("data")
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError:
            return {}
    return data if isinstance(data, dict) else {}


class LiveModel:
    """Per-channel histories and cycles, sweeps, recent events, alarms and the run status.

    Samples held per channel: the newest ``recent_rows`` at full resolution (shared from
    ``recent_budget`` rows in all as channels appear, never fewer than ``recent_floor``) plus
    min/max levels back to the start of the run (see :class:`~cellbench.gui.history.History`).
    Sweeps: the newest ``sweeps_kept`` per channel (a sweep of 50 points is about 1.5 kB).

    ``version`` grows with every change, so a view redraws only when something arrived.
    Not thread-safe: feed it from the one thread that also reads it (the GUI thread).
    """

    def __init__(
        self,
        *,
        recent_rows: int = 100_000,
        recent_budget: int = 2_000_000,
        recent_floor: int = 10_000,
        sweeps_kept: int = 2_000,
        events_kept: int = 5_000,
        alarms_kept: int = 1_000,
    ):
        self.recent_rows = recent_rows
        self.recent_budget = recent_budget
        self.recent_floor = min(recent_floor, recent_rows)
        self.sweeps_kept = sweeps_kept
        self.channels: dict[str, ChannelView] = {}
        self.events: deque[EventRow] = deque(maxlen=events_kept)
        self.events_total = 0  # events ever added (the list keeps the newest ``events_kept``)
        self.alarms: deque[EventRow] = deque(maxlen=alarms_kept)
        self.alarm_count = 0
        self.acknowledged = 0  # alarms acknowledged so far (the first ``acknowledged`` of all)
        self.status = ""
        self.newest_unix: float | None = None  # wall-clock time of the newest sample row
        self.version = 0

    def channel(self, name: str) -> ChannelView:
        view = self.channels.get(name)
        if view is None:
            n = len(self.channels) + 1
            share = max(self.recent_floor, min(self.recent_rows, self.recent_budget // n))
            buckets = max(1024, min(8192, 262_144 // n))
            view = ChannelView(name, History(share, buckets), deque(maxlen=self.sweeps_kept))
            self.channels[name] = view
            for other in self.channels.values():
                if other.trace.recent_rows != share:
                    other.trace.set_recent_rows(share)
        return view

    def feed(self, message: LiveMessage) -> None:
        """Take one live message (samples, spectra, event or status)."""
        if message.kind == "samples" and message.frame is not None:
            self.add_samples(message.frame)
        elif message.kind == "spectra" and message.frame is not None:
            self.add_spectra(message.frame)
        elif message.kind == "summary" and message.frame is not None:
            self.seed_summary(message.frame, int(message.event.get("bucket_rows", 4096)))
        elif message.kind == "cycles":
            for name, tracker in message.event.get("trackers", {}).items():
                self.channel(str(name)).cycles = tracker
            self.version += 1
        elif message.kind == "event":
            self.add_events([message.event])
        elif message.kind == "status" and message.status:
            self.status = message.status
            self.version += 1

    def feed_all(self, messages: Iterable[LiveMessage]) -> None:
        for message in messages:
            self.feed(message)

    def add_samples(self, frame: pl.DataFrame) -> None:
        """Rows of the ``samples`` table (any subset of channels; optional columns may lack)."""
        if frame.height == 0:
            return
        if "channel" not in frame.columns:
            parts = {("",): frame}
        elif frame["channel"].n_unique() == 1:  # one channel (attaching to it): no copy
            parts = {(frame["channel"][0],): frame}
        else:
            parts = frame.partition_by("channel", maintain_order=True, as_dict=True)
        for (name,), part in parts.items():
            view = self.channel(str(name))
            cols = np.vstack(
                [
                    part[c].cast(pl.Float64).to_numpy()
                    if c in part.columns
                    else np.full(part.height, np.nan)
                    for c in TRACE_COLUMNS
                ]
            )
            view.trace.append(cols)
            view.cycles.add(part)
            view.last = part.row(part.height - 1, named=True)
        if "unix_time_second" in frame.columns:
            newest = frame["unix_time_second"].max()
            if newest is not None and (self.newest_unix is None or newest > self.newest_unix):
                self.newest_unix = float(newest)
        self.version += 1

    def seed_summary(self, frame: pl.DataFrame, bucket_rows: int = 4096) -> None:
        """Seed empty channel histories from a run's per-segment min/max summaries (columns of
        :data:`cellbench.daq.summaries.SUMMARY_COLUMNS`, in time order): the whole span of a long
        run without its rows; the rows after the summarised ones follow as ``samples``."""
        if frame.height == 0:
            return
        values = HISTORY_COLUMNS[1:]
        for (name,), part in frame.partition_by(
            "channel", maintain_order=True, as_dict=True
        ).items():
            view = self.channel(str(name))
            if view.trace.rows_seen:
                continue  # rows already arrived: the summary would double them

            def arr(col: str, part: pl.DataFrame = part) -> np.ndarray:
                return part[col].cast(pl.Float64).to_numpy()

            def block(kind: str) -> np.ndarray:
                return np.vstack([arr(f"{v}_{kind}") for v in values])

            buckets = (
                arr("t_first"),
                arr("t_last"),
                *(block(k) for k in ("min", "max", "tmin", "tmax")),
            )
            first = np.array([arr("t_first")[0], *(arr(f"{v}_first")[0] for v in values)])
            view.trace.seed(buckets, first, int(part["rows"].sum()), bucket_rows)
        self.version += 1

    def add_spectra(self, frame: pl.DataFrame) -> None:
        """Rows of the ``spectra`` table; each (channel, sweep) becomes one :class:`Sweep`.

        A sweep whose rows arrive in two batches is merged with its earlier part.
        """
        if frame.height == 0:
            return
        keys = ["channel", "sweep_index"]
        for (name, index), part in frame.group_by(keys, maintain_order=True):
            view = self.channel(str(name))
            part = part.sort("frequency_hertz", descending=True)

            def opt(col: str, part: pl.DataFrame = part) -> Any:
                return part[col][-1] if col in part.columns else None

            sweep = Sweep(
                sweep_index=int(index),
                test_time_second=float(part["test_time_second"][-1]),
                frequency_hertz=part["frequency_hertz"].to_numpy().astype(np.float64),
                z_real_ohm=part["z_real_ohm"].to_numpy().astype(np.float64),
                z_imag_ohm=part["z_imag_ohm"].to_numpy().astype(np.float64),
                temperature_celsius=_float(opt("temperature_celsius")),
                cycle_count=opt("cycle_count"),
            )
            if view.sweeps and view.sweeps[-1].sweep_index == sweep.sweep_index:
                prev = view.sweeps.pop()
                order = np.argsort(-np.concatenate([prev.frequency_hertz, sweep.frequency_hertz]))
                for attr in ("frequency_hertz", "z_real_ohm", "z_imag_ohm"):
                    both = np.concatenate([getattr(prev, attr), getattr(sweep, attr)])
                    setattr(sweep, attr, both[order])
            view.sweeps.append(sweep)
        self.version += 1

    def add_events(self, events: Iterable[dict[str, Any]]) -> None:
        """Events as dicts of ``events`` fields (live bus) or rows of the events table."""
        for event in events:
            row = event_row(event)
            self.events.append(row)
            self.events_total += 1
            if row.is_alarm:
                self.alarm_count += 1
                self.alarms.append(row)
                if row.channel:
                    self.channel(row.channel).alarm_count += 1
            if row.kind == "step_start" and row.channel:
                view = self.channel(row.channel)
                view.step_label = row.message
                view.step_started = row.test_time_second
            if row.kind == "run_end":
                status = event_data(event).get("status")
                if isinstance(status, str) and status:
                    self.status = status
        self.version += 1

    def add_event_frame(self, frame: pl.DataFrame) -> None:
        self.add_events(frame.iter_rows(named=True))

    @property
    def unacknowledged(self) -> int:
        """Alarms and faults nobody has acknowledged yet."""
        return self.alarm_count - self.acknowledged

    def acknowledge(self) -> None:
        """Mark every alarm so far as seen (the banner goes; the list keeps them)."""
        if self.acknowledged != self.alarm_count:
            self.acknowledged = self.alarm_count
            self.version += 1

    def data_age(self, now: float | None = None) -> float | None:
        """Seconds since the newest sample row was measured (wall clock), None before any."""
        if self.newest_unix is None:
            return None
        return max(0.0, (time.time() if now is None else now) - self.newest_unix)

    def readout(self, channel: str) -> dict[str, Any]:
        """The status-bar figures of ``channel`` from one snapshot (its newest sample row and
        the step that row belongs to): step, cycle, V, I, T, p and test time."""
        view = self.channels.get(channel)
        if view is None:
            return {}
        last = view.last
        t = _float(last.get("test_time_second"))
        step = view.step_label
        if not step or (view.step_started is not None and t < view.step_started):
            step = _step_text(last.get("step_index"))  # the label names a later step
        return {
            "step": step,
            "step_index": last.get("step_index"),
            "cycle_count": last.get("cycle_count"),
            "voltage_volt": _float(last.get("voltage_volt")),
            "current_ampere": _float(last.get("current_ampere")),
            "temperature_celsius": _float(last.get("temperature_celsius")),
            "pressure_megapascal": _float(last.get("pressure_megapascal")),
            "test_time_second": t,
            "alarms": view.alarm_count,
        }


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _step_text(index: Any) -> str:
    return "" if index is None else f"step {index}"


# ----------------------------------------------------------------------------------- formatting


def run_summary(meta: RunMeta) -> list[tuple[str, str]]:
    """(label, text) rows describing a run from its ``run.json``: what, on what, since when."""
    cell = meta.cell
    facts = []
    if cell.area_cm2 is not None:
        facts.append(f"{cell.area_cm2:g} cm²")
    if cell.nominal_capacity_ah is not None:
        facts.append(fmt_si(cell.nominal_capacity_ah, "Ah"))
    protocol = meta.protocol.get("name") or ""
    station = meta.station.get("name") or ""
    ended = f" → {meta.end_time}" if meta.end_time else ""
    rows = [
        ("run", meta.run_id),
        ("status", meta.status),
        ("protocol", str(protocol) or "-"),
        ("station", str(station) or "-"),
        ("cell", " · ".join(x for x in (cell.name, cell.chemistry, ", ".join(facts)) if x) or "-"),
        ("time", f"{meta.start_time}{ended}"),
    ]
    if meta.ground_truth is not None:
        rows.append(("instruments", "simulated"))
    return rows


def fmt_duration(seconds: float | None) -> str:
    """``3d 04:05:06`` / ``04:05:06``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    days, rest = divmod(round(max(0.0, seconds)), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{h:02d}:{m:02d}:{s:02d}"


def fmt_si(value: float | None, unit: str, digits: int = 4) -> str:
    """``3.712 V``, ``-1.25 mA``, ``25.1 °C``-style text with an SI prefix; ``-`` if unknown."""
    if value is None or not math.isfinite(value):
        return "-"
    if value == 0:
        return f"0 {unit}"
    for factor, prefix in ((1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n")):
        if abs(value) >= factor * 0.9995 or factor == 1e-9:
            return f"{value / factor:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}"  # pragma: no cover - the loop always returns


def status_text(readout: dict[str, Any], channel: str, run_status: str) -> str:
    """One status-bar line: status, channel, step, cycle, V, I, T, elapsed."""
    if not readout:
        return f"{run_status or 'idle'} | {channel or 'no channel yet'}"
    temp = readout.get("temperature_celsius")
    parts = [
        run_status or "-",
        channel,
        readout.get("step") or "-",
        f"cycle {readout['cycle_count']}" if readout.get("cycle_count") is not None else "cycle -",
        fmt_si(readout.get("voltage_volt"), "V"),
        fmt_si(readout.get("current_ampere"), "A"),
        "-" if temp is None or not math.isfinite(temp) else f"{temp:.1f} °C",
        f"elapsed {fmt_duration(readout.get('test_time_second'))}",
    ]
    return " | ".join(parts)
