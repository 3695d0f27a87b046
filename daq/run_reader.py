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
    DAMAGED_DIR,
    JOURNAL_RE,
    LOCK_FILE,
    NOTE_SUFFIX,
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
        if not Path(path).exists():
            raise StoreError(f"{path}: no such run folder (it does not exist)") from None
        if not Path(path).is_dir():
            raise StoreError(f"{path}: not a run folder (it is a file)") from None
        raise StoreError(f"{path}: not a cellbench run folder (no {RUN_JSON})") from None
    except NotADirectoryError:
        raise StoreError(f"{path}: not a run folder (it is a file)") from None
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


@dataclass(frozen=True)
class Loss:
    """Batches of a table that no file holds any more because their bytes were damaged."""

    table: str
    file: Path  # the journal (or its quarantined copy) where they were
    first_seq: int  # first lost batch
    last_seq: int | None  # last lost batch (None: the damaged tail of a run's last journal)
    where: str  # byte range and reason
    rows_hint: int | None = None  # rows the damaged header claimed, if its magic survived

    def describe(self) -> str:
        batches = (
            f"batch {self.first_seq}"
            if self.last_seq == self.first_seq
            else f"batches {self.first_seq}..{'end' if self.last_seq is None else self.last_seq}"
        )
        rows = "" if self.rows_hint is None else f", about {self.rows_hint} rows"
        return f"{self.table}: {batches} unreadable in {self.file} ({self.where}{rows})"


@dataclass
class _Cached:
    ino: int
    end: int
    frames: list[journal.Frame]
    damaged: list[journal.Damage]
    tail: str | None = None  # why the bytes after ``end`` are not (yet) a frame
    read_to: int = -1  # file size when it was last read to its end as a closed journal


class JournalCache:
    """Frames already read from journals, so a reader polling a live run reads only new bytes.

    A journal only ever grows (a repair truncates only bytes past the last good frame, which
    were never cached), so what was read stays valid while the file keeps its inode. Decoded
    batches are kept too. Memory is bounded by the journal size (sealed at 64 MB at most).
    """

    def __init__(self) -> None:
        self._files: dict[Path, _Cached] = {}
        self._decoded: dict[tuple[Path, int], pl.DataFrame] = {}  # (path, seq) -> batch
        self._lock = threading.Lock()

    def frames(self, path: Path) -> list[journal.Frame]:
        """Good frames of ``path`` now; FileNotFoundError if it was sealed and deleted."""
        return self.read(path).frames

    def read(self, path: Path, *, closed: bool = False) -> _Cached:
        """Frames, damage and tail state of ``path`` now (FileNotFoundError once sealed).

        ``closed``: no writer appends to the file (its run is closed or its writer died), so
        zeros followed by a valid frame are damage, not space reserved for the next append.
        """
        with open(path, "rb") as fh, self._lock:
            st = os.fstat(fh.fileno())
            cached = self._files.get(path) or _Cached(st.st_ino, 0, [], [])
            if cached.ino != st.st_ino or st.st_size < cached.end:  # replaced: start over
                cached = _Cached(st.st_ino, 0, [], [])
                self._drop_decoded({path})
            if st.st_size > cached.end and closed:
                if cached.read_to != st.st_size:  # not again for the same bytes (crashed runs)
                    cached = _read_rest(fh, cached)
                    cached.read_to = st.st_size
            elif st.st_size > cached.end:
                cached = _read_new_frames(fh, cached, st.st_size)
            elif st.st_size == cached.end:
                cached.tail = None
            self._files[path] = cached
            return cached

    def decode(self, path: Path, frame: journal.Frame) -> pl.DataFrame:
        key = (path, frame.seq)
        with self._lock:
            df = self._decoded.get(key)
        if df is None:
            try:
                df = journal.decode(frame)
            except Exception as exc:  # a frame whose CRC matched but whose batch does not load
                raise StoreError(
                    f"{path}: batch {frame.seq} at byte {frame.offset} cannot be decoded: {exc}"
                ) from None
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


def _read_rest(fh: BinaryIO, cached: _Cached) -> _Cached:
    """Frames of a file no writer appends to, from ``cached.end`` to its end, past any damage."""
    fh.seek(cached.end)
    scan = journal.scan_bytes(fh.read())
    end = cached.end
    frames = [*cached.frames, *(replace(f, offset=f.offset + end) for f in scan.frames)]
    damaged = [
        *cached.damaged,
        *(replace(d, offset=d.offset + end, end=d.end + end) for d in scan.damaged),
    ]
    return _Cached(cached.ino, end + scan.good_end, frames, damaged, scan.problem)


