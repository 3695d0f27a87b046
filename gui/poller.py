"""Follow a run folder that another process writes (``cellbench run`` on the lab PC), read-only.

:class:`RunPoller` turns what is new in the folder into the same
:class:`~cellbench.daq.live.LiveMessage` objects the engine's live bus carries, so the live view
has one input whichever way the run is going. It goes through
:class:`~cellbench.daq.run_reader.RunReader` only: it never writes, renames or locks anything in
the folder (the reader's writer probe touches the lock file read-only and never blocks the
writer). A reader kept open reads journals incrementally; rows already taken are skipped with a
slice of the lazy scan, and at most ``chunk_rows`` rows per table are taken per poll, so attaching
to a months-long run loads its history in steps instead of freezing the window.

:class:`AttachFeed` runs a poller on a background thread and hands its messages over through a
queue (the GUI thread drains it on a timer).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from pathlib import Path

from cellbench.core import schema
from cellbench.daq.live import LiveMessage
from cellbench.daq.run_reader import RunReader, open_run

log = logging.getLogger(__name__)


class RunPoller:
    """New rows and status changes of one run folder since the previous :meth:`poll`."""

    def __init__(
        self, path: Path | str, *, chunk_rows: int = 200_000, samples_chunk_rows: int = 1_000_000
    ):
        self.path = Path(path)
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
        for table in ("events", "spectra", "samples"):  # step labels before the rows they name
            have = counts.get(table, 0)
            start = self.offsets[table]
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
        if meta.status != self.status:
            self.status = meta.status
            out.append(LiveMessage("status", status=meta.status))
        self.caught_up = caught_up
        return out


class AttachFeed:
    """A :class:`RunPoller` on a daemon thread, every ``interval_s``, into ``queue``.

    The thread polls again only once the previous messages were taken from the queue, so a
    busy GUI slows the polling down instead of piling up frames. ``error`` holds the last read
    error (the folder vanished, a disk error); polling goes on and clears it when reads work.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        interval_s: float = 1.0,
        chunk_rows: int = 200_000,
        samples_chunk_rows: int = 1_000_000,
    ):
        self.poller = RunPoller(path, chunk_rows=chunk_rows, samples_chunk_rows=samples_chunk_rows)
        self.interval_s = float(interval_s)
        self.queue: queue.Queue[LiveMessage] = queue.Queue()
        self.error: str | None = None
        self._stop = threading.Event()
        # messages of each poll not yet taken, oldest first: while a long history loads, the
        # next chunk is read while the GUI takes in this one (one poll ahead, no more)
        self._polls: deque[int] = deque()
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._loop, name=f"cellbench-attach-{self.poller.path.name}", daemon=True
        )

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
        out = []
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
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("reading %s: %s", self.poller.path, exc)
            else:
                if not self.poller.caught_up:
                    continue  # history still loading: the next chunk once this one is taken
            self._stop.wait(self.interval_s)
