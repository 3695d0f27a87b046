"""Run store under crashes and concurrent readers: real writer processes, real SIGKILL."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from cellbench.daq import journal
from cellbench.daq.run_files import cover, list_table
from cellbench.daq.store import open_run, reopen_run

WRITER = Path(__file__).with_name("store_writer.py")
sys.path.insert(0, str(WRITER.parent))
from store_writer import batch  # noqa: E402  (the helper script beside this file)


def start_writer(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def acked_rows(lines: list[str]) -> int:
    """Rows acknowledged (acks are contiguous from row 0): one past the last acked row."""
    acks = [ln.split() for ln in lines if ln.startswith("ack ")]
    for (_, a, _), (_, b, _) in itertools.pairwise(acks):
        assert int(b) > int(a)
    return int(acks[-1][2]) + 1 if acks else 0


def check_files(run: Path) -> None:
    """Every segment reads; every journal but the newest is clean (only a tail can be torn)."""
    segments, journals = list_table(run / "samples")
    for seg in segments:
        pl.read_parquet(seg.path)
    for jr in journals[:-1]:
        assert journal.scan_file(jr.path).problem is None, jr.path


def assert_prefix(df: pl.DataFrame, at_least: int) -> None:
    """Rows 0..n-1 exactly once each, in order, with n >= at_least."""
    t = df["test_time_second"].to_list()
    assert len(t) >= at_least, f"lost acknowledged rows: read {len(t)}, acked {at_least}"
    assert t == [float(i) for i in range(len(t))], "duplicated, missing or reordered rows"


# (seed, seal interval s, seal() every k batches): a tiny interval or explicit seals put many
# kills in the middle of a seal (journal rotated, segment being written, journal being deleted).
TRIALS = [(seed, 300.0, 0) for seed in range(8)]
TRIALS += [(100 + seed, 0.01, 0) for seed in range(8)]
TRIALS += [(200 + seed, 300.0, 3) for seed in range(8)]


@pytest.mark.parametrize(("seed", "seal_interval", "seal_every"), TRIALS)
def test_kill9_loses_no_acknowledged_row(tmp_path, seed, seal_interval, seal_every):
    rng = random.Random(seed)
    rows = rng.choice([1, 7, 64, 500])
    proc = start_writer(
        tmp_path, "--rows", str(rows), "--seal-interval", str(seal_interval),
        "--seal-every", str(seal_every),
    )  # fmt: skip
    lines: list[str] = []
    assert proc.stdout is not None
    lines.append(proc.stdout.readline())
    assert lines[0].strip() == "ready", proc.stderr.read() if proc.stderr else ""
    time.sleep(rng.uniform(0.0, 0.4))
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    lines += out.splitlines()
    acked = acked_rows(lines)
    run = tmp_path / "r"

    check_files(run)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    reader = open_run(run)
    assert reader.meta.status == "running"
    assert_prefix(reader.read("samples"), acked)
    n_before = reader.tables()["samples"]
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before, "reader modified files"

    # Recover, append again, close.
    w = reopen_run(run)
    for k in range(3):
        w.append("samples", batch(n_before + 5 * k, 5))
    w.close()
    reader = open_run(run)
    assert reader.meta.status == "completed"
    df = reader.read("samples")
    assert_prefix(df, acked + 15)
    assert df.height == n_before + 15
    events = reader.read("events")
    assert events.filter(pl.col("kind") == "status")["message"].str.contains("interrupted").any()
    _, journals = list_table(run / "samples")
    assert journals == [], "closed run still has journals"


# The 1st and 2nd renames are seals; with seal() after every batch the 8th seal triggers the
# first compaction (8 small segments), whose rename is the 9th.
@pytest.mark.parametrize("k", [1, 2, 9])
@pytest.mark.parametrize("when", ["before", "after"])
def test_kill9_at_each_stage_of_a_seal(tmp_path, k, when):
    proc = start_writer(
        tmp_path, "--rows", "10", "--batches", "30", "--seal-every", "1",
        "--die-at-rename", str(k), "--die-when", when,
    )  # fmt: skip
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err
    acked = acked_rows(out.splitlines())
    # the seal() after batch k died, or for k = 9 the compaction in the 8th seal
    assert acked == 10 * min(k, 8)
    run = tmp_path / "r"
    check_files(run)
    names = os.listdir(run / "samples")
    assert any(n.endswith(".tmp") for n in names) == (when == "before")
    assert_prefix(open_run(run).read("samples"), acked)
    if k == 9 and when == "after":  # merged segment and the 8 it replaced, side by side
        segments, _ = list_table(run / "samples")
        assert [(s.first, s.last) for s in segments][:2] == [(0, 7), (0, 0)]
    w = reopen_run(run)
    w.append("samples", batch(acked, 10))
    w.close()
    assert_prefix(open_run(run).read("samples"), acked + 10)
    assert not any(n.endswith(".tmp") or n.endswith(".cbj") for n in os.listdir(run / "samples"))
    _, redundant, _ = cover(run / "samples", list_table(run / "samples")[0])
    assert not redundant, "segments merged away were left behind"


def test_reader_in_other_process_sees_rows_within_2s_and_never_fails(tmp_path):
    """The writer (a subprocess) appends for about 3 s and seals every 0.1 s; this one polls."""
    proc = start_writer(
        tmp_path, "--rows", "64", "--seal-interval", "0.1", "--batches", "300",
        "--seal-every", "50", "--interval", "0.01",
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    acks: list[tuple[float, int]] = []  # (time the ack was read, rows acked)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("ack "):
                acks.append((time.monotonic(), int(line.split()[2]) + 1))

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    run = tmp_path / "r"
    seen: list[tuple[float, int]] = []
    polls = 0
    reader = open_run(run)  # kept across polls: reads only what was appended since
    while pumper.is_alive() or polls < 3:
        if polls % 5 == 0:  # a fresh reader must open and read whatever the writer is doing
            fresh = open_run(run).read("samples")
            assert_prefix(fresh, seen[-1][1] if seen else 0)
        df = reader.read("samples")
        assert_prefix(df, 0)
        seen.append((time.monotonic(), df.height))
        polls += 1
        time.sleep(0.01)
        if polls > 5000:
            pytest.fail("writer did not finish")
    proc.wait(timeout=30)
    assert proc.returncode == 0
    assert polls > 20
    heights = [h for _, h in seen]
    assert heights == sorted(heights), "a reader saw rows disappear"
    assert heights[-1] == 300 * 64
    for t_ack, n in acks[:: max(1, len(acks) // 50)]:
        t_seen = next(t for t, h in seen if h >= n)
        assert t_seen - t_ack < 2.0, f"row {n} became visible {t_seen - t_ack:.2f} s after its ack"


def test_second_writer_is_refused_while_first_is_alive(tmp_path):
    proc = start_writer(tmp_path, "--rows", "8", "--batches", "1000000")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    try:
        from cellbench.daq.store import StoreError

        with pytest.raises(StoreError, match="another process is writing"):
            reopen_run(tmp_path / "r")
        assert open_run(tmp_path / "r").writer_active()
    finally:
        proc.kill()
        proc.wait()
    assert not open_run(tmp_path / "r").writer_active()
    w = reopen_run(tmp_path / "r")  # the dead writer's lock went with it
    w.close()


def test_exit_without_close_then_reader_and_recovery(tmp_path):
    """os._exit after the last append: everything acknowledged is readable and recoverable."""
    proc = start_writer(tmp_path, "--rows", "10", "--batches", "20", "--exit-without-close")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert_prefix(open_run(tmp_path / "r").read("samples"), 200)
    w = reopen_run(tmp_path / "r")
    assert w.meta.status == "running"
    w.close("stopped")
    r = open_run(tmp_path / "r")
    assert r.meta.status == "stopped"
    assert r.tables()["samples"] == 200
    assert sorted(os.listdir(tmp_path / "r" / "samples")) == [
        "seg-000000000000-000000000019.parquet",
        "sum-000000000000-000000000019.parquet",  # its min/max summary
    ]
