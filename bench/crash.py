"""Crash harness: ``cellbench run`` killed with SIGKILL at random moments, then resumed.

Each trial, in a fresh folder:

1. start ``cellbench run`` (the demo station's simulated instruments, a 25 min charge-and-rest
   protocol sampled every 2 s, at time scale 400: about 2 s of wall time);
2. a **reader in another process** (this script with ``--reader``) polls the run with
   ``open_run(...).read("samples")`` as fast as it can and keeps the largest table it saw; it
   also counts any read that was not an extension of the previous one (a row vanishing);
3. after a random delay the logger gets ``kill -9``; the run is read back as the dead writer
   left it (``rows recovered``); with ``--damage`` one frame of its samples journal is then
   damaged (a flipped bit, a zeroed 4 KiB block, or random bytes over the frame);
4. ``cellbench resume RUN`` must complete the protocol (exit 0, status completed).

Then the run is checked against what the reader saw and what was recovered:

* **lost**: rows the reader saw (or that were recovered after the kill) missing from the run;
  with ``--damage``, compared with the rows of the frame(s) the damage touched, which are the
  only rows allowed to go;
* **duplicated**: rows present twice (same channel and test time);
* **backwards**: rows whose ``test_time_second`` or ``unix_time_second`` is earlier than the row
  before (per channel, in the order the run holds them);
* **resume failures**: resumes that did not exit 0 with the run completed.

Not a pytest test (100 trials take several minutes); ``tests/test_resume.py`` covers one trial.

Run:  python bench/crash.py                    (100 trials)
      python bench/crash.py --trials 20 --damage
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
STATION = ROOT / "fixtures" / "stations" / "demo_station.toml"
PROTOCOL = """
name = "crash trial"
sample_interval = "2 s"

[safety]
voltage_min = "2.5 V"
voltage_max = "4.35 V"
current_max = "5 mA"

[[step]]
type = "cc"
current = "C/5"
until = { time = "20 min" }

