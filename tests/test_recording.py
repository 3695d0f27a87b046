"""The engine's path to the store loses nothing: an alarm is on stable storage (with the rows
before it) before the run goes on, and a failed append keeps its rows, retries them, and stops
the run safely, saying how many rows were not written, if the disk stays full."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import polars as pl
import pytest

from cellbench.core.schema import RunMeta
from cellbench.daq.live import LiveBus
from cellbench.daq.recorder import Recorder, RecorderError
from cellbench.daq.session import prepare
from cellbench.daq.store import StoreError, create_run, open_run

FX = Path(__file__).resolve().parents[1] / "fixtures"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def row(k: int) -> tuple:
    return ("ch1", float(k), 1.7e9 + k, 3.7, 0.001, 1, 1, 0, None, None, 0, 0, 0, 0, 0, None)


def writer(tmp_path: Path):
    # fsync and seal intervals far away: only what the recorder asks for is fsynced
    return create_run(
        tmp_path, RunMeta("r", "2026-01-01T00:00:00Z"), fsync_interval_s=3600, seal_interval_s=3600
    )


def test_an_alarm_is_fsynced_with_the_rows_before_it(tmp_path, monkeypatch):
    w = writer(tmp_path)
    rec = Recorder(w, LiveBus(), batch_interval_s=3600)  # its thread not started: no batching
    for k in range(25):
        rec.add_sample(row(k))
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    rec.event("alarm", "run aborted: voltage above limit", severity="alarm", test_time_second=24.0)
    for table in ("samples", "events"):
        jf = w._tables[table].journal
        assert jf.size > 0 and not jf.dirty, f"{table} not on stable storage after the alarm"
    assert open_run(w.path).read("samples").height == 25  # appended before the alarm returned
    rec.event("step_start", "an ordinary event", test_time_second=25.0)
    assert w._tables["events"].journal.dirty  # ordinary events wait for the periodic fsync
    w.close()


def test_a_failed_append_keeps_the_rows_and_retries_them_in_order(tmp_path, monkeypatch):
    w = writer(tmp_path)
    rec = Recorder(w, LiveBus(), batch_interval_s=3600)
    real = w.append
    fails = {"n": 3}

    def append(table, df):
        if table == "samples" and fails["n"] > 0:
            fails["n"] -= 1
            raise StoreError(f"{w.path}: cannot append: No space left on device")
        return real(table, df)

    monkeypatch.setattr(w, "append", append)
    for k in range(10):
        rec.add_sample(row(k))
        if k % 3 == 2:
            works = fails["n"] == 0
            assert rec.try_flush() is works
    assert rec.try_flush() and rec.error is None
    w.close()
    t = open_run(w.path).read("samples")["test_time_second"].to_list()
    assert t == [float(k) for k in range(10)], "rows lost, repeated or reordered"


def test_a_disk_that_stays_full_gives_an_error_counting_the_rows(tmp_path, monkeypatch):
    w = writer(tmp_path)
    rec = Recorder(w, LiveBus(), batch_interval_s=3600, give_up_s=0.2)

    def append(table, df):
        raise StoreError(f"{w.path}: cannot append: No space left on device")

    monkeypatch.setattr(w, "append", append)
    for k in range(7):
        rec.add_sample(row(k))
    assert not rec.try_flush() and rec.error is None  # not yet: retried at the next batch
    time.sleep(0.3)
    assert not rec.try_flush()
    assert isinstance(rec.error, RecorderError)
    assert "7 rows could not be written" in str(rec.error) and "No space left" in str(rec.error)
    assert rec.unwritten == 7
    monkeypatch.undo()
    w.close()


def test_engine_stops_safely_when_samples_cannot_be_written(tmp_path):
    protocol = tmp_path / "p.toml"
    protocol.write_text(
        """
name = "disk full"
sample_interval = "10 s"
[safety]
voltage_min = "2.5 V"
voltage_max = "4.4 V"
[[step]]
type = "cc"
current = "0.2 mA"
until = { time = "10 h" }
""",
        encoding="utf-8",
    )
    session = prepare(protocol, FX / "stations" / "demo_station.toml", tmp_path, time_scale=100)
    engine = session.engine
    try:
        engine.start()
        writer = engine._writer
        real = writer.append
        engine.recorder.give_up_s = 0.5

        def append(table, df):
            if table == "samples":
                raise StoreError(f"{writer.path}: cannot append: No space left on device")
            return real(table, df)

        writer.append = append
        status = engine.wait(timeout=20)
        sim = session.bench.simulators["smu1"]
        off = not sim.output
    finally:
        if engine.status == "running":
            engine.request_stop("test over")
            engine.wait()
        session.close()
    assert status == "aborted" and off
    ev = open_run(engine.run_path).read("events")
    fault = ev.filter(pl.col("kind") == "fault").row(0, named=True)
    assert "rows could not be written" in fault["message"]
    end = json.loads(ev.filter(pl.col("kind") == "run_end")["data"][0])
    assert end["rows_not_written"] > 0