def _read_new_frames(fh: BinaryIO, cached: _Cached, size: int) -> _Cached:
    """Frames from byte ``cached.end`` on, read block by block up to the reserved zeros.

    Damage followed by a valid frame is confirmed by reading the bytes again: the writer wrote
    the damaged frame's bytes before the frame seen after them, so a second read shows them as
    they are; a frame merely caught half-written by the first read is whole in the second.
    """
    frames, damaged, end = list(cached.frames), list(cached.damaged), cached.end
    tail: str | None = None
    fh.seek(end)
    buf, want = b"", _BLOCK
    while chunk := fh.read(want):
        buf = buf + chunk if buf else chunk
        scan = journal.scan_bytes(buf, check_tail=False)
        if scan.damaged:
            fh.seek(end)
            again = journal.scan_bytes(fh.read(len(buf)), check_tail=False)
            limit = scan.good_end
            ok_frames = [f for f in again.frames if f.offset + len(f.payload) <= limit]
            ok_damage = [d for d in again.damaged if d.end <= limit]
            good = (
                ok_frames[-1].offset + journal.HEADER_SIZE + len(ok_frames[-1].payload)
                if ok_frames
                else 0
            )
            ok_damage = [d for d in ok_damage if d.end <= good]
            scan = journal.ScanResult(ok_frames, good, len(buf), None, 0, tuple(ok_damage))
            fh.seek(end + len(buf))
        frames.extend(replace(f, offset=f.offset + end) for f in scan.frames)
        damaged.extend(replace(d, offset=d.offset + end, end=d.end + end) for d in scan.damaged)
        end += scan.good_end
        buf = buf[scan.good_end :]
        tail = scan.problem
        if scan.need:  # the block ended inside a frame: read the rest of it (never past EOF)
            want = min(max(_BLOCK, scan.need - len(buf)), max(size - end - len(buf), 1))
        elif buf:  # reserved zeros (the end) or a damaged frame: stop
            break
        else:
            want = _BLOCK
    return _Cached(cached.ino, end, frames, damaged, tail)


@dataclass(frozen=True)
class Snapshot:
    """A consistent view of one table: sealed segments, then journal frames, each batch once."""

    segments: list[Segment]
    frames: list[tuple[Path, journal.Frame]]  # (journal file, frame)
    next_seq: int  # sequence number of the next batch the writer will append
    losses: tuple[Loss, ...] = ()  # batches lost to damaged journal bytes
    tail: Loss | None = None  # unreadable bytes after the newest journal's last frame

    def journal_frame(self, table: str, cache: JournalCache) -> pl.DataFrame | None:
        """The journal frames decoded and stacked; None if there are none."""
        if not self.frames:
            return None
        return stack(table, [cache.decode(path, f) for path, f in self.frames], rechunk=True)


def _explained(
    table: str,
    path: Path,
    state: _Cached,
    frame: journal.Frame,
    nxt: int,
    prev: tuple[Path, _Cached] | None,
) -> Loss | None:
    """The damage that explains why batches ``nxt..frame.seq-1`` are missing, if any: damaged
    bytes just before ``frame`` in its journal, or a damaged tail of the journal before it."""
    before = [d for d in state.damaged if d.end <= frame.offset]
    earlier = [f for f in state.frames if f.offset < frame.offset]
    if before and (not earlier or before[-1].offset >= earlier[-1].offset):
        d = before[-1]
        return Loss(table, path, nxt, frame.seq - 1, d.describe(), d.nrows)
    if not earlier and prev is not None and prev[1].tail is not None:
        return Loss(table, prev[0], nxt, frame.seq - 1, f"damaged tail: {prev[1].tail}")
    return None


def snapshot(table_dir: Path, cache: JournalCache | None = None) -> Snapshot:
    """Take a consistent listing of a table folder, retrying while it races a seal."""
    cache = cache or JournalCache()
    table = table_dir.name
    last_error: Exception | None = None
    for attempt in range(_RETRIES):
        closed = not writer_active(table_dir.parent)  # probed before listing: a sound answer
        segments, journals = list_table(table_dir)
        try:
            chosen, _, nxt = cover(table_dir, segments)
            frames: list[tuple[Path, journal.Frame]] = []
            losses: list[Loss] = []
            prev: tuple[Path, _Cached] | None = None
            for jr in journals:
                state = cache.read(jr.path, closed=closed)
                for frame in state.frames:
                    if frame.seq < nxt:  # already in a segment (a seal that has not deleted it)
                        continue
                    if frame.seq != nxt:
                        loss = _explained(table, jr.path, state, frame, nxt, prev)
                        if loss is None:
                            raise Gap(table_dir, nxt, frame.seq)
                        losses.append(loss)
                    frames.append((jr.path, frame))
                    nxt = frame.seq + 1
                prev = (jr.path, state)
            tail = None
            if prev is not None and prev[1].tail is not None:
                tail = Loss(table, prev[0], nxt, None, f"torn tail: {prev[1].tail}")
            return Snapshot(chosen, frames, nxt, tuple(losses), tail)
        except (Gap, FileNotFoundError) as exc:
            last_error = exc
            time.sleep(min(0.002 * attempt, 0.05))
    raise StoreError(f"cannot assemble a consistent view: {last_error}")


