"""Writer process for the store's crash tests: appends numbered rows and acknowledges each batch.

Usage: python store_writer.py RUN_ROOT --batches N --rows R [--seal-interval S] [--seal-every K]
       [--interval S] [--reopen] [--exit-without-close] [--die-at-rename K --die-when W]

Row ``i`` of the run has ``test_time_second == i``; after ``append`` returns for a batch the
writer prints ``ack FIRST LAST`` (row numbers) and flushes stdout, so the parent knows exactly
which rows were acknowledged when it kills this process.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from cellbench.core.schema import RunMeta
from cellbench.daq.store import create_run, open_run, reopen_run


def batch(first: int, n: int) -> pl.DataFrame:
    idx = np.arange(first, first + n, dtype=np.float64)
    return pl.DataFrame(
        {
            "channel": [f"ch{int(i) % 64:02d}" for i in idx],
            "test_time_second": idx,
            "unix_time_second": 1.7e9 + idx,
            "voltage_volt": 3.0 + idx * 1e-6,
            "current_ampere": np.where(idx % 2 == 0, 0.001, -0.001),
            "cycle_count": 1,
            "step_count": 1,
            "step_index": 0,
        }
    )


def die_at_rename(k: int, when: str) -> None:
    """Kill this process just before or after the k-th segment rename (seal or compaction);
    the segment's summary (renamed in just before it) is then already in place."""
    real = os.replace
    seen = []

    def is_segment(dst) -> bool:
        return Path(dst).name.startswith("seg-")

    def replace(src, dst, **kw):
        if is_segment(dst):
            seen.append(dst)
            if len(seen) == k and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst, **kw)
        if is_segment(dst) and len(seen) == k and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("--batches", type=int, default=10**9)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--seal-interval", type=float, default=300.0)
    ap.add_argument("--seal-every", type=int, default=0, help="call seal() every K batches")
    ap.add_argument("--interval", type=float, default=0.0, help="pause between batches, s")
    ap.add_argument("--reopen", action="store_true", help="append to the existing run 'r'")
    ap.add_argument("--exit-without-close", action="store_true")
    ap.add_argument(
        "--die-at-rename",
        type=int,
        default=0,
        help="SIGKILL this process at the K-th rename of a Parquet segment into place",
    )
    ap.add_argument("--die-when", choices=("before", "after"), default="before")
    args = ap.parse_args()
    if args.die_at_rename:
        die_at_rename(args.die_at_rename, args.die_when)
    if args.reopen:
        first = open_run(args.root / "r").tables()["samples"]
        w = reopen_run(args.root / "r", seal_interval_s=args.seal_interval)
    else:
        meta = RunMeta(run_id="r", start_time="2026-01-01T00:00:00Z")
        w = create_run(args.root, meta, seal_interval_s=args.seal_interval)
        first = 0
    print("ready", flush=True)
    for b in range(args.batches):
        w.append("samples", batch(first, args.rows))
        sys.stdout.write(f"ack {first} {first + args.rows - 1}\n")
        sys.stdout.flush()
        first += args.rows
        if args.seal_every and (b + 1) % args.seal_every == 0:
            w.seal()
        if args.interval:
            time.sleep(args.interval)
    if args.exit_without_close:
        os._exit(0)  # like a crash after the last append returned
    w.close()
    print("closed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
