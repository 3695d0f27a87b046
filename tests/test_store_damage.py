"""Damage costs only itself: a damaged frame, segment or run folder loses that piece, is reported,
and is kept for inspection; repair and sealing never delete bytes that hold valid frames."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellbench.cli.main import main
from cellbench.core.schema import RunMeta
from cellbench.daq import journal
from cellbench.daq.run_files import list_table
from cellbench.daq.store import StoreError, create_run, list_runs, open_run, reopen_run


def samples(first: int, n: int) -> pl.DataFrame:
    t = np.arange(first, first + n, dtype=np.float64)
    return pl.DataFrame(
        {
            "channel": "ch01",
            "test_time_second": t,
            "unix_time_second": 1.7e9 + t,
            "voltage_volt": 3.7,
            "current_ampere": 0.001,
            "cycle_count": 1,
            "step_count": 1,
            "step_index": 0,
        }
    )


def crashed(tmp_path: Path, name: str = "r", batches: int = 8) -> Path:
    """A run left as a crashed writer leaves it: journals with reserved zeros, status running.

    (Closing the writer's descriptors without close(): same bytes on disk as after kill -9.)
    """
    w = create_run(tmp_path, RunMeta(name, "2026-01-01T00:00:00Z"), seal_interval_s=3600)
    for b in range(batches):
        w.append("samples", samples(b * 10, 10))
    w._stop.set()
    w._seal_wanted.set()
    for thread in w._threads:
        thread.join()
    for st in w._tables.values():
        os.close(st.journal.fd)
    os.close(w._lock_fd)
    return w.path


def journal_of(run: Path) -> Path:
    (jr,) = list_table(run / "samples")[1]
    return jr.path


def damage_frame(path: Path, k: int, how: str = "flip") -> journal.Frame:
    data = bytearray(path.read_bytes())
    frame = journal.scan_bytes(bytes(data)).frames[k]
    if how == "flip":
        data[frame.offset + journal.HEADER_SIZE + 7] ^= 0x40
    else:  # 4 KiB of zeros from the frame's start (a failing disk block)
        data[frame.offset : frame.offset + 4096] = bytes(4096)
    path.write_bytes(bytes(data))
    return frame


def times(run: Path) -> list[float]:
    return open_run(run).read("samples")["test_time_second"].to_list()


@pytest.mark.parametrize("how", ["flip", "zeros"])
def test_damaged_frame_costs_only_its_rows_for_readers_repair_and_seal(tmp_path, how):
    run = crashed(tmp_path, batches=40)  # 40 frames of ~2 KB: 4 KiB of zeros spans 2-3 frames
    jr = journal_of(run)
    frames = journal.scan_file(jr).frames
    damage_frame(jr, 5, how)
    scan = journal.scan_file(jr)
    lost = {f.seq for f in frames} - {f.seq for f in scan.frames}
    assert 5 in lost and len(lost) <= 3 and max(lost) < 39  # later frames read again
    expect = [float(t) for t in range(400) if t // 10 not in lost]
    assert times(run) == expect

    damage = open_run(run).damage()
    assert [(d.table, d.first_seq, d.last_seq) for d in damage] == [
        ("samples", min(lost), max(lost))
    ]
    size = jr.stat().st_size
    w = reopen_run(run)
    assert jr.stat().st_size == size, "repair cut bytes of a journal holding valid frames"
    w.append("samples", samples(400, 10))
    w.close()
    assert times(run) == [*expect, *np.arange(400.0, 410.0)]
    kept = run / "damaged" / "samples" / jr.name
    assert kept.is_file() and not jr.exists()  # sealed; the damaged bytes kept aside
    events = open_run(run).read("events")
    fault = events.filter(pl.col("kind") == "fault").row(0, named=True)
    assert fault["severity"] == "error" and str(kept) in fault["message"]
    assert json.loads(fault["data"])["lost_batches"] == sorted(lost)
    # still reported after sealing: from the kept copy
    (loss,) = open_run(run).damage()
    assert (loss.first_seq, loss.last_seq, loss.file) == (min(lost), max(lost), kept)


def test_sealing_a_damaged_journal_keeps_its_valid_frames_and_the_bytes(tmp_path):
    w = create_run(tmp_path, RunMeta("r", "2026-01-01T00:00:00Z"), seal_interval_s=3600)
    for b in range(6):
        w.append("samples", samples(b * 10, 10))
    jr = journal_of(w.path)
    with open(jr, "r+b") as fh:  # the disk returns a flipped bit in batch 2
        frame = journal.scan_bytes(fh.read()).frames[2]
        fh.seek(frame.offset + journal.HEADER_SIZE + 3)
        byte = fh.read(1)
        fh.seek(frame.offset + journal.HEADER_SIZE + 3)
        fh.write(bytes([byte[0] ^ 1]))
    w.append("samples", samples(60, 10))
    w.close()
    assert times(w.path) == [float(t) for t in range(70) if not 20 <= t < 30]
    assert (w.path / "damaged" / "samples" / jr.name).is_file()
    meta = json.loads((w.path / "run.json").read_text())
    assert meta["extra"]["damaged"][0]["lost_batches"] == [2]


def test_damaged_tail_of_an_older_journal_does_not_hide_later_journals(tmp_path):
    w = create_run(tmp_path, RunMeta("r", "2026-01-01T00:00:00Z"), seal_interval_s=3600)
    for b in range(3):
        w.append("samples", samples(b * 10, 10))
    first = journal_of(w.path)
    with w._lock:  # rotate without sealing: a second journal, the first waiting to be sealed
        st = w._tables["samples"]
        old = w._rotate(st, reopen=True)
    w._retire(st, None)
    old.close()
    w.append("samples", samples(30, 10))
    data = bytearray(first.read_bytes())
    last = journal.scan_bytes(bytes(data)).frames[-1]
    data[last.offset + journal.HEADER_SIZE + 5] ^= 0xFF  # batch 2, the first journal's last
    first.write_bytes(bytes(data))
    assert times(w.path) == [float(t) for t in range(40) if not 20 <= t < 30]
    st.to_seal.append(first)
    w.close()
    assert times(w.path) == [float(t) for t in range(40) if not 20 <= t < 30]
    (loss,) = open_run(w.path).damage()
    assert loss.first_seq == 2 and loss.last_seq == 2


def test_runs_list_shows_a_damaged_run_and_lists_the_rest(tmp_path, capsys):
    for name in ("a", "b", "c"):
        with create_run(tmp_path, RunMeta(name, f"2026-01-0{ord(name) - 96}T00:00:00Z")) as w:
            w.append("samples", samples(0, 50))
    (seg,) = list_table(tmp_path / "b" / "samples")[0]
    seg.path.write_bytes(seg.path.read_bytes()[:-100])  # a truncated Parquet segment
    with pytest.raises(StoreError, match=str(seg.path)):
        open_run(tmp_path / "b").read("samples")
    with pytest.raises(StoreError, match=str(seg.path)):
        open_run(tmp_path / "b").scan("samples")
    runs = list_runs(tmp_path)
    assert [r.meta.run_id for r in runs] == ["a", "b", "c"]
    assert runs[0].rows["samples"] == 50 and runs[2].rows["samples"] == 50
    assert str(seg.path) in (runs[1].problem or "")
    assert main(["runs", "list", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    line = next(ln for ln in out.splitlines() if ln.startswith("b "))
    assert "damaged" in line
    assert str(seg.path) in err


def test_missing_samples_folder_is_said_not_counted_as_zero(tmp_path, capsys):
    with create_run(tmp_path, RunMeta("r", "2026-01-01T00:00:00Z")) as w:
        w.append("samples", samples(0, 5))
    for p in (w.path / "samples").iterdir():
        p.unlink()
    (w.path / "samples").rmdir()
    with pytest.raises(StoreError, match="samples: folder is missing"):
        open_run(w.path).read("samples")
    (info,) = list_runs(tmp_path)
    assert "folder is missing" in (info.problem or "")


def test_runs_show_warns_how_much_is_unreadable_and_where(tmp_path, capsys):
    run = crashed(tmp_path)
    jr = journal_of(run)
    damage_frame(jr, 3)
    assert main(["runs", "show", str(run)]) == 0
    out, err = capsys.readouterr()
    assert "unreadable" in out and str(jr) in out and "batch 3 " in out
    assert "1 batch(es) unreadable (about 10 rows" in err


def test_rotation_does_not_stall_appends_while_it_fsyncs(tmp_path, monkeypatch):
    w = create_run(tmp_path, RunMeta("r", "2026-01-01T00:00:00Z"), seal_interval_s=3600)
    w.append("samples", samples(0, 10))
    real = os.fsync
    slow = threading.Event()

    def fsync(fd):
        if slow.is_set():
            time.sleep(0.4)
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    worst = []

    def appender():
        for b in range(1, 30):
            t = time.monotonic()
            w.append("samples", samples(b * 10, 10))
            worst.append(time.monotonic() - t)
            time.sleep(0.01)

    slow.set()
    thread = threading.Thread(target=appender)
    thread.start()
    time.sleep(0.02)
    w.seal()  # rotation (fsync of the old journal), seal (fsync of the segment) ...
    thread.join()
    slow.clear()
    w.close()
    assert max(worst) < 0.3, f"an append waited {max(worst):.2f} s for a rotation's fsync"
    assert times(w.path) == list(np.arange(300.0))