def segment_rows(path: Path) -> int:
    """Rows in a Parquet segment, from its footer; StoreError naming the file if unreadable."""
    try:
        return int(pl.scan_parquet(path).select(pl.len()).collect().item())
    except FileNotFoundError:
        raise
    except Exception as exc:  # polars raises ComputeError/OSError for a damaged file
        raise StoreError(f"{path}: damaged segment, cannot be read: {_short(exc)}") from None


def read_segment(path: Path) -> pl.DataFrame:
    """A whole Parquet segment; StoreError naming the file if it is damaged."""
    try:
        return pl.read_parquet(path)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise StoreError(f"{path}: damaged segment, cannot be read: {_short(exc)}") from None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


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
        table_dir = self.path / table
        if not table_dir.is_dir():
            raise StoreError(f"{table_dir}: folder is missing: the run's {table} cannot be read")
        return table_dir

    def damage(self) -> list[Loss]:
        """What of this run cannot be read, table by table: batches lost to damaged journal
        bytes (also those of journals already quarantined under ``damaged/``), and a torn tail
        (the batch being written when a writer died: never acknowledged, so not data lost)."""
        out: list[Loss] = []
        for table in schema.TABLES:
            if not (self.path / table).is_dir():
                out.append(Loss(table, self.path / table, 0, None, "folder is missing"))
                continue
            snap = self._snapshot(table)
            out.extend(snap.losses)
            if snap.tail is not None and not self.writer_active():
                out.append(snap.tail)
            out.extend(quarantined_losses(self.path, table))
        return out

    def read(self, table: str) -> pl.DataFrame:
        """All rows of ``table`` in append order (none: an empty frame of the model's columns)."""
        table_dir = self._table_dir(table)
        for _ in range(_RETRIES):
            snap = self._snapshot(table)
            try:
                parts = [read_segment(s.path) for s in snap.segments]
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
        for seg in snap.segments:  # a damaged footer is named now, not at collect()
            self._rows(seg.path)
        parts = [pl.scan_parquet(s.path) for s in snap.segments]
        tail = snap.journal_frame(table, self._journals[table])
        if tail is not None:
            parts.append(tail.lazy())
        if not parts:
            return schema.empty(table, optional=True).lazy()
        if len(parts) == 1:
            return normalize_lazy(table, parts[0])
        return normalize_lazy(table, pl.concat(parts, how="diagonal_relaxed"))

    def parts(self, table: str) -> tuple[list[tuple[Path, int]], pl.DataFrame | None]:
        """One consistent view of ``table``: its sealed segments in order, each with its row
        count (from the footer), and the rows of its journals (None when there are none). For
        readers that take segments one at a time (the GUI reads a samples segment's summary,
        :mod:`cellbench.daq.summaries`, instead of its rows)."""
        table_dir = self._table_dir(table)
        for _ in range(_RETRIES):
            snap = self._snapshot(table)
            try:
                segments = [(s.path, self._rows(s.path)) for s in snap.segments]
            except FileNotFoundError:  # a compaction removed a segment after the listing
                continue
            return segments, snap.journal_frame(table, self._journals[table])
        raise StoreError(f"{table_dir}: segments keep vanishing while listing")

    def tables(self) -> dict[str, int]:
        """Row count of each table (``samples``, ``spectra``, ``events``), without decoding rows."""
        out = {}
        for table in schema.TABLES:
            table_dir = self._table_dir(table)
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


def quarantined_losses(run: Path, table: str) -> list[Loss]:
    """Batches lost in the journals kept under ``run/damaged/<table>/`` (see the store's
    repair): from the note written beside each copy, else by scanning the copy again."""
    folder = Path(run) / DAMAGED_DIR / table
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.iterdir()):
        m = JOURNAL_RE.match(path.name)
        if m is None:
            continue
        scan = journal.scan_file(path)
        note = path.with_name(path.name + NOTE_SUFFIX)
        try:
            lost = sorted(int(x) for x in json.loads(note.read_text())["lost_batches"])
        except (OSError, ValueError, KeyError, TypeError):
            have = {f.seq for f in scan.frames}
            last = scan.frames[-1].seq if scan.frames else int(m[1]) - 1
            lost = [s for s in range(int(m[1]), last + 1) if s not in have]
            if scan.problem is not None:
                out.append(Loss(table, path, last + 1, None, f"damaged tail: {scan.problem}"))
        where = "; ".join(
            [d.describe() for d in scan.damaged]
            + ([f"bytes from {scan.good_end} unreadable ({scan.problem})"] if scan.problem else [])
        )
        hints = {d.seq: d.nrows for d in scan.damaged if d.seq is not None}
        for first, last in _runs(lost):
            rows = [hints.get(s) for s in range(first, last + 1)]
            hint = sum(rows) if all(r is not None for r in rows) else None  # type: ignore[arg-type]
            out.append(Loss(table, path, first, last, where, hint))
    return out


def _runs(seqs: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s in seqs:
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def open_run(path: Path) -> RunReader:
    """Open a run folder for reading (never modifies it; works while a writer appends)."""
    return RunReader(path)
