"""Run store: round trip, data model, fsync cadence, sealing, compaction, recovery by hand."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellbench.core import schema
from cellbench.core.errors import SchemaError
from cellbench.core.schema import Cell, RunMeta
from cellbench.daq import journal, seal, store
from cellbench.daq.run_files import list_table
from cellbench.daq.store import (
    RunReader,
    RunWriter,
    StoreError,
    create_run,
    list_runs,
    open_run,
    reopen_run,
)

WRITER = Path(__file__).with_name("store_writer.py")


def meta(run_id: str = "run-1") -> RunMeta:
    cell = Cell(name="LLZO-7", chemistry="Li|LLZO|Li", area_cm2=0.785, thickness_cm=0.05)
    return RunMeta(run_id=run_id, start_time="2026-01-01T00:00:00Z", cell=cell)


def samples(first: int, n: int, channel: str = "ch01") -> pl.DataFrame:
    idx = np.arange(first, first + n, dtype=np.float64)
    return pl.DataFrame(
        {
            "channel": [channel] * n,
            "test_time_second": idx,
            "unix_time_second": 1.7e9 + idx,
            "voltage_volt": 3.0 + 1e-6 * idx,
            "current_ampere": np.full(n, -0.002),
            "cycle_count": np.full(n, 2, dtype=np.int64),  # int64 in, Int32 stored
            "step_count": 1,
            "step_index": 0,
            "temperature_celsius": 25.0,
        }
    )


def spectrum(sweep: int) -> pl.DataFrame:
    f = np.logspace(6, -1, 15)
    return pl.DataFrame(
        {
            "channel": "ch01",
            "sweep_index": sweep,
            "test_time_second": np.arange(15.0),
            "unix_time_second": 1.7e9 + np.arange(15.0),
            "frequency_hertz": f,
            "z_real_ohm": 100 + 50 / (1 + f),
            "z_imag_ohm": -10 / (1 + f),
        }
    )


def test_roundtrip_keeps_rows_order_and_dtypes(tmp_path):
    with create_run(tmp_path, meta()) as w:
        assert isinstance(w, RunWriter)
        assert w.path == tmp_path / "run-1"
        w.append("samples", samples(0, 100))
        w.append("samples", samples(100, 50).drop("temperature_celsius").with_columns(extra=1))
        w.append("spectra", spectrum(0))
        w.append("samples", samples(150, 0))  # empty batches are ignored
        w.event("step_start", "CC charge", step_index=1, cycle_count=2, data={"c_rate": 0.1})
        w.update_meta(ground_truth={"r_ohm": 100.0}, cell=Cell(name="x", area_cm2=1.0))
        live = open_run(w.path)
        assert live.meta.status == "running"
        assert live.tables() == {"samples": 150, "spectra": 15, "events": 1}
    r = open_run(tmp_path / "run-1")
    assert isinstance(r, RunReader)
    assert r.meta.status == "completed" and r.meta.end_time
    assert r.meta.ground_truth == {"r_ohm": 100.0} and r.meta.cell.area_cm2 == 1.0
    df = r.read("samples")
    assert df["test_time_second"].to_list() == list(np.arange(150.0))
    model = schema.schema("samples")
    assert df.columns[: len(model)] == list(model) and df.columns[len(model) :] == ["extra"]
    for name, dtype in model.items():
        assert df.schema[name] == dtype, name
    assert df["temperature_celsius"].null_count() == 50  # absent in the 2nd batch
    assert df["cycle_count"].unique().to_list() == [2]
    assert df.equals(r.scan("samples").collect())
    lazy = r.scan("samples")
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.filter(pl.col("test_time_second") >= 140).collect().height == 10
    ev = r.read("events").row(0, named=True)
    assert ev["kind"] == "step_start" and ev["step_index"] == 1
    assert json.loads(ev["data"]) == {"c_rate": 0.1}
    assert r.read("spectra")["z_imag_ohm"].max() < 0
    on_disk = sorted(os.listdir(tmp_path / "run-1" / "samples"))
    assert on_disk == [  # sealed on close, with its min/max summary (daq/summaries.py)
        "seg-000000000000-000000000001.parquet",
        "sum-000000000000-000000000001.parquet",
    ]


def test_empty_table_reads_as_typed_empty_frame(tmp_path):
    create_run(tmp_path, meta()).close()
    r = open_run(tmp_path / "run-1")
    empty = r.read("spectra")
    assert empty.height == 0 and empty.schema == schema.schema("spectra")
    assert r.scan("events").collect().schema == schema.schema("events")
    with pytest.raises(SchemaError, match="unknown table"):
        r.read("sample")


def test_bad_batches_raise_one_error_listing_every_problem(tmp_path):
    with create_run(tmp_path, meta()) as w:
        bad = (
            samples(0, 3)
            .drop("voltage_volt", "channel")
            .with_columns(current_ampere=pl.Series([1.0, None, 2.0]))
        )
        with pytest.raises(SchemaError) as info:
            w.append("samples", bad)
        text = str(info.value)
        assert "voltage_volt" in text and "channel" in text and "current_ampere" in text
        with pytest.raises(SchemaError, match="kind"):
            w.event("explosion", "nope")
        with pytest.raises(SchemaError, match="'status' cannot be changed"):
            w.update_meta(status="completed")
        with pytest.raises(SchemaError, match=r"cell\.area_cm2"):
            w.update_meta(cell={"area_cm2": "big"})
        assert w.meta.cell.area_cm2 == 0.785  # unchanged after the refused update
    assert open_run(tmp_path / "run-1").tables()["samples"] == 0


def test_context_manager_marks_aborted_on_exception_and_writer_refuses_after_close(tmp_path):
    with pytest.raises(RuntimeError), create_run(tmp_path, meta()) as w:
        w.append("samples", samples(0, 5))
        raise RuntimeError("instrument fell over")
    assert open_run(w.path).meta.status == "aborted"
    assert open_run(w.path).tables()["samples"] == 5
    with pytest.raises(StoreError, match="closed"):
        w.append("samples", samples(5, 5))


def test_create_refuses_existing_folder_and_bad_names(tmp_path):
    create_run(tmp_path, meta(), run_dir_name="a").close()
    with pytest.raises(StoreError, match="already exists"):
        create_run(tmp_path, meta(), run_dir_name="a")
    with pytest.raises(StoreError, match="invalid run folder name"):
        create_run(tmp_path, meta(), run_dir_name="../b")
    with pytest.raises(SchemaError, match="area_cm2"):
        create_run(tmp_path, RunMeta("c", "2026-01-01T00:00:00Z", cell=Cell(area_cm2=-1.0)))
    assert not (tmp_path / "c").exists()
    with pytest.raises(StoreError, match="not a cellbench run folder"):
        open_run(tmp_path)


def test_concurrent_appends_from_threads_all_land(tmp_path):
    w = create_run(tmp_path, meta(), seal_interval_s=0.05, fsync_interval_s=0.01)

    def work(k: int) -> None:
        for b in range(40):
            w.append("samples", samples(k * 10_000 + b * 10, 10, channel=f"ch{k}"))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    df = open_run(w.path).read("samples")
    assert df.height == 1600 and df["test_time_second"].n_unique() == 1600
    for k in range(4):  # each thread's rows stay in its order
        t = df.filter(pl.col("channel") == f"ch{k}")["test_time_second"]
        assert t.is_sorted()


class FsyncLog:
    """Wraps os.fsync; records (monotonic time, file name) of every fsync on a journal."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[float, str]] = []
        real = os.fsync

        def fsync(fd: int) -> None:
            real(fd)
            name = os.readlink(f"/proc/self/fd/{fd}")
            if name.endswith(".cbj"):
                self.calls.append((time.monotonic(), name))

        monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name descriptors")
