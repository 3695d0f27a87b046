"""Names and listing of the files inside a run folder, and the crash-safe file primitives.

Layout of one run folder (see ``docs/store.md``)::

    run.json                               RunMeta, replaced atomically
    .writer.lock                           held (flock) by the one process writing the run
    samples/seg-000000000000-000000000041.parquet   sealed batches 0..41 (zstd Parquet)
    samples/journal-000000000042.cbj       framed journal, batches from 42 on
    spectra/...  events/...                same, per table
    damaged/samples/journal-000000000042.cbj   a damaged journal kept as it was, once its valid
                                           frames are sealed (nothing is deleted by a repair)

Every batch appended to a table gets the next sequence number of that table. A segment's name
gives the inclusive range of sequence numbers it holds; a journal's name gives the first one it
may hold. Readers assemble a table from these names alone, so a listing taken while the writer
seals (segment renamed into place, then journal deleted) can hold a batch twice, never half: the
reader keeps each sequence number once and retries if a listing shows a gap.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cellbench.core.errors import CellbenchError

RUN_JSON = "run.json"
LOCK_FILE = ".writer.lock"
TMP_SUFFIX = ".tmp"
DAMAGED_DIR = "damaged"  # damaged journals are kept here (per table) when their rows are sealed
NOTE_SUFFIX = ".json"  # beside each kept journal: which batches it lost, and why
SEGMENT_RE = re.compile(r"^seg-(\d{12})-(\d{12})\.parquet$")
JOURNAL_RE = re.compile(r"^journal-(\d{12})\.cbj$")


class StoreError(CellbenchError):
    """A run folder cannot be created, opened, written or repaired; names the folder or file."""


def segment_name(first: int, last: int) -> str:
    return f"seg-{first:012d}-{last:012d}.parquet"


def journal_name(first: int) -> str:
    return f"journal-{first:012d}.cbj"


@dataclass(frozen=True)
class Segment:
    """A sealed Parquet file holding batches ``first..last`` (inclusive) of a table."""

    first: int
    last: int
    path: Path


@dataclass(frozen=True)
class Journal:
    """A journal file whose frames have sequence numbers from ``first`` on."""

    first: int
    path: Path


class Gap(Exception):
    """Batches ``expected..found-1`` are in no file: a listing that raced a seal, or lost files."""

    def __init__(self, table_dir: Path, expected: int, found: int):
        self.expected, self.found = expected, found
        super().__init__(f"{table_dir}: batches {expected}..{found - 1} are missing")


def list_table(table_dir: Path) -> tuple[list[Segment], list[Journal]]:
    """Segments and journals of one table folder (absent folder: none), sorted by sequence."""
    segments: list[Segment] = []
    journals: list[Journal] = []
    try:
        names = os.listdir(table_dir)
    except FileNotFoundError:
        return segments, journals
    for name in names:
        if m := SEGMENT_RE.match(name):
            segments.append(Segment(int(m[1]), int(m[2]), table_dir / name))
        elif m := JOURNAL_RE.match(name):
            journals.append(Journal(int(m[1]), table_dir / name))
    segments.sort(key=lambda s: (s.first, -s.last))
    journals.sort(key=lambda j: j.first)
    return segments, journals


def cover(table_dir: Path, segments: list[Segment]) -> tuple[list[Segment], list[Segment], int]:
    """Pick the segments that hold each batch once, in order.

    Returns ``(chosen, redundant, next_seq)``: redundant segments are wholly inside a chosen one
    (left behind by a crash during compaction); ``next_seq`` is the first batch not in a segment.
    Raises :class:`Gap` if the segments skip a batch.
    """
    chosen: list[Segment] = []
    redundant: list[Segment] = []
    nxt = 0
    for seg in segments:  # sorted by (first, -last): the widest of equal starts comes first
        if seg.last < nxt:
            redundant.append(seg)
            continue
        if seg.first != nxt:
            raise Gap(table_dir, nxt, seg.first)
        chosen.append(seg)
        nxt = seg.last + 1
    return chosen, redundant, nxt


def fsync_dir(path: Path) -> None:
    """Make renames, creations and deletions inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_path(final: Path) -> Path:
    """The temporary name ``final`` is written under before the rename (pid: no clashes)."""
    return final.with_name(f"{final.name}.{os.getpid()}{TMP_SUFFIX}")


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Create or replace ``path`` so a crash leaves either the old or the new file: ``write``
    fills a temporary file beside it, which is fsynced, renamed into place, and the folder
    fsynced. A failure removes the temporary file."""
    tmp = tmp_path(path)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` durably (:func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def remove_durably(paths: list[Path]) -> None:
    """Delete files (already gone is fine) and fsync their folders."""
    folders = set()
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
        folders.add(p.parent)
    for folder in folders:
        fsync_dir(folder)