[[step]]
type = "rest"
duration = "5 min"
"""
TIME_SCALE = 400.0
KEY = ["channel", "test_time_second"]


# ----------------------------------------------------------------------------- the reader


def reader_main(run: Path, out: Path) -> int:
    """Poll ``run`` until SIGTERM; write the largest samples table seen to ``out`` (Parquet)
    and the number of reads that lost a row the previous read had, to ``out``.txt."""
    from cellbench.daq.store import open_run

    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    best = None
    shrunk = 0
    reader = None
    while not stop:
        try:
            if reader is None:
                if not (run / "run.json").is_file():
                    time.sleep(0.01)
                    continue
                reader = open_run(run)
            df = reader.read("samples").select(KEY)
        except Exception:  # the folder being created, or a read racing the kill
            time.sleep(0.01)
            continue
        if best is not None and (
            df.height < best.height or df.head(best.height).join(best, on=KEY, how="anti").height
        ):
            shrunk += 1
        if best is None or df.height >= best.height:
            best = df
        time.sleep(0.005)
    (
        best
        if best is not None
        else pl.DataFrame(schema={"channel": pl.String, "test_time_second": pl.Float64})
    ).write_parquet(out)
    out.with_suffix(".txt").write_text(str(shrunk))
    return 0


# ----------------------------------------------------------------------------- a trial


@dataclass
class Trial:
    seen: int = 0
    recovered: int = 0
    final: int = 0
    lost: int = 0
    duplicated: int = 0
    backwards: int = 0
    resume_failed: bool = False
    not_started: bool = False  # the logger died before creating the run (not counted)
    reader_shrunk: int = 0
    damaged_rows: int = 0  # rows of the frame(s) the damage touched (--damage)
    stop_at_first_rows: int = 0  # rows a scan stopping at the first damaged frame would lose
    damage: str = ""
    notes: list[str] = field(default_factory=list)


def cellbench(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "cellbench.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def samples_now(run: Path) -> int:
    from cellbench.daq.store import open_run

    try:
        return open_run(run).tables()["samples"]
    except Exception:
        return 0


def damage_one_frame(run: Path, rng: random.Random) -> tuple[int, int, str]:
    """Damage one frame of the samples journal: (rows of the frames touched, rows a scan that
    stops at the first damaged frame would lose (the reference), what was done)."""
    from cellbench.daq import journal
    from cellbench.daq.run_files import list_table

    _, journals = list_table(run / "samples")
    candidates = []
    for jr in journals:
        scan = journal.scan_file(jr.path)
        candidates.extend((jr.path, f) for f in scan.frames)
    if not candidates:
        return 0, 0, "no frame to damage"
    path, frame = rng.choice(candidates)
    data = bytearray(path.read_bytes())
    start, end = frame.offset, frame.offset + journal.HEADER_SIZE + len(frame.payload)
    how = rng.choice(["bit", "zeros", "garbage"])
    if how == "bit":
        at = rng.randrange(start, end)
        data[at] ^= 1 << rng.randrange(8)
        lo, hi = at, at + 1
    elif how == "zeros":
        lo = rng.randrange(start, end)
        hi = min(lo + 4096, len(data))
        data[lo:hi] = bytes(hi - lo)
    else:
        lo = rng.randrange(start, end)
        hi = min(lo + rng.randrange(1, 64), end)
        data[lo:hi] = rng.randbytes(hi - lo)
    path.write_bytes(bytes(data))
    touched = sum(
        f.nrows
        for p, f in candidates
        if p == path and f.offset < hi and lo < f.offset + journal.HEADER_SIZE + len(f.payload)
    )
    ends = {(p, f.seq): f.offset + journal.HEADER_SIZE + len(f.payload) for p, f in candidates}
    first_hit = min(
        (f.seq for p, f in candidates if p == path and lo < ends[(p, f.seq)]), default=frame.seq
    )
    stop_at_first = sum(f.nrows for _, f in candidates if f.seq >= first_hit)
    what = f"{how} at bytes {lo}..{hi - 1} of {path.name} (frame seq {frame.seq})"
    return touched, stop_at_first, what


def backwards(df: pl.DataFrame) -> int:
    n = 0
    for column in ("test_time_second", "unix_time_second"):
        n += (
            df.with_row_index()
            .with_columns(pl.col(column).diff().over("channel").alias("d"))
            .filter(pl.col("d") < 0)
            .height
        )
    return n


def run_trial(tmp: Path, rng: random.Random, *, damage: bool) -> Trial:
    from cellbench.daq.store import open_run

    protocol = tmp / "p.toml"
    protocol.write_text(PROTOCOL, encoding="utf-8")
    run = tmp / "runs" / "r"
    seen_file = tmp / "seen.parquet"
    reader = subprocess.Popen(
        [sys.executable, __file__, "--reader", str(run), str(seen_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    logger = cellbench(
        "run", str(protocol), "--station", str(STATION), "--out", str(tmp / "runs"),
        "--name", "r", "--plain", "--time-scale", f"{TIME_SCALE:g}",
    )  # fmt: skip
    trial = Trial()
    try:
        deadline = time.monotonic() + 60
        while samples_now(run) < 1 and time.monotonic() < deadline and logger.poll() is None:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.8))  # the run lasts about 2 s of wall time
    finally:
        logger.kill()
        logger.wait(timeout=30)
        reader.send_signal(signal.SIGTERM)
        reader.wait(timeout=60)
    if logger.returncode != -signal.SIGKILL:
        trial.notes.append(f"logger exited {logger.returncode} before the kill")
    if not (run / "run.json").is_file():  # never started (e.g. a broken install): not a crash
        err = logger.stderr.read() if logger.stderr else ""
        trial.not_started = True
        trial.notes.append(f"the logger never created the run: {err.strip()[-300:]}")
        return trial
    seen = pl.read_parquet(seen_file) if seen_file.exists() else pl.DataFrame()
    trial.reader_shrunk = int((seen_file.with_suffix(".txt")).read_text() or 0)
    trial.seen = seen.height
    recovered = open_run(run).read("samples").select(KEY)
    trial.recovered = recovered.height
    if damage:
        trial.damaged_rows, trial.stop_at_first_rows, trial.damage = damage_one_frame(run, rng)
    again = cellbench("resume", str(run), "--plain", "--time-scale", "4000")
    _, err = again.communicate(timeout=300)
    reader_final = open_run(run)
    status = reader_final.meta.status
    if again.returncode != 0 or status != "completed":
        trial.resume_failed = True
        trial.notes.append(f"resume exit {again.returncode}, status {status}: {err.strip()[-300:]}")
    final = reader_final.read("samples")
    trial.final = final.height
    must = pl.concat([seen, recovered]).unique() if seen.height else recovered.unique()
    trial.lost = must.join(final.select(KEY), on=KEY, how="anti").height
    trial.duplicated = final.height - final.select(KEY).unique().height
    trial.backwards = backwards(final)
    return trial


# --------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--damage", action="store_true", help="damage one frame before each resume")
    ap.add_argument("--keep", type=Path, help="keep the trial folders here")
    ap.add_argument("--reader", nargs=2, metavar=("RUN", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reader:
        return reader_main(Path(args.reader[0]), Path(args.reader[1]))
    rng = random.Random(args.seed)
    trials: list[Trial] = []
    skipped = 0
    started = time.monotonic()
    for k in range(args.trials):
        base = args.keep or Path(tempfile.mkdtemp(prefix="cellbench-crash-"))
        tmp = base / f"trial-{k:03d}"
        tmp.mkdir(parents=True)
        t = run_trial(tmp, rng, damage=args.damage)
        if t.not_started:
            print(f"trial {k + 1:3d}: not counted: {'; '.join(t.notes)}", flush=True)
            skipped += 1
            continue
        trials.append(t)
        bad = t.lost > (t.damaged_rows if args.damage else 0) or t.duplicated or t.backwards
        flag = "  <-- " + "; ".join(t.notes) if (bad or t.resume_failed or t.notes) else ""
        extra = f" damaged {t.damaged_rows} rows ({t.damage})" if args.damage else ""
        print(
            f"trial {k + 1:3d}: seen {t.seen:5d} recovered {t.recovered:5d} final {t.final:5d} "
            f"lost {t.lost} dup {t.duplicated} back {t.backwards}{extra}{flag}",
            flush=True,
        )
        if args.keep is None and not (bad or t.resume_failed):
            import shutil

            shutil.rmtree(base, ignore_errors=True)
    wall = time.monotonic() - started
    print()
    print("crash trials: kill -9 of `cellbench run` at a random moment, then `cellbench resume`")
    print(f"({'one journal frame damaged before each resume; ' if args.damage else ''}"
          f"{wall:.0f} s wall, seed {args.seed})")  # fmt: skip
    rows = [
        ("trials", len(trials)),
        ("trials not counted (the logger did not start)", skipped),
        ("rows seen by the reader (sum)", sum(t.seen for t in trials)),
        ("rows recovered after the kill (sum)", sum(t.recovered for t in trials)),
        ("rows lost", sum(t.lost for t in trials)),
        ("rows duplicated", sum(t.duplicated for t in trials)),
        ("rows with time going backwards", sum(t.backwards for t in trials)),
        ("resume failures", sum(t.resume_failed for t in trials)),
        ("reader reads that lost a row", sum(t.reader_shrunk for t in trials)),
    ]
    if args.damage:
        rows.append(("rows in the damaged frames (sum)", sum(t.damaged_rows for t in trials)))
        rows.append(
            ("reference: rows lost by stopping at the first damaged frame",
             sum(t.stop_at_first_rows for t in trials))
        )  # fmt: skip
        rows.append(
            ("trials losing more than the damaged frame",
             sum(t.lost > t.damaged_rows for t in trials))
        )  # fmt: skip
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    failed = (
        sum(t.duplicated + t.backwards for t in trials)
        + sum(t.resume_failed for t in trials)
        + sum(t.lost > (t.damaged_rows if args.damage else 0) for t in trials)
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