def test_fsync_at_least_once_a_second_by_default_also_when_appends_stop(tmp_path, monkeypatch):
    log = FsyncLog(monkeypatch)
    w = create_run(tmp_path, meta())
    assert w.fsync_interval_s == 1.0
    try:
        appended = append_at_10hz(w, 2.6)
        last_append = appended[-1]
        time.sleep(1.3)  # appends stopped: the last ones must still be fsynced within 1 s
        calls = [t for t, name in log.calls if "samples" in name]
        assert calls, "journal never fsynced"
        # every appended batch is covered by an fsync no later than ~1 s after its append
        for t_app in appended:
            t_sync = next((t for t in calls if t >= t_app), None)
            assert t_sync is not None, f"batch appended at {t_app} never fsynced"
            assert t_sync - t_app <= 1.0 + 0.3, f"fsync came {t_sync - t_app:.2f} s after append"
        assert calls[-1] >= last_append
    finally:
        w.close()


def append_at_10hz(w: RunWriter, seconds: float) -> list[float]:
    """Append 64-row batches at 10 Hz for ``seconds``; the monotonic time of each append."""
    appended = []
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        w.append("samples", samples(len(appended) * 64, 64))
        appended.append(time.monotonic())
        time.sleep(0.1)
    return appended


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name descriptors")
def test_fsync_cadence_holds_while_a_slow_seal_runs(tmp_path, monkeypatch):
    log = FsyncLog(monkeypatch)
    real_seal = store._seal_journal
    slowed = []

    def slow_seal(path, rows):  # the first seal takes 2 s (a big journal on a slow disk)
        if not slowed:
            slowed.append(path)
            time.sleep(2.0)
        real_seal(path, rows)

    monkeypatch.setattr(store, "_seal_journal", slow_seal)
    w = create_run(tmp_path, meta(), seal_interval_s=0.3)
    try:
        appended = append_at_10hz(w, 2.5)
        time.sleep(1.3)
        assert slowed, "no seal started"
        calls = [t for t, name in log.calls if "samples" in name]
        for t_app in appended:
            t_sync = next((t for t in calls if t >= t_app), None)
            assert t_sync is not None and t_sync - t_app <= 1.3, "fsync stalled behind a seal"
    finally:
        w.close()
    assert open_run(w.path).read("samples").height == 64 * len(appended)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name descriptors")
