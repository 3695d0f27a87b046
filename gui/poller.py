"""Follow a run folder that another process writes (``cellbench run`` on the lab PC), read-only.

:class:`RunPoller` turns what is new in the folder into the same
:class:`~cellbench.daq.live.LiveMessage` objects the engine's live bus carries, so the live view
has one input whichever way the run is going. It goes through
:class:`~cellbench.daq.run_reader.RunReader` only: it never writes, renames or locks anything in
the folder (the reader's writer probe touches the lock file read-only and never blocks the
writer). A reader kept open reads journals incrementally; rows already taken are skipped with a
slice of the lazy scan, and at most ``chunk_rows`` rows per table are taken per poll.

Attaching to a long run does not read its rows: the sealed segments' min/max summaries
(:mod:`cellbench.daq.summaries`) go to the model as a ``summary`` message that seeds each
channel's history levels, and only each channel's recent window (and the journals) is read as
rows. The cycle views need every row, so the poller's thread then reads the segments one per
poll into its own :class:`~cellbench.gui.cycles.CycleTracker` per channel and hands them over
(``cycles``) once they have caught up with every frame handed out.

:class:`AttachFeed` runs a poller on a background thread and hands its messages over through a
queue (the GUI thread drains it on a timer).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from pathlib import Path
from typing import Any

import polars as pl

from cellbench.core import schema
from cellbench.daq.batches import normalize_lazy, stack
from cellbench.daq.live import LiveMessage
from cellbench.daq.run_reader import RunReader, open_run
from cellbench.daq.summaries import BUCKET_ROWS, summary_for
from cellbench.gui.cycles import CycleTracker

log = logging.getLogger(__name__)


class RunPoller:
    """New rows and status changes of one run folder since the previous :meth:`poll`."""

    def __init__(
        self,
        path: Path | str,
        *,
        chunk_rows: int = 200_000,
        samples_chunk_rows: int = 1_000_000,
        recent_rows: int = 100_000,
        recent_budget: int = 2_000_000,
        recent_floor: int = 10_000,
    ):
        self.path = Path(path)
        # rows per channel read at full resolution when attaching (as LiveModel shares them)
        self.recent_rows, self.recent_budget = int(recent_rows), int(recent_budget)
        self.recent_floor = min(int(recent_floor), self.recent_rows)
        self.rows_read = 0  # sample rows decoded from sealed segments (the attach's cost)
        self.summarized_rows = 0  # sample rows delivered as summary buckets instead of rows
        # cycles of the summarised rows, built here from every row in order (see _backfill_step)
        self._backfill: deque[tuple[Path, int, int]] | None = None  # (segment, from row, rows)
        self.backfill_rows = 250_000  # rows fed to the trackers per poll (bounded GIL holds)
        self._backfill_tail: list[pl.DataFrame] = []
        self._trackers: dict[str, CycleTracker] = {}
        self._backfill_steps = 0
        self._held: pl.DataFrame | None = None  # attach rows not handed out yet (in chunks)
        self.reader: RunReader = open_run(self.path)
        self.chunk_rows = int(chunk_rows)
        # samples come in big chunks: each slice of the lazy scan reads from the start again,
        # so 200 000-row chunks made attaching to 10 M rows quadratic (50 slices, ~70 s)
        self.samples_chunk_rows = int(samples_chunk_rows)
        self.offsets = {table: 0 for table in schema.TABLES}  # rows already taken
        self.status = ""
        self.writer_alive = False
        self.caught_up = False  # the last poll took every row there was
        self.last_meta = self.reader.meta  # run.json as of the last poll

    @property
    def meta(self):
        return self.reader.meta

    def poll(self) -> list[LiveMessage]:
        """Messages for what changed: status first (if changed), then new rows of each table."""
        out: list[LiveMessage] = []
        meta = self.reader.meta  # re-read: status and end time change while the run goes on
        self.last_meta = meta
        self.writer_alive = self.reader.writer_active()
        counts = self.reader.tables()
        caught_up = True
        seeded = False  # the first samples came as summaries in this poll: keep it short
        for table in ("events", "spectra", "samples"):  # step labels before the rows they name
            have = counts.get(table, 0)
            start = self.offsets[table]
            if table == "samples" and (self._held is not None or (start == 0 < have)):
                first = [] if self._held is not None else self._attach_samples()
                if first is not None:
                    out.extend(first)
                    out.extend(self._held_chunk())
                    seeded = True
                    caught_up &= self._held is None and self.offsets[table] >= have
                    continue
            if have <= start:
                continue
            take = min(
                have - start, self.samples_chunk_rows if table == "samples" else self.chunk_rows
            )
            frame = self.reader.scan(table).slice(start, take).collect()
            self.offsets[table] = start + frame.height
            caught_up &= self.offsets[table] >= have
            if frame.height == 0:
                continue
            if table == "events":
                out.extend(LiveMessage("event", event=row) for row in frame.iter_rows(named=True))
            else:
                out.append(LiveMessage(table, frame=frame))
                if table == "samples" and self._backfill is not None:
                    self._backfill_tail.append(frame)
        if meta.status != self.status:
            self.status = meta.status
            out.append(LiveMessage("status", status=meta.status))
        self.caught_up = caught_up
        if caught_up and self._backfill is not None and not seeded:
            out.extend(self._backfill_step())
        return out

    @property
    def backfill_started(self) -> bool:
        """Some of the sealed rows went to the cycle trackers already."""
        return self._backfill_steps > 0

    @property
    def backfilling(self) -> bool:
        """The cycles of rows delivered as summaries are still being built (see :meth:`poll`)."""
        return self._backfill is not None

    def _recent_share(self, channels: int) -> int:
        """Rows per channel the model keeps at full resolution with ``channels`` channels."""
        share = self.recent_budget // max(channels, 1)
        return max(self.recent_floor, min(self.recent_rows, share))

    def _attach_samples(self) -> list[LiveMessage] | None:
        """The first samples of a run with sealed segments: their summaries, then the rows.

        Each channel's sealed rows older than its recent window (whole summary buckets of
        ``BUCKET_ROWS`` rows) arrive as one ``summary`` message (min/max buckets: the history's
        coarse levels); only the newer rows are read from the segments, plus the journals'
        rows, as one ``samples`` message. A segment without a usable summary is read whole to
        compute it (nothing is written into the run folder). The rows are held and handed out
        ``samples_chunk_rows`` at a time (:meth:`_held_chunk`). None when nothing is sealed yet.
        """
        segments, journal_rows = self.reader.parts("samples")
        if not segments:
            return None
        parts = []
        for k, (path, rows) in enumerate(segments):
            summary, read = summary_for(path, rows)
            self.rows_read += read
            parts.append(summary.with_columns(pl.lit(k, dtype=pl.Int64).alias("_seg")))
        summaries = pl.concat(parts)
        share = self._recent_share(summaries["channel"].n_unique())
        # rows of the channel after each bucket (in the sealed part): buckets with at least the
        # recent window after them are summarised, the rest read as rows
        after = pl.col("rows").reverse().cum_sum().reverse().over("channel") - pl.col("rows")
        summaries = summaries.with_columns((after >= share).alias("_old"))
        old = summaries.filter(pl.col("_old"))
        starts = (
            summaries.filter(~pl.col("_old")).group_by("_seg", "channel").agg(pl.col("row0").min())
        )
        frames = []
        for k, (path, _rows) in enumerate(segments):
            mine = starts.filter(pl.col("_seg") == k)
            if mine.height == 0:
                continue  # wholly summarised
            begin = int(mine["row0"].min())
            start_of = dict(zip(mine["channel"].to_list(), mine["row0"].to_list(), strict=True))
            lf = normalize_lazy("samples", pl.scan_parquet(path)).with_row_index("_pos")
            part = lf.slice(begin).collect()
            self.rows_read += part.height
            keep = (
                pl.col("channel")
                .cast(pl.String)
                .replace_strict(start_of, default=None, return_dtype=pl.Int64)
            )
            frames.append(part.filter(pl.col("_pos") >= keep).drop("_pos"))
        if journal_rows is not None:
            frames.append(journal_rows)
        recent = stack("samples", frames)
        self.offsets["samples"] = sum(rows for _, rows in segments) + (
            0 if journal_rows is None else journal_rows.height
        )
        self.summarized_rows = int(old["rows"].sum()) if old.height else 0
        out = []
        if old.height:
            used = old.drop("_seg", "_old")
            out.append(LiveMessage("summary", frame=used, event={"bucket_rows": BUCKET_ROWS}))
            self._backfill = deque(
                (path, start, min(self.backfill_rows, rows - start))
                for path, rows in segments
                for start in range(0, rows, self.backfill_rows)
            )
            # rows after the segments: the journals' now, every samples frame handed out later
            self._backfill_tail = [] if journal_rows is None else [journal_rows]
            self._trackers = {}
        self._held = recent if recent.height else None
        return out

    def _held_chunk(self) -> list[LiveMessage]:
        """The next ``samples_chunk_rows`` of the rows read at attach (one chunk per poll, so the
        window takes a big recent window in steps)."""
        if self._held is None:
            return []
        frame = self._held.head(self.samples_chunk_rows)
        rest = self._held.slice(frame.height)
        self._held = rest if rest.height else None
        return [LiveMessage("samples", frame=frame)]

    def _backfill_step(self) -> list[LiveMessage]:
        """Feed the next ``backfill_rows`` rows of the sealed segments to this poller's cycle
        trackers (on the poller's thread; polars reads only the row groups holding them); once
        all are in, with every samples frame handed out since, hand the trackers
        over (``cycles``): the cycle views then hold the whole run, exactly as if every row had
        come through the window."""
        assert self._backfill is not None
        self._backfill_steps += 1
        if self._backfill:
            path, start, rows = self._backfill.popleft()
            try:
                lf = normalize_lazy("samples", pl.scan_parquet(path))
                self._feed_trackers(lf.slice(start, rows).collect())
            except FileNotFoundError:  # merged away meanwhile: the cycles stay as they are
                log.warning("%s: gone while building the run's cycles", path)
                self._backfill = None
                return []
            return []
        for frame in self._backfill_tail:
            self._feed_trackers(frame)
        trackers, self._trackers = self._trackers, {}
        self._backfill, self._backfill_tail = None, []
        return [LiveMessage("cycles", event={"trackers": trackers})] if trackers else []

    def _feed_trackers(self, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        for (name,), part in frame.partition_by(
            "channel", maintain_order=True, as_dict=True
        ).items():
            self._trackers.setdefault(str(name), CycleTracker()).add(part)


class PollFeed:
    """A poller (``poll()``, ``caught_up``, ``path``) on a daemon thread, every ``interval_s``,
    into ``queue``: the shared machinery of :class:`AttachFeed` and
    :class:`cellbench.gui.catalog_open.CatalogFeed`.

    The thread polls again only once the previous messages were taken from the queue, so a
    busy GUI slows the polling down instead of piling up frames. ``error`` holds the last read
    error; polling goes on and clears it when reads work. Subclasses say how an error reads
    (:meth:`_error_text`, :meth:`_log_error`) and how long to wait after a good poll
    (:meth:`_wait_after_poll`).
    """

    def __init__(self, poller: Any, *, interval_s: float, thread_name: str):
        self.poller = poller
        self.interval_s = float(interval_s)
        self.queue: queue.Queue[LiveMessage] = queue.Queue()
        self.error: str | None = None
        self._stop = threading.Event()
        # messages of each poll not yet taken, oldest first: while a long history loads, the
        # next chunk is read while the GUI takes in this one (one poll ahead, no more)
        self._polls: deque[int] = deque()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=thread_name, daemon=True)

    @property
    def path(self) -> Path:
        return self.poller.path

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def drain(self, limit: int = 10_000) -> list[LiveMessage]:
        """Messages waiting (at most ``limit``), oldest first; never blocks."""
        out: list[LiveMessage] = []
        while len(out) < limit:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                break
        with self._lock:
            taken = len(out)
            while taken and self._polls:
                used = min(taken, self._polls[0])
                self._polls[0] -= used
                taken -= used
                if self._polls[0] == 0:
                    self._polls.popleft()
        return out

    def _waiting_polls(self) -> int:
        with self._lock:
            return len(self._polls)

    def _error_text(self, exc: Exception) -> str:
        """``error`` for a failed poll."""
        return f"{type(exc).__name__}: {exc}"

    def _log_error(self, exc: Exception) -> None:
        log.warning("reading %s: %s", self.poller.path, exc)

    def _wait_after_poll(self) -> float | None:
        """Seconds to wait after a poll that worked; None to poll again at once (history
        still loading: the next chunk once this one is taken)."""
        if not self.poller.caught_up:
            return None
        return self.interval_s

    def _loop(self) -> None:
        while not self._stop.is_set():
            ahead = 0 if self.poller.caught_up else 1
            if self._waiting_polls() > ahead:  # the GUI has not taken the last poll(s) yet
                self._stop.wait(0.02)
                continue
            try:
                messages = self.poller.poll()
                with self._lock:
                    if messages:
                        self._polls.append(len(messages))
                    for message in messages:
                        self.queue.put(message)
                self.error = None
            except Exception as exc:  # keep following; say why the view is not updating
                self.error = self._error_text(exc)
                self._log_error(exc)
                wait_s: float | None = self.interval_s
            else:
                wait_s = self._wait_after_poll()
            if wait_s is not None:
                self._stop.wait(wait_s)


class AttachFeed(PollFeed):
    """A :class:`RunPoller` on a daemon thread, every ``interval_s``, into ``queue``.

    The thread polls again only once the previous messages were taken from the queue, so a
    busy GUI slows the polling down instead of piling up frames. ``error`` holds the last read
    error (the folder vanished, a disk error); polling goes on and clears it when reads work.
    """

    poller: RunPoller

    def __init__(
        self,
        path: Path | str,
        *,
        interval_s: float = 1.0,
        chunk_rows: int = 200_000,
        samples_chunk_rows: int = 1_000_000,
    ):
        poller = RunPoller(path, chunk_rows=chunk_rows, samples_chunk_rows=samples_chunk_rows)
        super().__init__(
            poller, interval_s=interval_s, thread_name=f"cellbench-attach-{poller.path.name}"
        )

    def _wait_after_poll(self) -> float | None:
        if not self.poller.caught_up:
            return None  # history still loading: the next chunk once this one is taken
        if self.poller.backfilling and self.poller.backfill_started:
            return 0.02  # the cycles of old rows: steadily, never hogging
        # else (just attached): a full interval first, while the window draws the run
        return self.interval_s
