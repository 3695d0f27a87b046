"""Store and forward: copy local runs into the lab catalog and archive, resumably, exactly once.

The local run folder stays the durable buffer. The catalog itself holds the resumable state: for
each run and table, ``sync_position`` says how many batches (journal sequence numbers) and rows it
has. A pass lays the local table out as units in append order (sealed segments, then journal
frames, each with the row number it starts at), skips what the position covers (also the part of
a segment sealed from frames already loaded), and loads the rest in transactions that move the
position with the rows. So a sync killed at any instant, or a server restarted under it, leaves
either a whole load or none, and the next pass resumes exactly there: no duplicates, no gaps
(the primary key ``(run_id, row_no)`` would refuse a duplicate anyway).

Sealed segments go to the archive as they are; one is recorded in the catalog (``segments``)
only after its SHA-256 was verified at the destination. An archive that cannot be reached delays
only the archive, never the catalog's live rows, and neither ever touches the run folder.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from cellbench.core import schema
from cellbench.core.errors import CellbenchError
from cellbench.daq.archive import Archive, ArchiveError
from cellbench.daq.batches import stack
from cellbench.daq.catalog import Catalog, CatalogError, Position, PositionConflict, describe
from cellbench.daq.run_files import RUN_JSON, StoreError
from cellbench.daq.run_reader import JournalCache, load_meta, segment_rows, snapshot, writer_active

log = logging.getLogger("cellbench.sync")

MAX_LOAD_ROWS = 500_000  # rows per transaction: bounds memory and the work a crash repeats
EIS_CIRCUIT = "R0-p(R1,CPE1)"  # fitted to each sweep for the catalog's eis_fits


class SyncError(CellbenchError):
    """The local run and the catalog disagree in a way a retry cannot mend."""


@dataclass
class RunSync:
    """What one pass did for one run."""

    run_id: str
    path: Path
    loaded: dict[str, int] = field(default_factory=lambda: dict.fromkeys(schema.TABLES, 0))
    archived: int = 0
    archive_error: str | None = None
    done: bool = False  # closed locally, and everything is in the catalog and the archive

    def changed(self) -> bool:
        return self.archived > 0 or any(self.loaded.values())

    def line(self) -> str:
        rows = ", ".join(f"{t} +{n}" for t, n in self.loaded.items())
        text = f"{self.run_id}: {rows} rows; {self.archived} segment(s) archived"
        if self.archive_error:
            text += f"; archive pending: {self.archive_error}"
        return text


@dataclass(frozen=True)
class _Unit:
    """Batches ``first..last`` of a table, rows ``start..start+rows-1``, from one file."""

    first: int
    last: int
    start: int
    rows: int
    read: Callable[[], pl.DataFrame]


@dataclass
class _RunState:
    """What a following sync remembers of a run between passes (all of it re-derivable)."""

    caches: dict[str, JournalCache] = field(
        default_factory=lambda: {t: JournalCache() for t in schema.TABLES}
    )
    meta_stamp: tuple[int, int] | None = None
    archived_stamp: tuple[int, int] | None = None
    summarised_rows: tuple[int, int] = (0, 0)  # samples, spectra rows summarised
    summarised_at: float = 0.0


def find_runs(paths: Iterable[Path]) -> list[Path]:
    """Run folders among ``paths``: a run folder itself, or the run folders directly inside."""
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / RUN_JSON).is_file():
            out.append(p)
        elif p.is_dir():
            out.extend(sorted(c for c in p.iterdir() if (c / RUN_JSON).is_file()))
        else:
            raise StoreError(f"{p}: no such run folder or folder of runs")
    return out


class Syncer:
    """Copies runs into one catalog and one archive. One per thread or process."""

    def __init__(
        self,
        catalog_url: str,
        archive_location: str,
        *,
        loader: str = "copy",
        max_load_rows: int = MAX_LOAD_ROWS,
        summary_interval_s: float = 60.0,
        summaries: bool = True,
    ):
        self.catalog_url = catalog_url
        self.archive = Archive(archive_location)
        self.loader = loader
        self.max_load_rows = int(max_load_rows)
        self.summary_interval_s = float(summary_interval_s)
        self.summaries = summaries  # per-cycle summaries into the catalog as runs go
        self._catalog: Catalog | None = None
        self._states: dict[Path, _RunState] = {}
        self._seg_rows: dict[Path, int] = {}

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog(self.catalog_url, loader=self.loader)
        return self._catalog

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def __enter__(self) -> Syncer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _drop_connection(self) -> None:
        """Forget a connection that failed; the next call reconnects."""
        self.close()

    # --------------------------------------------------------------------------------- pass

    def sync_run(self, path: Path) -> RunSync:
        """One pass over one run folder: metadata, new rows, new sealed segments."""
        path = Path(path)
        state = self._states.setdefault(path, _RunState())
        meta = load_meta(path)
        result = RunSync(meta.run_id, path)
        cat = self.catalog
        stamp = _stamp(path / RUN_JSON)
        if stamp != state.meta_stamp:
            cat.upsert_run(meta, archive=self.archive.location)
            state.meta_stamp = stamp
        live = writer_active(path)
        cutoff = time.time() - cat.live_window_days() * 86400.0
        positions = cat.positions(meta.run_id)
        snaps = {t: snapshot(path / t, state.caches[t]) for t in schema.TABLES}
        for table in schema.TABLES:
            pos = positions.get(table, Position(0, 0))
            units = self._units(table, snaps[table], state.caches[table])
            result.loaded[table] = self._load_table(cat, meta.run_id, table, pos, units, cutoff)
        after = cat.positions(meta.run_id)
        complete = all(after[t].next_seq == snaps[t].next_seq for t in schema.TABLES)
        try:
            result.archived, pending = self._archive(cat, meta.run_id, path, snaps)
            complete &= pending == 0
            if stamp != state.archived_stamp:
                self.archive.put_meta(meta.run_id, (path / RUN_JSON).read_bytes())
                state.archived_stamp = stamp
        except (ArchiveError, FileNotFoundError) as exc:
            result.archive_error = str(exc)
            complete = False
            log.warning("%s: archive: %s", meta.run_id, exc)
        closed = meta.status != "running" and not live
        self._summarise(cat, path, meta.run_id, state, closed and complete)
        result.done = closed and complete
        return result

    def _units(self, table: str, snap, cache: JournalCache) -> list[_Unit]:
        units: list[_Unit] = []
        start = 0
        for seg in snap.segments:
            rows = self._seg_rows.get(seg.path)
            if rows is None:
                rows = self._seg_rows[seg.path] = segment_rows(seg.path)
            units.append(_Unit(seg.first, seg.last, start, rows, _parquet_reader(seg.path)))
            start += rows
        for jpath, frame in snap.frames:
            units.append(
                _Unit(frame.seq, frame.seq, start, frame.nrows, _frame_reader(cache, jpath, frame))
            )
            start += frame.nrows
        return units

    def _load_table(
        self,
        cat: Catalog,
        run_id: str,
        table: str,
        pos: Position,
        units: list[_Unit],
        cutoff: float,
    ) -> int:
        """Load the rows past ``pos``; returns how many rows the catalog's position advanced."""
        todo = [u for u in units if u.last >= pos.next_seq]
        local_next = units[-1].last + 1 if units else 0
        if pos.next_seq > local_next:
            raise SyncError(
                f"run {run_id} {table}: the catalog holds batches up to {pos.next_seq - 1} but "
                f"the local run only up to {local_next - 1} (a different run with the same id?)"
            )
        if not todo:
            return 0
        head = todo[0]
        skip = pos.rows - head.start
        # A unit from the position on starts exactly at the catalog's row count (batches may be
        # missing in between only where the store reported them damaged).
        if not 0 <= skip <= head.rows or (head.first >= pos.next_seq and skip != 0):
            raise SyncError(
                f"run {run_id} {table}: the catalog holds {pos.rows} rows up to batch "
                f"{pos.next_seq - 1}, which does not match the local run (batch {head.first} "
                f"starts at row {head.start}); a different run with the same id?"
            )
        before, moved = pos, 0
        parts: list[pl.DataFrame] = []
        n = 0
        for i, unit in enumerate(todo):
            df = unit.read()
            if i == 0 and skip:
                df = df.slice(skip)
            parts.append(df)
            n += df.height
            if n >= self.max_load_rows or i == len(todo) - 1:
                after = Position(unit.last + 1, unit.start + unit.rows)
                cat.load(
                    table,
                    run_id,
                    stack(table, parts),
                    before=before,
                    after=after,
                    live_cutoff_unix_s=cutoff if table == "samples" else None,
                )
                moved += after.rows - before.rows
                before, parts, n = after, [], 0
        return moved

    def _archive(self, cat: Catalog, run_id: str, path: Path, snaps) -> tuple[int, int]:
        """Upload sealed segments not yet archived; returns (archived now, still pending)."""
        have = {
            t: {(first, last) for first, last, *_ in segs}
            for t, segs in cat.archived(run_id).items()
        }
        done = 0
        for table in schema.TABLES:
            for seg in snaps[table].segments:
                if (seg.first, seg.last) in have[table]:
                    continue
                stored = self.archive.put_segment(seg.path, run_id, table)
                rows = self._seg_rows.get(seg.path) or segment_rows(seg.path)
                cat.record_segment(run_id, table, seg.first, seg.last, rows, stored)
                done += 1
        # Still pending: batches sealed locally but in no archived segment, or not sealed at all.
        return done, 0 if all(not s.frames for s in snaps.values()) else 1

    def _summarise(
        self, cat: Catalog, path: Path, run_id: str, state: _RunState, final: bool
    ) -> None:
        """Per-cycle summaries and EIS fits into the catalog: when a run is finished, and every
        ``summary_interval_s`` while it runs (only if rows came in since)."""
        if not self.summaries:
            return
        pos = cat.positions(run_id)
        rows = (pos["samples"].rows, pos["spectra"].rows)
        due = time.monotonic() - state.summarised_at >= self.summary_interval_s
        if rows == state.summarised_rows or not (final or due):
            return
        from cellbench.daq.run_reader import RunReader

        state.summarised_at = time.monotonic()
        reader = RunReader(path)
        if rows[0] and rows[0] != state.summarised_rows[0]:
            from cellbench.analysis.cycling import cycle_summary

            try:
                summary = cycle_summary(reader.read("samples"), capacity_source="integration")
                cat.upsert_cycle_summaries(run_id, summary)
            except (CellbenchError, pl.exceptions.PolarsError, ValueError) as exc:
                log.info("%s: no cycle summary: %s", run_id, exc)
        if rows[1] and rows[1] != state.summarised_rows[1]:
            from cellbench.analysis.eis_batch import fit_spectra

            try:
                fits = fit_spectra(reader.read("spectra"), EIS_CIRCUIT)
                cat.upsert_eis_fits(run_id, EIS_CIRCUIT, fits)
            except (CellbenchError, pl.exceptions.PolarsError, ValueError) as exc:
                log.info("%s: no EIS fits: %s", run_id, exc)
        state.summarised_rows = rows

    # ---------------------------------------------------------------------------- drivers

    def sync_once(self, paths: Iterable[Path], *, retries: int = 3) -> list[RunSync]:
        """One pass over every run in ``paths``; a lost connection is retried ``retries`` times."""
        results = []
        for run in find_runs(paths):
            for attempt in range(retries + 1):
                try:
                    results.append(self.sync_run(run))
                    break
                except Exception as exc:
                    if not retryable(exc):
                        raise _as_catalog_error(exc, self.catalog_url) from None
                    self._drop_connection()
                    if attempt == retries:
                        raise CatalogError(
                            f"catalog at {describe(self.catalog_url)}: {_first_line(exc)}"
                        ) from None
                    log.warning("sync: %s; retrying", _first_line(exc))
                    time.sleep(min(2.0**attempt, 5.0))
        return results

    def follow(
        self,
        paths: list[Path],
        *,
        interval_s: float = 0.5,
        stop: threading.Event | None = None,
        until_done: bool = False,
        report: Callable[[RunSync], None] | None = None,
    ) -> None:
        """Keep syncing until ``stop`` is set (or, with ``until_done``, until every run is done).

        An unreachable catalog or archive is retried with back-off (up to 30 s); nothing is lost
        meanwhile since the run folders are the buffer.
        """
        stop = stop or threading.Event()
        backoff = interval_s
        finished: set[Path] = set()
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                runs = [r for r in find_runs(paths) if r not in finished]
                for run in runs:
                    res = self.sync_run(run)
                    if report is not None and res.changed():
                        report(res)
                    if res.done:
                        finished.add(run)
                backoff = interval_s
                if until_done and not [r for r in find_runs(paths) if r not in finished]:
                    return
            except Exception as exc:
                if not retryable(exc):
                    raise _as_catalog_error(exc, self.catalog_url) from None
                self._drop_connection()
                log.warning("sync: %s; retrying in %.0f s", _first_line(exc), backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            stop.wait(max(0.0, interval_s - (time.monotonic() - t0)))


def retryable(exc: BaseException) -> bool:
    """A failure that a later pass can get past: a lost or refused connection, a server
    restart, an unreachable archive, a file sealed away under the pass, a concurrent sync."""
    import psycopg

    if isinstance(exc, SyncError):
        return False
    if isinstance(exc, PositionConflict | ArchiveError | FileNotFoundError):
        return True
    if isinstance(exc, CatalogError):
        return "cannot connect" in str(exc)
    if isinstance(exc, psycopg.OperationalError):
        return True
    try:
        from adbc_driver_manager import OperationalError as AdbcOperational
    except ImportError:
        return False
    return isinstance(exc, AdbcOperational)


def _as_catalog_error(exc: BaseException, url: str) -> BaseException:
    """A database error as one clear CatalogError; other errors unchanged."""
    import psycopg

    if isinstance(exc, psycopg.Error):
        return CatalogError(f"catalog at {describe(url)}: {_first_line(exc)}")
    return exc


def _first_line(exc: BaseException) -> str:
    from cellbench.daq.catalog import redact

    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_ino)


def _parquet_reader(path: Path) -> Callable[[], pl.DataFrame]:
    return lambda: pl.read_parquet(path)


def _frame_reader(cache: JournalCache, jpath: Path, frame) -> Callable[[], pl.DataFrame]:
    return lambda: cache.decode(jpath, frame)