def test_flush_fsyncs_now(tmp_path, monkeypatch):
    log = FsyncLog(monkeypatch)
    with create_run(tmp_path, meta(), fsync_interval_s=3600) as w:
        w.append("samples", samples(0, 3))
        n = len(log.calls)
        w.flush()
        assert len(log.calls) == n + 1 and "samples" in log.calls[-1][1]
        w.flush()  # nothing new: no needless fsync
        assert len(log.calls) == n + 1


def test_seal_interval_turns_journal_into_segment_while_running(tmp_path):
    w = create_run(tmp_path, meta(), seal_interval_s=0.2, fsync_interval_s=0.05)
    try:
        w.append("samples", samples(0, 10))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            segments, _ = list_table(w.path / "samples")
            if segments:
                break
            time.sleep(0.02)
        assert [s.path.name for s in segments] == ["seg-000000000000-000000000000.parquet"]
        w.append("samples", samples(10, 10))
        assert open_run(w.path).read("samples").height == 20
    finally:
        w.close()


def test_compaction_merges_small_segments_and_reader_counts_each_row_once(tmp_path, monkeypatch):
    monkeypatch.setattr(seal, "COMPACT_FANIN", 4)
    w = create_run(tmp_path, meta(), seal_interval_s=3600)
    for b in range(10):
        w.append("samples", samples(b * 5, 5))
        w.seal()
        assert open_run(w.path).read("samples")["test_time_second"].to_list() == list(
            np.arange((b + 1) * 5.0)
        )
    segments, _ = list_table(w.path / "samples")
    assert len(segments) < 10
    lazy = open_run(w.path).scan("samples")  # built before the next seal deletes merged files
    w.seal()
    assert lazy.collect().height == 50
    w.close()
    segments, journals = list_table(w.path / "samples")
    assert not journals
    assert [(s.first, s.last) for s in segments] == [(0, 9)]  # merged ones merge again
    assert open_run(w.path).read("samples").height == 50


