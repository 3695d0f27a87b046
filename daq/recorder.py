"""The engine's one path to the run store and the live feed.

Channel runners hand over sample rows (plain tuples, cheap to make at 10 Hz x 64 channels); a
writer thread turns what has accumulated into one polars frame every ``batch_interval_s`` (wall)
or every ``max_rows`` rows, appends it to the store — after which the rows survive ``kill -9`` —
and then publishes it to live subscribers. Events and spectra are written at once: an alarm must
be on disk before the engine goes on.

Durability: an ``alarm``, ``fault``, ``run_end`` or stop event first appends the samples pending
before it, then itself, then fsyncs (:data:`DURABLE_KINDS`), so a power cut right after an abort
keeps the alarm and the rows that led to it.

A failed append (disk full, I/O error) loses nothing: the rows stay in the buffer, in order, and
are tried again at the next batch. If appends keep failing for ``give_up_s`` (wall), the recorder
reports a :class:`RecorderError` (``error``) saying how many rows are not written; the engine then
aborts the run safely, and ``unwritten`` still counts them for the final event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import polars as pl

from cellbench.core import schema
from cellbench.core.errors import CellbenchError
from cellbench.daq.live import LiveBus, LiveMessage
from cellbench.daq.store import RunWriter

log = logging.getLogger(__name__)

# The order of the tuples runners hand to add_sample (names from core/schema.py).
SAMPLE_FIELDS: tuple[str, ...] = (
    "channel",
    "test_time_second",
    "unix_time_second",
    "voltage_volt",
    "current_ampere",
    "cycle_count",
    "step_count",
    "step_index",
    "temperature_celsius",
    "pressure_megapascal",
    "charging_capacity_ampere_hour",
    "discharging_capacity_ampere_hour",
    "charging_energy_watt_hour",
    "discharging_energy_watt_hour",
    "step_capacity_ampere_hour",
    "internal_resistance_ohm",
)
_SAMPLE_SCHEMA = pl.Schema({name: schema.schema("samples")[name] for name in SAMPLE_FIELDS})

#: Events made durable (fsynced, with the samples before them) before ``event`` returns.
DURABLE_KINDS = frozenset({"alarm", "fault", "run_end", "status"})
DEFAULT_GIVE_UP_S = 10.0  # wall s of failing appends before the run is stopped


class RecorderError(CellbenchError):
    """Rows could not be written for too long (disk full ...): the run must stop safely."""


class LatencyLog:
    """When each row was measured and when its batch was appended (``time.monotonic()``, s).

    Kept only when asked for (bench/logger.py): an appended row survives ``kill -9``; the store
    fsyncs it within its ``fsync_interval_s`` after that.
    """

    def __init__(self) -> None:
        self.measured: list[float] = []
        self.appended: list[float] = []

    @property
    def seconds(self) -> list[float]:
        """Measurement-to-append latency of every row, s."""
        return [a - m for m, a in zip(self.measured, self.appended, strict=True)]


class Recorder:
    """Batches rows to a :class:`RunWriter` and a :class:`LiveBus`; thread-safe."""

    def __init__(
        self,
        writer: RunWriter,
        bus: LiveBus,
        *,
        batch_interval_s: float = 0.25,
        max_rows: int = 20_000,
        latency: LatencyLog | None = None,
        give_up_s: float = DEFAULT_GIVE_UP_S,
    ):
        self.writer = writer
        self.give_up_s = float(give_up_s)
        self.bus = bus
        self.batch_interval_s = float(batch_interval_s)
        self.max_rows = int(max_rows)
        self.latency = latency
        self._rows: list[tuple] = []
        self._walls: list[float] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one append of samples at a time, in order
        self._failing_since: float | None = None  # monotonic s of the first failed append
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cellbench-recorder", daemon=True)
        self.rows_written = 0
        self.error: BaseException | None = None  # a failed append (disk full ...): run must abort

    def start(self) -> None:
        self._thread.start()

    def add_sample(self, row: tuple, wall_time: float | None = None) -> None:
        """One row in :data:`SAMPLE_FIELDS` order; ``wall_time`` = time.monotonic() measured."""
        with self._lock:
            self._rows.append(row)
            if self.latency is not None:
                self._walls.append(time.monotonic() if wall_time is None else wall_time)
            full = len(self._rows) >= self.max_rows
        if full:
            self._wake.set()

    def add_spectrum(self, frame: pl.DataFrame) -> None:
        """A whole sweep (``spectra`` columns): written and published now."""
        self.writer.append("spectra", frame)
        self.bus.publish(LiveMessage("spectra", frame=frame))

    @property
    def unwritten(self) -> int:
        """Rows handed over that are not in the store yet (all of them after failed appends)."""
        with self._lock:
            return len(self._rows)

    def event(self, kind: str, message: str, **fields: Any) -> None:
        """An ``events`` row, written now, then published (same fields as RunWriter.event).

        Alarms, faults, stops and the run's end are fsynced with the samples before them.
        """
        fields = {k: v for k, v in fields.items() if v is not None or k == "test_time_second"}
        durable = kind in DURABLE_KINDS or fields.get("severity") in ("alarm", "error")
        if durable:
            self._flush_guarded()  # the rows that led to it go first
        try:
            self.writer.event(kind, message, **fields)
            if durable:
                self.writer.flush()
        except Exception as exc:  # never lose the reason a run stops because a write failed
            log.error("could not record %s event %r: %s", kind, message, exc)
            if self.error is None:
                self.error = exc
        self.bus.publish(LiveMessage("event", event={"kind": kind, "message": message, **fields}))

    def flush(self) -> None:
        """Append what is pending now (from any thread). On failure the rows stay pending (in
        order, ahead of newer ones) and the error is raised."""
        with self._flush_lock:
            with self._lock:
                rows, self._rows = self._rows, []
                walls, self._walls = self._walls, []
            if not rows:
                return
            frame = pl.DataFrame(rows, schema=_SAMPLE_SCHEMA, orient="row")
            try:
                self.writer.append("samples", frame)
            except BaseException:
                with self._lock:
                    self._rows[:0] = rows
                    self._walls[:0] = walls
                raise
        if walls and self.latency is not None:
            done = time.monotonic()
            self.latency.measured.extend(walls)
            self.latency.appended.extend([done] * len(walls))
        self.rows_written += frame.height
        self.bus.publish(LiveMessage("samples", frame=frame))

    def stop(self) -> None:
        """Stop the thread after a last flush."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        if not self.try_flush() and self.error is None:
            self.error = RecorderError(f"{self.unwritten} rows could not be written at the end")

    def try_flush(self) -> bool:
        """Flush now without raising (see :meth:`_flush_guarded`); True if nothing is pending."""
        self._flush_guarded()
        return self.unwritten == 0

    def _flush_guarded(self) -> None:
        """Flush; a failure is logged once, retried at the next batch, and after ``give_up_s``
        of failures becomes :attr:`error` (the engine then stops the run safely)."""
        try:
            self.flush()
        except Exception as exc:
            now = time.monotonic()
            if self._failing_since is None:
                self._failing_since = now
                log.error("writing samples failed, keeping them and retrying: %s", exc)
            failing = now - self._failing_since
            if failing >= self.give_up_s and self.error is None:
                self.error = RecorderError(
                    f"{self.unwritten} rows could not be written for {failing:.1f} s: {exc}"
                )
                self.error.__cause__ = exc
        else:
            if self._failing_since is not None:
                log.warning(
                    "writing samples works again after %.1f s; nothing lost",
                    time.monotonic() - self._failing_since,
                )
                self._failing_since = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.batch_interval_s)
            self._wake.clear()
            self._flush_guarded()


def sample_frame(rows: Sequence[tuple]) -> pl.DataFrame:
    """Rows in :data:`SAMPLE_FIELDS` order as a frame (used by tests and benches)."""
    return pl.DataFrame(list(rows), schema=_SAMPLE_SCHEMA, orient="row")
