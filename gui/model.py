"""What the live view shows, kept without Qt: bounded per-channel buffers fed by live messages.

Both sources of a live view produce :class:`~cellbench.daq.live.LiveMessage` objects — the
engine's live bus for a run started in this process, :class:`~cellbench.gui.poller.RunPoller` for
a run folder written by another process — and :class:`LiveModel` takes them one by one. Memory
stays bounded however long the run: each channel's samples live in a :class:`TraceBuffer` that
thins its older half when full (so recent data stays at full resolution and months of history
keep their shape), only the newest sweeps of each channel are kept, and the event list is a ring.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from cellbench.core.schema import RunMeta
from cellbench.daq.live import LiveMessage

#: Columns of ``samples`` the live view plots (BDF names from core/schema.py).
TRACE_COLUMNS: tuple[str, ...] = (
    "test_time_second",
    "voltage_volt",
    "current_ampere",
    "temperature_celsius",
)
#: Event kinds shown highlighted (they stop or endanger a run).
ALARM_KINDS = ("alarm", "fault")
ALARM_SEVERITIES = ("alarm", "error")


class TraceBuffer:
    """Samples of one channel (time, V, I, T as float64 columns), at most ``capacity`` rows.

    When an append overflows, the older half is thinned to half its rows by keeping, in each
    block of four rows, the two with the lowest and the highest voltage (in time order): spikes
    and steps in the voltage survive, and the history keeps its envelope at a resolution that
    coarsens with age. Memory grows with the rows held, up to ``capacity`` x 4 x 8 bytes
    (200 000 rows: 6.4 MB).
    """

    def __init__(self, capacity: int = 200_000):
        self.capacity = _check_capacity(capacity)
        self._data = np.empty((len(TRACE_COLUMNS), min(self.capacity, 1024)), dtype=np.float64)
        self._n = 0
        self.rows_seen = 0  # every row ever appended, thinned or not

    def set_capacity(self, capacity: int) -> None:
        """Change the bound; a smaller one thins what is held now and frees the rest."""
        self.capacity = _check_capacity(capacity)
        while self._n > self.capacity:
            self._thin()
        if self._data.shape[1] > self.capacity:
            self._data = self._data[:, : self.capacity].copy()

    def __len__(self) -> int:
        return self._n

    def append(self, columns: np.ndarray) -> None:
        """Append rows: ``columns`` has shape (4, n) in :data:`TRACE_COLUMNS` order."""
        columns = np.asarray(columns, dtype=np.float64)
        if columns.ndim != 2 or columns.shape[0] != len(TRACE_COLUMNS):
            raise ValueError(f"expected shape ({len(TRACE_COLUMNS)}, n), got {columns.shape}")
        self.rows_seen += columns.shape[1]
        while columns.shape[1]:
            room = self._data.shape[1] - self._n
            if room == 0:
                if self._data.shape[1] < self.capacity:  # grow by doubling up to the bound
                    size = min(2 * self._data.shape[1], self.capacity)
                    grown = np.empty((len(TRACE_COLUMNS), size), dtype=np.float64)
                    grown[:, : self._n] = self._data[:, : self._n]
                    self._data = grown
                else:
                    self._thin()
                continue
            take = columns[:, :room]
            self._data[:, self._n : self._n + take.shape[1]] = take
            self._n += take.shape[1]
            columns = columns[:, take.shape[1] :]

    def _thin(self) -> None:
        """Halve the older half of the buffer (min/max voltage of every block of four rows).

        The first row is never thinned, so the plotted history always starts where the run did.
        """
        half = (self._n // 2) // 4 * 4
        old = self._data[:, 1 : 1 + half]
        v = old[1].reshape(-1, 4)
        # A missing voltage (NaN) is never a block's extreme.
        lo = np.argmin(np.where(np.isnan(v), np.inf, v), axis=1)
        hi = np.argmax(np.where(np.isnan(v), -np.inf, v), axis=1)
        same = lo == hi
        hi = np.where(same, 3, hi)  # a flat block keeps its first and last row
        lo = np.where(same, 0, lo)
        first, second = np.minimum(lo, hi), np.maximum(lo, hi)
        base = np.arange(v.shape[0]) * 4
        keep = np.column_stack([base + first, base + second]).ravel()
        kept = old[:, keep]
        rest = self._data[:, 1 + half : self._n].copy()
        self._data[:, 1 : 1 + kept.shape[1]] = kept
        end = 1 + kept.shape[1] + rest.shape[1]
        self._data[:, 1 + kept.shape[1] : end] = rest
        self._n = end

    def column(self, name: str) -> np.ndarray:
        """A copy-free view of one column (valid until the next append)."""
        return self._data[TRACE_COLUMNS.index(name), : self._n]

    def last(self) -> dict[str, float]:
        if not self._n:
            return {}
        return {name: float(self._data[i, self._n - 1]) for i, name in enumerate(TRACE_COLUMNS)}


def _check_capacity(capacity: int) -> int:
    if capacity < 16:
        raise ValueError(f"capacity must be at least 16 rows, got {capacity}")
    return int(capacity)


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
    trace: TraceBuffer
    sweeps: deque[Sweep]
    last: dict[str, Any] = field(default_factory=dict)  # newest samples row (all its columns)
    step_label: str = ""  # from the newest step_start event ("step 3 CC charge")


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
        message=str(event.get("message") or ""),
    )


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
    """Per-channel traces, recent sweeps, recent events and the run status, from live messages.

    Samples held: at most ``trace_capacity`` rows per channel and ``trace_budget`` rows in all
    (2 000 000 rows: 64 MB), shared evenly as channels appear (a 64-channel station keeps
    31 250 rows each) but never fewer than ``trace_floor`` rows per channel.

    ``version`` grows with every change, so a view redraws only when something arrived.
    Not thread-safe: feed it from the one thread that also reads it (the GUI thread).
    """

    def __init__(
        self,
        *,
        trace_capacity: int = 200_000,
        trace_budget: int = 2_000_000,
        trace_floor: int = 10_000,
        sweeps_kept: int = 5,
        events_kept: int = 5_000,
    ):
        self.trace_capacity = trace_capacity
        self.trace_budget = trace_budget
        self.trace_floor = min(trace_floor, trace_capacity)
        self.sweeps_kept = sweeps_kept
        self.channels: dict[str, ChannelView] = {}
        self.events: deque[EventRow] = deque(maxlen=events_kept)
        self.events_total = 0  # events ever added (the list keeps the newest ``events_kept``)
        self.alarm_count = 0
        self.status = ""
        self.version = 0

    def channel(self, name: str) -> ChannelView:
        view = self.channels.get(name)
        if view is None:
            view = ChannelView(
                name, TraceBuffer(self.trace_capacity), deque(maxlen=self.sweeps_kept)
            )
            self.channels[name] = view
            share = min(self.trace_capacity, self.trace_budget // len(self.channels))
            share = max(self.trace_floor, share)
            for other in self.channels.values():
                if other.trace.capacity != share:
                    other.trace.set_capacity(share)
        return view

    def feed(self, message: LiveMessage) -> None:
        """Take one live message (samples, spectra, event or status)."""
        if message.kind == "samples" and message.frame is not None:
            self.add_samples(message.frame)
        elif message.kind == "spectra" and message.frame is not None:
            self.add_spectra(message.frame)
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
        for (name,), part in frame.group_by(["channel"], maintain_order=True):
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
            view.last = part.row(part.height - 1, named=True)
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
            if row.kind == "step_start" and row.channel:
                self.channel(row.channel).step_label = row.message
            if row.kind == "run_end":
                status = event_data(event).get("status")
                if isinstance(status, str) and status:
                    self.status = status
        self.version += 1

    def add_event_frame(self, frame: pl.DataFrame) -> None:
        self.add_events(frame.iter_rows(named=True))

    def readout(self, channel: str) -> dict[str, Any]:
        """The status-bar figures of ``channel``: step, cycle, V, I, T and elapsed test time."""
        view = self.channels.get(channel)
        if view is None:
            return {}
        last = view.last
        return {
            "step": view.step_label or _step_text(last.get("step_index")),
            "cycle_count": last.get("cycle_count"),
            "voltage_volt": _float(last.get("voltage_volt")),
            "current_ampere": _float(last.get("current_ampere")),
            "temperature_celsius": _float(last.get("temperature_celsius")),
            "test_time_second": _float(last.get("test_time_second")),
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