def test_larger_run_loads_back_exactly(tmp_path):
    """The 10 M-row load, at 1 M rows (speed is measured in bench/store.py)."""
    n, per = 1_000_000, 125_000
    with create_run(tmp_path, meta()) as w:
        for b in range(n // per):
            w.append("samples", samples(b * per, per, channel=f"ch{b % 8:02d}"))
    r = open_run(w.path)
    assert r.tables()["samples"] == n
    df = r.read("samples")
    assert df.height == n
    assert df["test_time_second"].sum() == pytest.approx(n * (n - 1) / 2)
    assert df["test_time_second"].is_sorted()
    assert df.schema["cycle_count"] == pl.Int32
    seg = next((w.path / "samples").glob("seg-*.parquet"))
    assert seg.stat().st_size < 20 * 2**20  # compressed columnar
    agg = r.scan("samples").group_by("channel").agg(pl.len()).collect()
    assert sorted(agg["len"].to_list()) == [per] * 8


# ---------------------------------------------------------------------------------- recovery


def crashed_run(tmp_path: Path, batches: int = 6) -> Path:
    """A run whose writer process died without closing (os._exit after its last append)."""
    proc = subprocess.run(
        [sys.executable, str(WRITER), str(tmp_path), "--rows", "10", "--batches", str(batches),
         "--exit-without-close"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "r"


def snapshot_files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_torn_tail_and_temp_files_are_read_around_then_repaired(tmp_path):
    run = crashed_run(tmp_path)
    (jr,) = list_table(run / "samples")[1]
    good = journal.scan_file(jr.path).good_end
    assert jr.path.stat().st_size > good  # zeros reserved ahead of the frames
    frame = journal.encode(6, samples(60, 10))
    with open(jr.path, "r+b") as fh:  # a frame cut short: the crash hit mid-write
        fh.seek(good)
        fh.write(frame[: len(frame) // 2])
    stray = [
        run / "run.json.4242.tmp",
        run / "samples" / "seg-000000000000-000000000005.parquet.4242.tmp",
    ]
    for p in stray:
        p.write_bytes(b"half written")

    before = snapshot_files(run)
    r = open_run(run)
    assert r.meta.status == "running"
    assert r.read("samples")["test_time_second"].to_list() == list(np.arange(60.0))
    assert r.tables()["samples"] == 60
    assert snapshot_files(run) == before, "open_run modified the run"

    w = reopen_run(run)
    assert jr.path.stat().st_size == good, "torn tail not truncated"
    assert not any(p.exists() for p in stray)
    assert w.meta.status == "running"
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    w.append("samples", samples(60, 10))
    w.close()
    r = open_run(run)
    assert r.meta.status == "completed"
    assert r.read("samples")["test_time_second"].to_list() == list(np.arange(70.0))
    ev = r.read("events").filter(pl.col("kind") == "status").row(0, named=True)
    assert ev["severity"] == "warning" and "interrupted" in ev["message"]
    detail = json.loads(ev["data"])
    (cut,) = detail["truncated"].items()  # bytes of the torn frame (its trailing zeros aside)
    assert cut[0] == f"samples/{jr.path.name}" and len(frame) // 2 - 64 < cut[1] <= len(frame) // 2
    assert sorted(detail["removed"]) == sorted(str(p.relative_to(run)) for p in stray)


def test_corrupt_frame_costs_only_its_rows_and_repair_keeps_later_frames(tmp_path):
    run = crashed_run(tmp_path)
    (jr,) = list_table(run / "samples")[1]
    data = bytearray(jr.path.read_bytes())
    scan = journal.scan_bytes(bytes(data))
    data[scan.frames[4].offset + journal.HEADER_SIZE + 10] ^= 0xFF  # flip a bit in frame 4
    jr.path.write_bytes(bytes(data))
    (damage,) = journal.scan_file(jr.path).damaged
    assert "CRC mismatch" in damage.reason
    expect = [t for t in np.arange(60.0) if not 40 <= t < 50]
    assert open_run(run).read("samples")["test_time_second"].to_list() == expect
    w = reopen_run(run)
    w.append("samples", samples(60, 10))
    w.close()
    assert open_run(run).read("samples")["test_time_second"].to_list() == [
        *expect,
        *np.arange(60.0, 70.0),
    ]
    kept = (run / "damaged" / "samples" / jr.path.name).read_bytes()
    assert kept == bytes(data)[: journal.scan_bytes(bytes(data)).good_end]


def test_crash_between_segment_rename_and_journal_delete_counts_rows_once(tmp_path):
    run = crashed_run(tmp_path)
    (jr,) = list_table(run / "samples")[1]
    saved = jr.path.read_bytes()
    w = reopen_run(run)
    w.close()
    jr.path.write_bytes(saved)  # the journal the seal had not yet deleted
    meta_path = run / "run.json"
    meta_path.write_text(meta_path.read_text().replace('"completed"', '"running"'))
    assert open_run(run).read("samples").height == 60
    w = reopen_run(run)
    assert not jr.path.exists()
    w.close()
    r = open_run(run)
    assert r.read("samples").height == 60
    messages = r.read("events")["message"].to_list()
    assert sum("interrupted" in m for m in messages) == 2


def test_missing_segment_is_reported_not_hidden(tmp_path):
    run = crashed_run(tmp_path)
    reopen_run(run).close()
    w = reopen_run(run)
    w.append("samples", samples(60, 10))
    w.close()
    segments, _ = list_table(run / "samples")
    assert len(segments) == 2
    segments[0].path.unlink()
    with pytest.raises(StoreError, match=r"batches 0\.\.5 are missing"):
        open_run(run).read("samples")


def test_reopen_completed_run_appends_and_keeps_status_history(tmp_path):
    with create_run(tmp_path, meta()) as w:
        w.append("samples", samples(0, 5))
    w = reopen_run(w.path)
    w.append("samples", samples(5, 5))
    w.close("stopped")
    r = open_run(w.path)
    assert r.meta.status == "stopped"
    assert r.read("samples").height == 10
    assert "reopened" in r.read("events")["message"][0]


def test_list_runs_sorted_with_counts_and_lists_broken_as_damaged(tmp_path, caplog):
    for i, start in enumerate(["2026-03-01T00:00:00Z", "2026-01-01T00:00:00Z"]):
        with create_run(tmp_path, RunMeta(run_id=f"r{i}", start_time=start)) as w:
            w.append("samples", samples(0, 3 + i))
    live = create_run(tmp_path, RunMeta(run_id="live", start_time="2026-05-01T00:00:00Z"))
    (tmp_path / "not-a-run").mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{nope")
    try:
        runs = list_runs(tmp_path)
    finally:
        live.close()
    assert [r.meta.run_id for r in runs] == ["broken", "r1", "r0", "live"]
    assert runs[1].rows == {"samples": 4, "spectra": 0, "events": 0}
    assert runs[3].writer_active and not runs[1].writer_active
    assert "broken/run.json: line 1" in (runs[0].problem or "")
    assert all(r.problem is None for r in runs[1:])
    assert "broken" in caplog.text
    with pytest.raises(StoreError, match="no such folder"):
        list_runs(tmp_path / "nope")


def test_reader_works_on_a_copy_without_write_permission(tmp_path):
    run = crashed_run(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    for p in [copy, *copy.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        assert open_run(copy).read("samples").height == 60
    finally:
        for p in [copy, *copy.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


def test_failed_write_keeps_nothing_of_the_batch_and_the_next_append_works(tmp_path, monkeypatch):
    w = create_run(tmp_path, meta())
    w.append("samples", samples(0, 10))
    real = os.pwritev

    def disk_full(fd, buffers, offset):  # half a header reaches the file, then the disk is full
        os.pwrite(fd, bytes(buffers[0])[:10], offset)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwritev", disk_full)
    with pytest.raises(StoreError, match="No space left"):
        w.append("samples", samples(10, 10))
    monkeypatch.setattr(os, "pwritev", real)
    w.append("samples", samples(20, 10))
    t = open_run(w.path).read("samples")["test_time_second"].to_list()
    assert t == list(np.arange(10.0)) + list(np.arange(20.0, 30.0))
    w.close()
    assert open_run(w.path).tables()["samples"] == 20


def test_failed_fsync_stops_the_writer_instead_of_pretending(tmp_path, monkeypatch):
    w = create_run(tmp_path, meta(), fsync_interval_s=3600)
    w.append("samples", samples(0, 10))

    def eio(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", eio)
    with pytest.raises(StoreError, match="fsync failed"):
        w.flush()
    with pytest.raises(StoreError, match="cannot be trusted"):
        w.append("samples", samples(10, 10))
    monkeypatch.undo()
    with pytest.raises(StoreError, match="fsync failed"):
        w.close()
    w = reopen_run(w.path)  # the rows written before the failure are still there to recover
    assert open_run(w.path).tables()["samples"] == 10
    w.close()
