"""Read a run folder, also while another process is writing it or after that process crashed.

The reader never writes, renames or truncates anything and reads without a lock: it works on a
read-only copy and never delays the writer (only :func:`writer_active` probes the writer's lock,
for microseconds, and the writer retries its lock for a second). A table is assembled from the
file names (see :mod:`cellbench.daq.run_files`): sealed Parquet segments first, then the frames
of the journals, keeping each batch sequence number once. A listing that raced the writer's
seal (a file vanished, or a range seems missing) is simply taken again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import polars as pl

from cellbench.core import schema
from cellbench.core.errors import SchemaError
from cellbench.core.schema import RunMeta
from cellbench.daq import journal
from cellbench.daq.batches import normalize_lazy, stack
from cellbench.daq.run_files import (
    LOCK_FILE,
    RUN_JSON,
    Gap,
    Segment,
    StoreError,
    cover,
    list_table,
)

# Listings taken (over about 1 s) before a gap is reported as lost files. A listing races a seal
# only in the instant between readdir and open, so the next listing is consistent.
_RETRIES = 30
_BLOCK = 256 * 2**10  # bytes read at a time from a live journal


def load_meta(path: Path) -> RunMeta:
    """Parse and validate ``run.json`` of the run folder ``path``."""
    file = Path(path) / RUN_JSON
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StoreError(f"{path}: not a cellbench run folder (no {RUN_JSON})") from None
    except OSError as exc:
        raise StoreError(f"{file}: cannot read: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StoreError(f"{file}: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return RunMeta.from_dict(data, source=str(file))


def check_table(table: str) -> None:
    if table not in schema.TABLES:
        raise SchemaError("table", [f"unknown table {table!r}; expected one of {schema.TABLES}"])


def writer_active(path: Path) -> bool:
    """True while a process holds the run's writer lock (probed without blocking the writer)."""
    try:
        fd = os.open(Path(path) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases the probe's shared lock
    return False


class JournalCache:
    """Frames already read from journals, so a reader polling a live run reads only new bytes.

    A journal only ever grows (a repair truncates only bytes past the last good frame, which
    were never cached), so what was read stays valid while the file keeps its inode. Decoded
    batches are kept too. Memory is bounded by the journal size (sealed at 64 MB at most).
    """

    def __init__(self) -> None:
        self._files: dict[Path, tuple[int, int, list[journal.Frame]]] = {}  # ino, end, frames
        self._decoded: dict[tuple[Path, int], pl.DataFrame] = {}  # (path, seq) -> batch
        self._lock = threading.Lock()

    def frames(self, path: Path) -> list[journal.Frame]:
        """Good frames of ``path`` now; FileNotFoundError if it was sealed and deleted."""
        with open(path, "rb") as fh, self._lock:
            st = os.fstat(fh.fileno())
            ino, end, frames = self._files.get(path, (st.st_ino, 0, []))
            if ino != st.st_ino or st.st_size < end:  # replaced: start over
                end, frames = 0, []
                self._drop_decoded({path})
            if st.st_size > end:
                end, frames = _read_new_frames(fh, end, frames)
            self._files[path] = (st.st_ino, end, frames)
            return frames

    def decode(self, path: Path, frame: journal.Frame) -> pl.DataFrame:
        key = (path, frame.seq)
        with self._lock:
            df = self._decoded.get(key)
        if df is None:
            df = journal.decode(frame)
            with self._lock:
                self._decoded[key] = df
        return df

    def keep_only(self, paths: set[Path]) -> None:
        """Forget journals that are gone (sealed)."""
        with self._lock:
            for p in set(self._files) - paths:
                del self._files[p]
            self._drop_decoded(set(p for p, _ in self._decoded) - paths)

    def _drop_decoded(self, paths: set[Path]) -> None:
        for key in [k for k in self._decoded if k[0] in paths]:
            del self._decoded[key]


def _read_new_frames(
    fh: BinaryIO, end: int, frames: list[journal.Frame]
) -> tuple[int, list[journal.Frame]]:
    """Frames from byte ``end`` on, read block by block up to the reserved zeros (not to EOF)."""
    frames = list(frames)
    fh.seek(end)
    buf, want = b"", _BLOCK
    while chunk := fh.read(want):
        buf = buf + chunk if buf else chunk
        scan = journal.scan_bytes(buf, check_tail=False)
        frames.extend(replace(f, offset=f.offset + end) for f in scan.frames)
        end += scan.good_end
        buf = buf[scan.good_end :]
        if scan.need:  # the block ended inside a frame: read the rest of it
            want = max(_BLOCK, scan.need - len(buf))
        elif buf:  # reserved zeros (the end) or a damaged frame: stop
            break
        else:
            want = _BLOCK
    return end, frames


@dataclass(frozen=True)
class Snapshot:
    """A consistent view of one table: sealed segments, then journal frames, each batch once."""

    segments: list[Segment]
    frames: list[tuple[Path, journal.Frame]]  # (journal file, frame)
    next_seq: int  # sequence number of the next batch the writer will append

    def journal_frame(self, table: str, cache: JournalCache) -> pl.DataFrame | None:
        """The journal frames decoded and stacked; None if there are none."""
        if not self.frames:
            return None
        return stack(table, [cache.decode(path, f) for path, f in self.frames], rechunk=True)


def snapshot(table_dir: Path, cache: JournalCache | None = None) -> Snapshot:
    """Take a consistent listing of a table folder, retrying while it races a seal."""
    cache = cache or JournalCache()
    last_error: Exception | None = None
    for attempt in range(_RETRIES):
        segments, journals = list_table(table_dir)
        try:
            chosen, _, nxt = cover(table_dir, segments)
            frames: list[tuple[Path, journal.Frame]] = []
            for jr in journals:
                for frame in cache.frames(jr.path):
                    if frame.seq < nxt:  # already in a segment (a seal that has not deleted it)
                        continue
                    if frame.seq != nxt:
                        raise Gap(table_dir, nxt, frame.seq)
                    frames.append((jr.path, frame))
                    nxt += 1
            return Snapshot(chosen, frames, nxt)
        except (Gap, FileNotFoundError) as exc:
            last_error = exc
            time.sleep(min(0.002 * attempt, 0.05))
    raise StoreError(f"cannot assemble a consistent view: {last_error}")


def segment_rows(path: Path) -> int:
    """Rows in a Parquet segment, from its footer."""
    return int(pl.scan_parquet(path).select(pl.len()).collect().item())


class RunReader:
    """Read-only access to one run folder. Cheap to create; every call sees the newest rows."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise StoreError(f"{self.path}: no such run folder")
        self._meta = load_meta(self.path)
        self._journals = {t: JournalCache() for t in schema.TABLES}
        self._segment_rows: dict[Path, int] = {}  # segments never change once renamed in

    def _snapshot(self, table: str) -> Snapshot:
        cache = self._journals[table]
        snap = snapshot(self.path / table, cache)
        cache.keep_only({p for p, _ in snap.frames})
        return snap

    @property
    def meta(self) -> RunMeta:
        """``run.json`` as it is now (re-read: a live run's status and end time change)."""
        with contextlib.suppress(StoreError):  # keep the last good one if the folder vanished
            self._meta = load_meta(self.path)
        return self._meta

    def writer_active(self) -> bool:
        """True while a writer process holds the run open."""
        return writer_active(self.path)

    def _table_dir(self, table: str) -> Path:
        check_table(table)
        return self.path / table

    def read(self, table: str) -> pl.DataFrame:
        """All rows of ``table`` in append order (none: an empty frame of the model's columns)."""
        table_dir = self._table_dir(table)
        for _ in range(_RETRIES):
            snap = self._snapshot(table)
            try:
                parts = [pl.read_parquet(s.path) for s in snap.segments]
            except FileNotFoundError:  # a compaction removed a segment after the listing
                continue
            tail = snap.journal_frame(table, self._journals[table])
            if tail is not None:
                parts.append(tail)
            return stack(table, parts)
        raise StoreError(f"{table_dir}: segments keep vanishing while reading")

    def scan(self, table: str) -> pl.LazyFrame:
        """A LazyFrame over ``table``: Parquet segments lazily, journal rows as they are now.

        Segments merged by compaction are deleted only at the writer's next seal (minutes later),
        so a LazyFrame built on a live run stays valid until then; on a closed run, forever.
        """
        self._table_dir(table)
        snap = self._snapshot(table)
        parts = [pl.scan_parquet(s.path) for s in snap.segments]
        tail = snap.journal_frame(table, self._journals[table])
        if tail is not None:
            parts.append(tail.lazy())
        if not parts:
            return schema.empty(table, optional=True).lazy()
        if len(parts) == 1:
            return normalize_lazy(table, parts[0])
        return normalize_lazy(table, pl.concat(parts, how="diagonal_relaxed"))

    def tables(self) -> dict[str, int]:
        """Row count of each table (``samples``, ``spectra``, ``events``), without decoding rows."""
        out = {}
        for table in schema.TABLES:
            table_dir = self.path / table
            for _ in range(_RETRIES):
                snap = self._snapshot(table)
                try:
                    rows = sum(self._rows(s.path) for s in snap.segments)
                except FileNotFoundError:
                    continue
                out[table] = rows + sum(f.nrows for _, f in snap.frames)
                break
            else:
                raise StoreError(f"{table_dir}: segments keep vanishing while counting")
        return out

    def _rows(self, path: Path) -> int:
        n = self._segment_rows.get(path)
        if n is None:
            n = self._segment_rows[path] = segment_rows(path)
        return n

    def __repr__(self) -> str:
        return f"RunReader({str(self.path)!r})"


def open_run(path: Path) -> RunReader:
    """Open a run folder for reading (never modifies it; works while a writer appends)."""
    return RunReader(path)
