"""Benchmark: rows/s into the lab catalog and segments/s into the archive, in the same run.

Starts a throw-away PostgreSQL server (Debian's ``postgresql`` package, fsync on) and loads the
same ``samples`` rows (64 channels, all model columns, NULL-free and with NULLs) three ways:

* cellbench's binary COPY (psycopg 3, the stream encoded with numpy: ``daq/pgcopy.py``),
* ADBC's PostgreSQL driver (``adbc_ingest``: C++ binary COPY from Arrow),
* reference: psycopg 3's own binary COPY, one ``write_row`` per row (the documented way).

Each load is one transaction that also moves the sync position, as ``cellbench sync`` does.
Then copies sealed segments into a folder archive with SHA-256 read-back (``Archive.put_segment``)
beside ``shutil.copyfile`` of the same files.

Run:  python bench/sync.py              (about a minute)
      python bench/sync.py --rows 200000 --segments 50   (quick)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from lab_runs import meta
from pg_server import ADMIN, WRITER, PgServer, _bindir

from cellbench.core import schema
from cellbench.daq.archive import Archive
from cellbench.daq.catalog import Catalog, Position, _data_columns, with_keys
from cellbench.daq.catalog_admin import create_login, init_catalog


def make_samples(rows: int, channels: int = 64, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    ticks = rows // channels
    t = np.repeat(np.arange(ticks) * 0.1, channels)
    n = t.size
    return pl.DataFrame(
        {
            "channel": np.tile([f"ch{i:02d}" for i in range(channels)], ticks),
            "test_time_second": t,
            "unix_time_second": time.time() - 3600 + t,
            "voltage_volt": 3.7 + rng.normal(0, 0.01, n),
            "current_ampere": rng.normal(0, 1e-3, n),
            "cycle_count": np.ones(n, dtype=np.int32),
            "step_count": np.ones(n, dtype=np.int32),
            "step_index": np.zeros(n, dtype=np.int32),
            "temperature_celsius": 25 + rng.normal(0, 0.1, n),
            "pressure_megapascal": np.where(rng.random(n) < 0.5, np.nan, 5.0),
            "charging_capacity_ampere_hour": rng.random(n) * 1e-3,
            "discharging_capacity_ampere_hour": rng.random(n) * 1e-3,
        },
    ).with_columns(pl.col("pressure_megapascal").fill_nan(None))  # half NULL


def load(cat: Catalog, df: pl.DataFrame, run_id: str) -> float:
    cat.upsert_run(meta(run_id))
    t0 = time.perf_counter()
    cat.load("samples", run_id, df, before=Position(0, 0), after=Position(1, df.height))
    return time.perf_counter() - t0


def load_write_row(cat: Catalog, df: pl.DataFrame, run_id: str) -> float:
    """The reference: psycopg's binary COPY with a Python call per row."""
    cat.upsert_run(meta(run_id))
    keyed = with_keys("samples", df, run_id, 0)
    cols = _data_columns("samples")
    names = ", ".join(c.name for c in cols)
    types = [{"float8": "float8", "int8": "int8", "int4": "int4", "text": "text",
              "timestamptz": "timestamptz"}[c.pgtype] for c in cols]  # fmt: skip
    from datetime import UTC, datetime

    t0 = time.perf_counter()
    with cat.conn.transaction():
        cat._ensure_partitions(cat.conn, keyed)
        with cat.conn.cursor().copy(
            f"COPY cellbench.samples ({names}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(types)
            for row in keyed.iter_rows():
                row = list(row)
                row[2] = datetime.fromtimestamp(row[2], UTC)
                copy.write_row(row)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows per load")
    ap.add_argument("--reference-rows", type=int, default=None, help="rows for write_row")
    ap.add_argument("--segments", type=int, default=200, help="segments into the archive")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    bindir = _bindir()
    if bindir is None:
        sys.exit("PostgreSQL server binaries not found (apt-get install postgresql)")
    server = PgServer(bindir, durable=True)
    os.environ["PGPASSFILE"] = str(server.passfile)
    try:
        init_catalog(server.url(ADMIN))
        create_login(server.url(ADMIN), WRITER, "writer", password=server.passwords[WRITER])
        df = make_samples(a.rows)
        ref_df = df.head(a.reference_rows or a.rows)
        from cellbench.daq.pgcopy import copy_chunks

        keyed = with_keys("samples", df, "x", 0)
        t0 = time.perf_counter()
        stream = sum(len(c) for c in copy_chunks(keyed, _data_columns("samples")))
        encode_rate = df.height / (time.perf_counter() - t0)
        results: dict[str, list[float]] = {"copy": [], "adbc": [], "write_row": []}
        order = ["copy", "adbc", "write_row"]
        for i in range(a.repeat):
            for way in order[i % 3 :] + order[: i % 3]:  # rotate: no path always goes first
                if way == "write_row":
                    with Catalog(server.url(WRITER)) as cat:
                        rate = ref_df.height / load_write_row(cat, ref_df, f"r{i}")
                else:
                    with Catalog(server.url(WRITER), loader=way) as cat:
                        rate = df.height / load(cat, df, f"bench-{way}-{i}")
                results[way].append(rate)
        med = {k: float(np.median(v)) for k, v in results.items()}
        print(
            f"rows into the catalog (samples, {len(schema.SAMPLES) + 3} columns, fsync on, "
            f"median of {a.repeat}; {a.rows:,} rows per load, reference {len(ref_df):,})"
        )
        print("| path | rows/s | ratio to psycopg write_row |\n| --- | --- | --- |")
        for k, label in (("copy", "cellbench binary COPY (psycopg 3 + numpy encoder)"),
                         ("adbc", "ADBC PostgreSQL driver (adbc_ingest)"),
                         ("write_row", "reference: psycopg 3 COPY write_row")):  # fmt: skip
            print(f"| {label} | {med[k]:,.0f} | {med[k] / med['write_row']:.2f} |")
        print(f"(client side alone, the numpy encoder makes {encode_rate:,.0f} rows/s of "
              f"COPY stream, {stream / df.height:.0f} bytes/row)")  # fmt: skip

        # ---- archive
        tmp = Path(tempfile.mkdtemp(prefix="cellbench-bench-archive-"))
        try:
            seg_rows = 5_000
            src = tmp / "src"
            src.mkdir()
            files = []
            for k in range(a.segments):
                f = src / f"seg-{k:012d}-{k:012d}.parquet"
                df.slice((k * seg_rows) % max(df.height - seg_rows, 1), seg_rows).write_parquet(
                    f, compression="zstd"
                )
                files.append(f)
            mb = sum(f.stat().st_size for f in files) / 1e6
            arch = Archive(str(tmp / "archive"))
            t0 = time.perf_counter()
            for f in files:
                arch.put_segment(f, "bench-run", "samples")
            t_arch = time.perf_counter() - t0
            ref = tmp / "plain"
            ref.mkdir()
            t0 = time.perf_counter()
            for f in files:
                shutil.copyfile(f, ref / f.name)
            t_ref = time.perf_counter() - t0
            print(f"\nsegments into a folder archive ({a.segments} segments of {seg_rows:,} rows, "
                  f"{mb:.1f} MB)")  # fmt: skip
            print("| path | segments/s | ratio to shutil.copyfile |\n| --- | --- | --- |")
            print(f"| cellbench Archive.put_segment (temp, fsync, rename, SHA-256 read-back) | "
                  f"{a.segments / t_arch:,.0f} | {t_ref / t_arch:.2f} |")  # fmt: skip
            print(f"| reference: shutil.copyfile (no fsync, no check) | {a.segments / t_ref:,.0f}"
                  " | 1.00 |")  # fmt: skip
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
