"""Turning closed journals into Parquet segments, merging small segments, and keeping damage.

Sealing never costs a valid row: a journal whose scan found damage (bytes between or after its
frames that hold no valid frame) is first copied, as it was, to ``damaged/<table>/`` beside the
run (the *quarantine*), and only then are its valid frames written to a segment and the journal
deleted. A segment's name covers the batches the journal was given, also those lost to the damage,
so readers see a continuous sequence and report the loss from the quarantined copy.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from cellbench.core import schema
from cellbench.daq import journal
from cellbench.daq.batches import stack
from cellbench.daq.run_files import (
    DAMAGED_DIR,
    JOURNAL_RE,
    NOTE_SUFFIX,
    Segment,
    atomic_write,
    atomic_write_bytes,
    fsync_dir,
    list_table,
    remove_durably,
    segment_name,
)
from cellbench.daq.run_reader import read_segment
from cellbench.daq.summaries import summary_path, write_summary

log = logging.getLogger(__name__)

COMPACT_ROWS = 4_000_000  # segments below this size are merged ...
COMPACT_FANIN = 8  # ... once this many of them follow each other


@dataclass(frozen=True)
class Quarantined:
    """A damaged journal kept under ``damaged/``: what was lost and where the copy is."""

    table: str
    original: str  # journal name in the table folder
    copy: Path  # the kept copy
    problems: tuple[str, ...]  # each damaged byte range, with the reason
    lost_batches: tuple[int, ...]  # sequence numbers no valid frame holds any more

    def message(self) -> str:
        lost = (
            f"{len(self.lost_batches)} batch(es) unreadable ({_ranges(self.lost_batches)})"
            if self.lost_batches
            else "no batch lost"
        )
        return (
            f"damaged journal {self.table}/{self.original}: {lost}; "
            f"{'; '.join(self.problems)}; kept as {self.copy}"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "table": self.table,
            "journal": self.original,
            "kept_as": str(self.copy),
            "problems": list(self.problems),
            "lost_batches": list(self.lost_batches),
        }


def _ranges(seqs: tuple[int, ...]) -> str:
    out, start, prev = [], None, None
    for s in [*seqs, None]:
        if start is not None and (s is None or s != prev + 1):
            out.append(str(start) if start == prev else f"{start}..{prev}")
            start = None
        if s is not None and start is None:
            start = s
        prev = s
    return ", ".join(out)


def journal_first(path: Path) -> int:
    """The first sequence number a journal may hold (from its name)."""
    m = JOURNAL_RE.match(path.name)
    if m is None:
        raise ValueError(f"{path} is not a journal file name")
    return int(m[1])


def next_first(path: Path) -> int | None:
    """The first sequence number of the journal after ``path`` in its folder, if any."""
    _, journals = list_table(path.parent)
    first = journal_first(path)
    later = [j.first for j in journals if j.first > first]
    return min(later) if later else None


def quarantine(path: Path, scan: journal.ScanResult, last_seq: int | None) -> Quarantined:
    """Copy a damaged journal to ``<run>/damaged/<table>/`` (once; durable) and describe it."""
    table_dir = path.parent
    table = table_dir.name
    dest_dir = table_dir.parent / DAMAGED_DIR / table
    dest = dest_dir / path.name
    if not dest.exists():
        dest_dir.mkdir(parents=True, exist_ok=True)
        fsync_dir(dest_dir.parent)
        fsync_dir(table_dir.parent)
        with open(path, "rb") as fh:
            data = fh.read()
        # A clean tail: up to the last valid frame. A damaged tail: all of it (where its damaged
        # bytes end and reserved zeros begin cannot be told apart).
        atomic_write_bytes(dest, data if scan.problem is not None else data[: scan.good_end])
        log.error("%s: damaged; kept as %s before sealing its valid frames", path, dest)
    problems = [d.describe() for d in scan.damaged]
    if scan.problem is not None:
        problems.append(f"bytes from {scan.good_end} unreadable ({scan.problem})")
    have = {f.seq for f in scan.frames}
    first = journal_first(path)
    last = last_seq if last_seq is not None else (scan.frames[-1].seq if scan.frames else first - 1)
    lost = tuple(s for s in range(first, last + 1) if s not in have)
    kept = Quarantined(table, path.name, dest, tuple(problems), lost)
    note = dest.with_name(dest.name + NOTE_SUFFIX)
    if not note.exists():
        atomic_write_bytes(note, (json.dumps(kept.to_dict(), indent=2) + "\n").encode())
    return kept


def write_segment(df: pl.DataFrame, final: Path) -> None:
    """Write ``df`` as zstd Parquet at ``final``: temp file, fsync, rename, fsync the folder.

    A ``samples`` segment gets its min/max summary (:mod:`cellbench.daq.summaries`) written
    durably first, so a segment readers can see has its summary unless the writer died between
    the two renames (readers then compute it from the rows)."""
    if final.parent.name == "samples":
        write_summary(df, final)
    atomic_write(final, lambda tmp: df.write_parquet(tmp, compression="zstd", statistics=True))


def seal_journal(path: Path, seg_rows: dict[Path, int]) -> Quarantined | None:
    """Make a closed journal a segment, then delete it (a reader sees one or both, never none).

    A damaged journal is quarantined first; its valid frames are sealed under a name that covers
    every batch it was given (from its file name to the next journal's first batch, if any).
    """
    scan = journal.scan_file(path)
    kept: Quarantined | None = None
    first = journal_first(path)
    last = scan.frames[-1].seq if scan.frames else None
    if not scan.clean:
        nxt = next_first(path)
        if scan.problem is not None and nxt is not None:
            last = nxt - 1  # the damaged tail held the batches up to the next journal's first
        kept = quarantine(path, scan, last)
    if scan.frames:
        first = min(first, scan.frames[0].seq)
        df = stack(path.parent.name, [journal.decode(f) for f in scan.frames], rechunk=True)
    else:
        df = schema.empty(path.parent.name, optional=False)
    if last is not None and last >= first:
        final = path.parent / segment_name(first, last)
        write_segment(df, final)
        seg_rows[final] = df.height
    remove_durably([path])
    return kept


def compact(table_dir: Path, seg_rows: dict[Path, int]) -> list[Path]:
    """Merge the newest run of small segments once there are COMPACT_FANIN of them.

    Returns the merged-away segments (and their summaries); the caller deletes them later, so
    that LazyFrames built on them meanwhile stay valid. Readers prefer the wider segment (see
    ``run_files.cover``).
    """
    live = sorted((p for p in seg_rows), key=lambda p: p.name)
    suffix: list[Path] = []
    for p in reversed(live):
        if seg_rows[p] >= COMPACT_ROWS:
            break
        suffix.insert(0, p)
    if len(suffix) < COMPACT_FANIN:
        return []
    segs = [Segment(*seg_range(p), p) for p in suffix]
    df = stack(table_dir.name, [read_segment(s.path) for s in segs])
    final = table_dir / segment_name(segs[0].first, segs[-1].last)
    write_segment(df, final)
    for s in segs:
        del seg_rows[s.path]
    seg_rows[final] = df.height
    return [p for s in segs for p in (s.path, summary_path(s.path))]


def seg_range(path: Path) -> tuple[int, int]:
    _, first, last = path.stem.split("-")
    return int(first), int(last)
