"""Per-segment min/max summaries: written on seal, right, crash-safe; the attach seeds from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellbench.core.schema import RunMeta
from cellbench.daq.store import create_run, open_run
from cellbench.daq.summaries import (
    BUCKET_ROWS,
    SUMMARY_GLOB,
    SUMMARY_VALUES,
    load_summary,
    summarize,
    summary_for,
    summary_path,
)
from cellbench.gui.cycles import CycleTracker
from cellbench.gui.history import VALUE_COLUMNS
from cellbench.gui.model import LiveModel
from cellbench.gui.poller import RunPoller

SPIKES = {  # one-sample spikes deep in the summarised part: (channel row, column, value)
    "voltage_volt": (17_001, 9.5),
    "current_ampere": (60_123, -5e-3),
    "temperature_celsius": (101_777, 70.0),
    "pressure_megapascal": (140_010, 40.0),
}


def rows(start: int, n: int, channels: tuple[str, ...] = ("c1",)) -> pl.DataFrame:
    """``n`` ticks from tick ``start`` for each channel (1 s apart), 2 h cycles, spikes."""
    tick = np.repeat(np.arange(start, start + n), len(channels))
    ch = np.tile(np.arange(len(channels)), n)
    t = tick.astype(float)
    phase = (t % 7200) / 7200
    data = {
        "voltage_volt": 3.6 + 0.4 * np.abs(phase - 0.5),
        "current_ampere": np.where(phase < 0.5, 1e-3, -1e-3),
        "temperature_celsius": 25.0 + 0.01 * np.sin(t / 300),
        "pressure_megapascal": 5.0 + 0.001 * np.cos(t / 300),
    }
    for col, (at, value) in SPIKES.items():
        data[col] = np.where(tick == at, value, data[col])
    return pl.DataFrame(
        {
            "channel": pl.Series([channels[i] for i in ch]),
            "test_time_second": t,
            "unix_time_second": 1.767e9 + t,
            **data,
            "cycle_count": (tick // 7200 + 1).astype(np.int32),
            "step_count": (tick // 3600 + 1).astype(np.int32),
            "step_index": ((tick // 3600) % 2).astype(np.int32),
        }
    )


def write_run(root: Path, ticks: int, *, channels=("c1",), seal_every=40_000, tail=3_000) -> Path:
    """A closed-looking run: ``ticks`` rows per channel sealed in segments, ``tail`` more left
    in the journal (the writer is closed without sealing them: it stays open)."""
    meta = RunMeta(run_id="long", start_time="2026-01-01T00:00:00Z")
    writer = create_run(root, meta, seal_interval_s=1e9)
    for start in range(0, ticks, 10_000):
        writer.append("samples", rows(start, min(10_000, ticks - start), channels))
        if (start + 10_000) % seal_every == 0:
            writer.seal()
    writer.seal()
    writer.append("samples", rows(ticks, tail, channels))
    writer.flush()
    return writer  # type: ignore[return-value]


@pytest.fixture
def long_run(tmp_path):
    writer = write_run(tmp_path, 180_000)
    yield writer
    writer.close()


def test_summaries_written_on_seal_match_the_rows(tmp_path):
    writer = write_run(tmp_path, 50_000, channels=("a", "b"), seal_every=20_000, tail=0)
    writer.close()
    folder = writer.path / "samples"
    segments = sorted(folder.glob("seg-*[0-9].parquet"))
    assert len(segments) >= 3
    for seg in segments:
        data = pl.read_parquet(seg)
        summary = load_summary(seg, data.height)
        assert summary is not None, f"{seg.name}: no summary written on seal"
        assert summary.equals(summarize(data))
        assert int(summary["rows"].sum()) == data.height
        for channel in ("a", "b"):
            mine = data.filter(pl.col("channel") == channel)
            s = summary.filter(pl.col("channel") == channel)
            assert s["rows"].max() <= BUCKET_ROWS
            for col in SUMMARY_VALUES:  # extremes and the times they were measured
                assert s[f"{col}_min"].min() == mine[col].min()
                assert s[f"{col}_max"].max() == mine[col].max()
                at = mine["test_time_second"][mine[col].arg_max()]
                assert at in s[f"{col}_tmax"].to_list()
            first = mine.head(BUCKET_ROWS)
            assert s["voltage_volt_min"][0] == first["voltage_volt"].min()
            assert s["t_last"][0] == first["test_time_second"][-1]


def test_a_missing_damaged_or_stale_summary_is_ignored(long_run):
    reader = open_run(long_run.path)
    (seg, n), *_ = reader.parts("samples")[0]
    right = load_summary(seg, n)
    assert right is not None
    assert load_summary(seg, n + 1) is None  # stale: another segment's
    summary_path(seg).write_bytes(b"PAR1 not really parquet")
    assert load_summary(seg, n) is None
    computed, read = summary_for(seg, n)
    assert read == n and computed.equals(right)  # computed from the rows instead
    summary_path(seg).unlink()
    assert load_summary(seg, n) is None
    again, read = summary_for(seg, n)
    assert read == n and again.equals(right)
    assert not any(p.name.endswith(".tmp") for p in seg.parent.iterdir())  # nothing written


def test_compaction_summarises_the_merged_segment_and_drops_the_old_summaries(tmp_path):
    writer = write_run(tmp_path, 100_000, seal_every=10_000, tail=0)  # 10 seals: a merge
    writer.close()
    folder = writer.path / "samples"
    segments = sorted(folder.glob("seg-*[0-9].parquet"))
    summaries = sorted(folder.glob(SUMMARY_GLOB))
    assert len(segments) < 10  # merged
    assert [summary_path(s) for s in segments] == summaries
    for seg in segments:
        assert load_summary(seg, pl.read_parquet(seg).height) is not None


def test_attach_seeds_the_history_from_summaries_and_reads_only_the_recent_window(long_run):
    poller = RunPoller(long_run.path, recent_rows=20_000)
    messages = poller.poll()
    assert [m.kind for m in messages if m.kind != "status"] == ["summary", "samples"]
    # no more than the recent window (plus the bucket it starts in) read from sealed segments
    assert poller.rows_read <= 20_000 + BUCKET_ROWS
    assert poller.summarized_rows >= 180_000 - 20_000 - BUCKET_ROWS
    assert poller.offsets["samples"] == 183_000 and poller.caught_up
    model = LiveModel(recent_rows=20_000)
    model.feed_all(messages)
    trace = model.channels["c1"].trace
    assert trace.rows_seen == 183_000
    assert trace.span() == (0.0, 182_999.0)
    whole = trace.window(points=4000)
    for col in VALUE_COLUMNS:  # the whole span: the first and the newest row
        assert whole.x[col][0] == 0.0 and whole.x[col][-1] == 182_999.0
    assert model.readout("c1")["test_time_second"] == 182_999.0


@pytest.mark.parametrize("width", [183_000, 60_000, 20_000, 5_000, 500, 40])
def test_every_spike_is_visible_at_every_zoom_after_a_seeded_attach(long_run, width):
    poller = RunPoller(long_run.path, recent_rows=20_000)
    model = LiveModel(recent_rows=20_000)
    model.feed_all(poller.poll())
    trace = model.channels["c1"].trace
    for col, (at, value) in SPIKES.items():
        for where in (0.1, 0.5, 0.9):  # the spike near the left edge, the middle, the right
            t0 = at - where * width
            win = trace.window(t0, t0 + width, points=1000)
            hit = win.x[col][win.y[col] == value]
            assert list(hit) == [float(at)], f"{col} spike at {at} s lost (width {width} s)"


def test_cycles_of_summarised_rows_are_built_in_the_background(long_run):
    poller = RunPoller(long_run.path, recent_rows=20_000)
    poller.backfill_rows = 7_000  # slices that cut segments and cycles anywhere
    model = LiveModel(recent_rows=20_000)
    model.feed_all(poller.poll())
    assert poller.backfilling
    long_run.append("samples", rows(183_000, 500))  # arrives while the cycles are built
    for _ in range(200):
        model.feed_all(poller.poll())
        if not poller.backfilling:
            break
    assert not poller.backfilling
    every = CycleTracker()
    every.add(open_run(long_run.path).read("samples"))
    got = model.channels["c1"].cycles.cycles()
    want = every.cycles()
    assert got == want and len(got) >= 25  # every cycle since the first, not the recent ones
    mine, theirs = model.channels["c1"].cycles, every
    for cycle in (1, len(want) // 2, want[-1]):
        for a, b in zip(mine.curves(cycle), theirs.curves(cycle), strict=True):
            assert np.allclose(a.capacity_ah, b.capacity_ah, rtol=1e-9, atol=1e-12)
            assert np.array_equal(a.voltage_v, b.voltage_v)


def test_a_run_with_only_a_journal_attaches_from_its_rows(tmp_path):
    meta = RunMeta(run_id="short", start_time="2026-01-01T00:00:00Z")
    with create_run(tmp_path, meta, seal_interval_s=1e9) as writer:
        writer.append("samples", rows(0, 2_000))
        poller = RunPoller(writer.path)
        messages = poller.poll()
        assert [m.kind for m in messages if m.kind != "status"] == ["samples"]
        assert poller.rows_read == 0 and not poller.backfilling


# ------------------------------------------------------------------- from the GUI review


def test_a_run_written_without_a_logger_is_described_without_pid_none(tmp_path):
    from cellbench.daq.control import diagnose

    meta = RunMeta(run_id="script", start_time="2026-01-01T00:00:00Z")
    with create_run(tmp_path, meta) as writer:  # a script using the store: no pid, no host
        text = diagnose(writer.path)
    assert "None" not in text
    assert "no cellbench logger" in text and "control channel" in text


def test_the_status_reply_carries_temperature_with_voltage_and_current():
    from types import SimpleNamespace

    from cellbench.daq.engine import Engine
    from cellbench.daq.runner import ChannelState

    state = ChannelState("cell1", voltage_volt=3.9, current_ampere=1e-3, temperature_celsius=31.5)
    engine = SimpleNamespace(
        runners={"cell1": SimpleNamespace(state=state)},
        pause=SimpleNamespace(channel_state=lambda name: None),
        run_path=None,
        status="running",
        stop_reason=None,
        protocol=SimpleNamespace(name="p"),
        test_time=lambda: 10.0,
        _control_state=lambda: "running",
    )
    reply = Engine.control_status(engine)["channels"]["cell1"]  # type: ignore[arg-type]
    assert reply["temperature_celsius"] == 31.5 and reply["voltage_volt"] == 3.9
    assert reply["pressure_megapascal"] is None  # not measured: JSON null, not NaN


def test_status_bar_takes_temperature_from_the_same_status_reply_as_v_and_i(qtbot, tmp_path):
    import math
    from types import SimpleNamespace

    from cellbench.gui.window import MainWindow

    window = MainWindow(out_dir=tmp_path)
    qtbot.addWidget(window)
    window.model.add_samples(rows(0, 10).with_columns(temperature_celsius=pl.lit(70.0)))
    reply = {  # the logger's newer moment: 31.5 degC, no pressure sensor
        "samples": 12,
        "step_label": "step 1 CC charge",
        "cycle_count": 1,
        "voltage_volt": 3.95,
        "current_ampere": 1e-3,
        "temperature_celsius": 31.5,
        "pressure_megapascal": None,
        "test_time_second": 11.0,
        "step_remaining_second": 100.0,
    }
    window.run = SimpleNamespace(finished=False, control=SimpleNamespace(channel=lambda c: reply))
    try:
        snap = window._snapshot("c1")
    finally:
        window.run = None
    assert snap["voltage_volt"] == 3.95 and snap["temperature_celsius"] == 31.5
    assert math.isnan(snap["pressure_megapascal"])  # not the sample row's 5 MPa


def test_a_run_without_summaries_attaches_the_same_from_its_rows(long_run):
    seeded = LiveModel(recent_rows=20_000)
    seeded.feed_all(RunPoller(long_run.path, recent_rows=20_000).poll())
    for summary in (long_run.path / "samples").glob(SUMMARY_GLOB):  # an older cellbench's run
        summary.unlink()
    poller = RunPoller(long_run.path, recent_rows=20_000)
    model = LiveModel(recent_rows=20_000)
    model.feed_all(poller.poll())
    # every sealed row read to summarise it (then the recent window's again), nothing written
    assert 180_000 < poller.rows_read <= 180_000 + 20_000 + BUCKET_ROWS
    assert not list((long_run.path / "samples").glob(SUMMARY_GLOB))
    a, b = seeded.channels["c1"].trace.window(), model.channels["c1"].trace.window()
    for col in VALUE_COLUMNS:
        assert np.array_equal(a.x[col], b.x[col]) and np.array_equal(a.y[col], b.y[col])
