"""The GUI's Qt-free parts: bounded buffers, message decoding, the read-only run poller, checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellbench.core.schema import RunMeta
from cellbench.daq.live import LiveMessage
from cellbench.daq.store import create_run
from cellbench.gui.cycles import CycleTracker
from cellbench.gui.engine_run import check_files
from cellbench.gui.history import History
from cellbench.gui.model import (
    LiveModel,
    event_row,
    fmt_duration,
    fmt_si,
    readable_message,
    status_text,
)
from cellbench.gui.poller import RunPoller
from cellbench.gui.protocol_table import protocol_rows


def samples(t: np.ndarray, channel: str = "ch1", **extra) -> pl.DataFrame:
    n = len(t)
    data = {
        "channel": [channel] * n,
        "test_time_second": t.astype(float),
        "unix_time_second": 1.7e9 + t,
        "voltage_volt": 3.5 + 0.1 * np.sin(t / 10.0),
        "current_ampere": np.full(n, 1e-3),
        "cycle_count": np.ones(n, dtype=np.int32),
        "step_count": np.ones(n, dtype=np.int32),
        "step_index": np.zeros(n, dtype=np.int32),
    }
    data.update(extra)
    return pl.DataFrame(data)


def spectrum(sweep: int, freqs: np.ndarray, channel: str = "ch1") -> pl.DataFrame:
    z = 10.0 + 50.0 / (1 + 2j * np.pi * freqs * 1e-4 * 50.0)
    return pl.DataFrame(
        {
            "channel": channel,
            "sweep_index": np.full(len(freqs), sweep, dtype=np.int32),
            "test_time_second": np.linspace(0, 1, len(freqs)),
            "unix_time_second": 1.7e9 + np.linspace(0, 1, len(freqs)),
            "frequency_hertz": freqs,
            "z_real_ohm": z.real,
            "z_imag_ohm": z.imag,
            "temperature_celsius": 25.0,
        }
    )


# ----------------------------------------------------------------------------------- History


def _spiky_run(n: int, seed: int = 1):
    """(columns, spikes): n rows at irregular intervals; one-sample spikes in V, I, T and p,
    at least 9000 rows apart (two spikes in one coarsest bucket: only the larger can be kept)."""
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.uniform(0.5, 1.5, n))
    v = 3.5 + 0.01 * np.sin(t / 1000)
    i = np.full(n, 1e-3)
    temp = np.full(n, 25.0)
    p = np.full(n, 2.0)
    where = np.arange(1, n // 9000) * 9000 + rng.integers(0, 4000, n // 9000 - 1)
    where = np.concatenate([[0, 3], where, [n - 1]])
    kinds = []
    for k, row in enumerate(where):
        kind = ("voltage_volt", "current_ampere", "temperature_celsius", "pressure_megapascal")[
            k % 4
        ]
        up = k % 3 != 0
        col = {"voltage_volt": v, "current_ampere": i, "temperature_celsius": temp,
               "pressure_megapascal": p}[kind]  # fmt: skip
        col[row] = col[row] + (1.0 if up else -1.0) * {"voltage_volt": 1.2,
                    "current_ampere": 6e-3, "temperature_celsius": 45.0,
                    "pressure_megapascal": 3.0}[kind]  # fmt: skip
        kinds.append((int(row), kind, float(col[row])))
    return np.vstack([t, v, i, temp, p]), kinds


def test_history_every_one_sample_spike_is_visible_at_every_zoom_level():
    cols, spikes = _spiky_run(300_000)
    hist = History(recent_rows=5_000, level_buckets=256, fanout=16)  # small: many levels
    rng = np.random.default_rng(2)
    pos = 0
    while pos < cols.shape[1]:  # batches of odd sizes, as a live run sends them
        k = int(rng.integers(1, 20_000))
        hist.append(cols[:, pos : pos + k])
        pos += k
    assert hist.levels >= 3 and hist.rows_seen == cols.shape[1]
    t = cols[0]
    span = t[-1] - t[0]
    for row, column, value in spikes:
        for width in (span, span / 7, 3e4, 3e3, 300.0, 20.0):
            for where in (0.02, 0.5, 0.97):  # spike near the left edge, middle, right edge
                lo = t[row] - width * where
                hi = lo + width
                win = hist.window(lo, hi, points=1000)
                x, y = win.x[column], win.y[column]
                seen = y[(x >= lo) & (x <= hi)]
                assert len(win) <= 1100, (width, len(win))
                assert value in seen, (row, column, value, width, where, win.level)
                # and the spike is drawn at the time it happened
                assert t[row] in x[y == value]


def test_history_whole_run_window_spans_it_with_bounded_points_and_memory():
    cols, _ = _spiky_run(200_000)
    hist = History(recent_rows=10_000, level_buckets=512, fanout=16)
    for start in range(0, cols.shape[1], 7_777):
        hist.append(cols[:, start : start + 7_777])
    win = hist.window(points=2_000)
    for column in ("voltage_volt", "current_ampere"):
        x = win.x[column]
        assert len(x) <= 2_200
        assert x[0] == cols[0, 0] and x[-1] == cols[0, -1]  # the first and the newest row
        assert np.all(np.diff(x) >= 0)
    assert hist.nbytes() < 3_000_000  # 200 000 rows would be 8 MB raw
    # zoomed into the newest rows: full resolution
    t = cols[0]
    win = hist.window(t[-500], t[-1])
    assert win.level == 0 and np.array_equal(win.x["voltage_volt"], t[-501:])
    # a column never measured is empty, not zeros
    hist2 = History(recent_rows=100, level_buckets=64)
    c2 = cols[:, :1000].copy()
    c2[4] = np.nan
    hist2.append(c2)
    assert not hist2.has_values("pressure_megapascal") and hist2.has_values("voltage_volt")
    assert len(hist2.window().y["pressure_megapascal"]) == 0


def test_history_rejects_bad_shape_and_tiny_sizes():
    with pytest.raises(ValueError, match="at least"):
        History(recent_rows=4)
    with pytest.raises(ValueError, match="shape"):
        History().append(np.zeros((3, 5)))


def test_model_shares_recent_rows_between_channels_and_keeps_history():
    model = LiveModel(recent_rows=1000, recent_budget=1500, recent_floor=100)
    model.add_samples(samples(np.arange(3000.0), "a"))
    assert len(model.channels["a"].trace) <= 1000
    model.add_samples(samples(np.arange(3000.0), "b"))
    model.add_samples(samples(np.arange(3000.0), "c"))
    for name in "abc":
        trace = model.channels[name].trace
        assert trace.recent_rows == 500 and len(trace) <= 500
        assert trace.span() == (0.0, 2999.0)  # the history still reaches the start
        win = trace.window()
        assert win.x["voltage_volt"][0] == 0.0


# ------------------------------------------------------------------------------------ cycles


def test_cycle_tracker_capacity_and_efficiency_per_cycle():
    t = np.arange(0, 3 * 7200, 10.0)
    current = np.where((t // 3600) % 2 == 0, 1e-3, -0.98e-3)
    frame = pl.DataFrame(
        {
            "test_time_second": t,
            "voltage_volt": 3.5 + 0.3 * np.sin(t / 3600 * np.pi),
            "current_ampere": current,
            "cycle_count": (t // 7200 + 1).astype(np.int32),
        }
    )
    tracker = CycleTracker(points_per_half=100)
    for start in range(0, frame.height, 77):
        tracker.add(frame.slice(start, 77))
    table = tracker.table()
    assert table["cycle_count"].to_list() == [1, 2, 3]
    assert table["charge_capacity_ampere_hour"][1] == pytest.approx(1e-3, rel=0.01)
    assert table["discharge_capacity_ampere_hour"][1] == pytest.approx(0.98e-3, rel=0.01)
    assert table["coulombic_efficiency_percent"][1] == pytest.approx(98.0, abs=0.5)
    halves = tracker.curves(2)
    assert [h.sign for h in halves] == [1, -1]
    for half in halves:
        q, _v = half.arrays()
        assert len(q) <= 100 and np.all(np.diff(q) >= 0)  # bounded, capacity rising
        assert q[-1] == pytest.approx(1e-3, rel=0.05)


# ---------------------------------------------------------------------------------- LiveModel


def test_model_splits_channels_and_reads_out_last_row():
    model = LiveModel(recent_rows=100)
    frame = pl.concat(
        [
            samples(np.arange(5.0), "a", temperature_celsius=np.full(5, 30.0)),
            samples(np.arange(3.0), "b"),
        ],
        how="diagonal_relaxed",
    )
    v0 = model.version
    model.feed(LiveMessage("samples", frame=frame))
    assert model.version > v0
    assert set(model.channels) == {"a", "b"}
    assert len(model.channels["a"].trace) == 5
    assert np.isnan(model.channels["b"].trace.column("temperature_celsius")).all()
    out = model.readout("a")
    assert out["test_time_second"] == 4.0
    assert out["temperature_celsius"] == 30.0
    assert out["cycle_count"] == 1
    assert out["step"] == "step 0"
    assert model.readout("missing") == {}


def test_model_keeps_newest_sweeps_and_merges_split_sweep():
    model = LiveModel(sweeps_kept=2)
    f = np.logspace(5, 0, 12)
    for k in range(4):
        model.add_spectra(spectrum(k, f))
    sweeps = list(model.channels["ch1"].sweeps)
    assert [s.sweep_index for s in sweeps] == [2, 3]
    # a sweep arriving in two batches is one sweep, sorted by falling frequency
    model.add_spectra(spectrum(4, f[:6]))
    model.add_spectra(spectrum(4, f[6:]))
    last = model.channels["ch1"].sweeps[-1]
    assert last.sweep_index == 4 and len(last.frequency_hertz) == 12
    assert np.all(np.diff(last.frequency_hertz) < 0)
    assert last.temperature_celsius == 25.0


def test_model_events_alarms_steps_and_final_status():
    model = LiveModel(events_kept=3)
    model.feed(LiveMessage("status", status="running"))
    model.feed(
        LiveMessage(
            "event",
            event={"kind": "step_start", "channel": "c", "message": "step 2 cc 1 mA"},
        )
    )
    model.feed(LiveMessage("event", event={"kind": "alarm", "severity": "alarm", "message": "V"}))
    model.add_events(
        [
            {
                "kind": "run_end",
                "severity": "warning",
                "message": "run aborted",
                "test_time_second": 5.0,
                "unix_time_second": 1.7e9,
                "data": json.dumps({"status": "aborted"}),
            },
            {"kind": "note", "message": "x"},
        ]
    )
    assert model.channels["c"].step_label == "step 2 cc 1 mA"
    assert model.alarm_count == 1
    assert model.status == "aborted"
    assert len(model.events) == 3 and model.events_total == 4  # a ring of the newest
    assert [e.kind for e in model.events] == ["alarm", "run_end", "note"]
    assert model.events[0].is_alarm and not model.events[2].is_alarm
    assert event_row({"kind": "fault"}).is_alarm
    assert event_row({"kind": "note", "severity": "error"}).is_alarm


def test_formatting():
    assert fmt_duration(None) == "-"
    assert fmt_duration(3 * 86400 + 3661) == "3d 01:01:01"
    assert fmt_si(-1.25e-3, "A") == "-1.25 mA"
    assert fmt_si(3.7123, "V") == "3.712 V"
    assert fmt_si(float("nan"), "V") == "-"
    assert fmt_si(0.0, "A") == "0 A"
    line = status_text(
        {
            "step": "step 1 rest",
            "cycle_count": 2,
            "voltage_volt": 3.9,
            "current_ampere": 0.0,
            "temperature_celsius": 25.04,
            "test_time_second": 90.0,
        },
        "cell1",
        "running",
    )
    assert line == (
        "running | cell1 | step 1 rest | cycle 2 | 3.9 V | 0 A | 25.0 °C | elapsed 00:01:30"
    )
    assert "idle" in status_text({}, "", "")


def test_alarm_messages_read_with_units_and_sensible_digits():
    assert readable_message("voltage 6.1474e-05 V below limit 2.5 V") == (
        "voltage 61.47 µV below limit 2.5 V"
    )
    assert readable_message("temperature 70.0312 degC above limit 60 degC") == (
        "temperature 70.03 °C above limit 60 °C"
    )
    assert readable_message("current -0.00512345 A above limit 0.005 A") == (
        "current -5.123 mA above limit 5 mA"
    )
    assert readable_message("step 3 cc 1 mA, 4.2 V cut-off") == "step 3 cc 1 mA, 4.2 V cut-off"
    row = event_row({"kind": "alarm", "message": "pressure 12.3456789 MPa above limit 10 MPa"})
    assert row.message == "pressure 12.35 MPa above limit 10 MPa"


def test_event_times_do_not_wrap_after_100_days():
    assert fmt_duration(100 * 86400 + 5) == "100d 00:00:05"
    assert fmt_duration(400 * 86400 + 3600) == "400d 01:00:00"


def test_alarms_stay_unacknowledged_until_acknowledged_and_count_per_channel():
    model = LiveModel()
    model.add_events([{"kind": "alarm", "severity": "alarm", "channel": "c1", "message": "V"}])
    assert model.unacknowledged == 1 and model.channels["c1"].alarm_count == 1
    model.add_events([{"kind": "note", "message": "fine"}])
    assert model.unacknowledged == 1  # time passing acknowledges nothing
    model.acknowledge()
    assert model.unacknowledged == 0 and len(model.alarms) == 1
    model.add_events([{"kind": "fault", "channel": "c2", "message": "lost"}])
    assert model.unacknowledged == 1 and model.readout("c2")["alarms"] == 1


def test_data_age_from_the_newest_sample_row():
    model = LiveModel()
    assert model.data_age() is None
    model.add_samples(samples(np.arange(5.0)))  # unix 1.7e9 .. 1.7e9 + 4
    assert model.data_age(now=1.7e9 + 14) == pytest.approx(10.0)


def test_protocol_rows_place_each_problem_at_its_step(fixtures_dir):
    path = fixtures_dir / "protocols" / "bad" / "typos.toml"
    text = path.read_text()
    problems = check_files(path, fixtures_dir / "stations" / "demo_station.toml")
    rows = protocol_rows(text, problems, path)
    lines = text.splitlines()
    steps = [r for r in rows if r.title.startswith("step")]
    assert len(steps) == sum(1 for ln in lines if ln.strip() == "[[step]]")
    placed = [p for r in rows for p in r.problems]
    assert len(placed) == len(problems)
    rest = steps[0]
    assert rest.kind == "rest" and any("duraton" in p for p in rest.problems)
    top = rows[0]
    assert any("sample_intervall" in p for p in top.problems)  # a top-level key: the header row
    for row in rows:  # every problem lies within its row's lines
        for problem in row.problems:
            line = next(int(x.split(":")[1]) for x in problems if x.endswith(problem))
            assert row.line <= line <= max(row.end, row.line)


# ---------------------------------------------------------------------------------- RunPoller


def _files(path: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for root, _, names in os.walk(path):
        for name in names:
            p = Path(root) / name
            st = p.stat()
            out[str(p.relative_to(path))] = (st.st_mtime_ns, st.st_size)
    return out


def test_poller_reads_incrementally_in_chunks_and_follows_status(tmp_path):
    meta = RunMeta(run_id="poll", start_time="2026-01-01T00:00:00Z")
    writer = create_run(tmp_path, meta)
    try:
        writer.append("samples", samples(np.arange(25.0)))
        writer.event("run_start", "started", test_time_second=0.0)
        poller = RunPoller(writer.path, chunk_rows=10, samples_chunk_rows=10)
        before = _files(writer.path)
        msgs = poller.poll()
        assert [m.kind for m in msgs] == ["event", "samples", "status"]
        assert msgs[1].frame.height == 10 and not poller.caught_up
        assert poller.writer_alive
        rows = [m.frame for m in msgs if m.kind == "samples"]
        while not poller.caught_up:
            rows += [m.frame for m in poller.poll() if m.kind == "samples"]
        got = pl.concat(rows)["test_time_second"].to_list()
        assert got == list(np.arange(25.0))
        assert poller.poll() == []  # nothing new, status unchanged
        writer.append("samples", samples(np.arange(25.0, 30.0)))
        new = poller.poll()
        assert [m.frame.height for m in new] == [5]
        assert _files(writer.path) == {
            **before,
            **{k: v for k, v in _files(writer.path).items() if k.startswith("samples")},
        }
    finally:
        writer.close("stopped")
    msgs = poller.poll()
    assert msgs[-1] == LiveMessage("status", status="stopped")
    assert not poller.writer_alive


def test_attach_feed_reads_one_chunk_ahead_while_a_history_loads(tmp_path):
    import time

    from cellbench.gui.poller import AttachFeed

    meta = RunMeta(run_id="ahead", start_time="2026-01-01T00:00:00Z")
    with create_run(tmp_path, meta) as writer:
        writer.append("samples", samples(np.arange(50.0)))
        path = writer.path
    feed = AttachFeed(path, interval_s=0.05, chunk_rows=10, samples_chunk_rows=10)
    feed.start()
    try:

        def queued() -> int:
            return sum(1 for m in list(feed.queue.queue) if m.kind == "samples")

        deadline = time.monotonic() + 10
        while queued() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        assert queued() == 2  # the next chunk read while this one waits; not a third
        rows = []
        deadline = time.monotonic() + 10
        while len(rows) < 50 and time.monotonic() < deadline:
            rows += [m.frame for m in feed.drain() if m.kind == "samples"]
            time.sleep(0.01)
        got = pl.concat(rows)["test_time_second"].to_list()
        assert got == list(np.arange(50.0))  # every row once, in order
    finally:
        feed.stop()


# -------------------------------------------------------------------------------- check_files


def test_check_files_lists_every_problem_with_file_and_line(fixtures_dir):
    station = fixtures_dir / "stations" / "demo_station.toml"
    assert check_files(fixtures_dir / "protocols" / "demo.toml", station) == []
    typos = fixtures_dir / "protocols" / "bad" / "typos.toml"
    problems = check_files(typos, station)
    assert len(problems) >= 2
    assert all(p.startswith(f"{typos}:") for p in problems)
    assert any("did you mean 'sample_interval'" in p for p in problems)
    missing = check_files(fixtures_dir / "protocols" / "nope.toml", station)
    assert missing and "no such protocol file" in missing[0]


def test_check_files_station_cannot_serve_protocol(fixtures_dir, tmp_path):
    # An EIS protocol on a station without an impedance analyzer: the engine's own check.
    station = tmp_path / "station.toml"
    station.write_text(
        '[cell]\nname = "c"\nnominal_capacity_ah = 0.002\narea_cm2 = 1.0\n\n'
        '[simulation]\ncell = "'
        + str(fixtures_dir / "sim" / "sulfide_full_cell.toml")
        + '"\n\n[[instrument]]\nname = "smu1"\ndriver = "keithley2450"\naddress = "sim"\n'
        'roles = ["source"]\nchannel = "cell1"\n'
    )
    problems = check_files(fixtures_dir / "protocols" / "demo.toml", station)
    assert problems, "an EIS step without an impedance analyzer must be refused"
    assert any("impedance" in p for p in problems)
