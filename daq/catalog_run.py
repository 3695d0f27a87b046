"""A catalog run as a run folder: its archived segments, then the catalog's newest rows.

Everything that reads a run folder (``runs show``, ``analyze ...``, reports) reads a catalog run
the same way: :func:`fetch_run` lays out ``DEST/<run_id>/`` with ``run.json`` from the catalog,
the archived Parquet segments byte for byte (each checked against its SHA-256), and the rows past
the archive (a live run's newest rows, from the catalog's tables) as one more segment. The result
equals the local folder's content, so analyses give the same numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from cellbench.core import schema
from cellbench.core.errors import CellbenchError
from cellbench.daq.archive import Archive
from cellbench.daq.catalog import Catalog
from cellbench.daq.run_files import RUN_JSON, Gap, Segment, cover, segment_name


class CatalogRunError(CellbenchError):
    """A catalog run cannot be assembled (rows in neither the archive nor the catalog)."""


def archived_cover(
    catalog: Catalog, run_id: str
) -> dict[str, list[tuple[int, int, int, str, str]]]:
    """Per table, the archived segments that hold each batch once, from batch 0 on, as
    ``(first, last, rows, uri, sha256)`` (the widest of overlapping ones, as readers choose)."""
    out = {}
    for table, segs in catalog.archived(run_id).items():
        listed = [Segment(f, last, Path(str(i))) for i, (f, last, *_) in enumerate(segs)]
        listed.sort(key=lambda s: (s.first, -s.last))
        try:
            chosen, _, _ = cover(Path(f"{run_id}/{table}"), listed)
        except Gap as exc:
            raise CatalogRunError(f"archive of run {run_id}: {exc}") from None
        out[table] = [segs[int(str(s.path))] for s in chosen]
    return out


def fetch_run(
    catalog_url: str, run_id: str, dest: Path, *, archive_location: str | None = None
) -> Path:
    """Assemble catalog run ``run_id`` as the run folder ``dest/<run_id>``; returns its path.

    Segments come from the archive recorded with the run (or ``archive_location``).
    """
    with Catalog(catalog_url) as cat:
        meta, counts = cat.run_meta(run_id)
        row = cat.conn.execute(
            "SELECT archive FROM cellbench.runs WHERE run_id = %s", (run_id,)
        ).fetchone()
        location = archive_location or (row[0] if row else "")
        positions = cat.positions(run_id)
        segs = archived_cover(cat, run_id)
        folder = Path(dest) / run_id
        folder.mkdir(parents=True, exist_ok=False)
        (folder / RUN_JSON).write_text(json.dumps(meta.to_dict(), indent=2) + "\n")
        archive = Archive(location) if any(segs.values()) else None
        for table in schema.TABLES:
            tdir = folder / table
            tdir.mkdir()
            rows, nxt = 0, 0
            for first, last, n, uri, digest in segs[table]:
                assert archive is not None
                archive.fetch(uri, tdir / segment_name(first, last), sha256=digest)
                rows, nxt = rows + n, last + 1
            want = counts[table]
            if want > rows:
                tail = cat.rows_from(table, run_id, rows)
                got = tail["row_no"].to_list()
                if len(got) != want - rows or (got and (got[0] != rows or got[-1] != want - 1)):
                    raise CatalogRunError(
                        f"run {run_id} {table}: rows {rows}..{want - 1} are neither in the "
                        f"archive ({location or 'none recorded'}) nor in the catalog's live window "
                        "(older than it, and not archived yet)"
                    )
                last = max(positions[table].next_seq - 1, nxt)
                tail.drop("row_no").write_parquet(
                    tdir / segment_name(nxt, last), compression="zstd"
                )
    return folder


def read_archived_table(
    archive: Archive, segments: list[tuple[int, int, int, str, str]], table: str
) -> pl.DataFrame:
    """A table of a run straight from the archive (for batch tasks on workers)."""
    from cellbench.daq.batches import stack

    return stack(table, [archive.read_segment(uri) for _, _, _, uri, _ in segments])
