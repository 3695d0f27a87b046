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
from cellbench.gui.engine_run import check_files
from cellbench.gui.model import (
    LiveModel,
    TraceBuffer,
    event_row,
    fmt_duration,
    fmt_si,
    status_text,
)
from cellbench.gui.poller import RunPoller


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


# --------------------------------------------------------------------------------- TraceBuffer


def test_trace_buffer_bounded_keeps_recent_rows_and_voltage_extremes():
    buf = TraceBuffer(capacity=1000)
    t = np.arange(10_000, dtype=float)
    v = np.full(10_000, 3.5)
    v[123] = 4.4  # a spike early in the history must survive thinning
    v[4567] = 2.6
    cols = np.vstack([t, v, np.zeros_like(t), np.full_like(t, np.nan)])
    for start in range(0, 10_000, 370):  # batches of odd sizes
        buf.append(cols[:, start : start + 370])
    assert len(buf) <= 1000
    assert buf.rows_seen == 10_000
    times = buf.column("test_time_second")
    assert np.all(np.diff(times) > 0)  # time order kept
    assert times[0] == 0.0 and times[-1] == 9999.0
    # the newest rows are all there at full resolution
    assert np.array_equal(times[-200:], t[-200:])
    assert buf.column("voltage_volt").max() == 4.4
    assert buf.column("voltage_volt").min() == 2.6


def test_trace_buffer_without_voltage_thins_evenly():
    buf = TraceBuffer(capacity=64)
    t = np.arange(500, dtype=float)
    nan = np.full_like(t, np.nan)
    buf.append(np.vstack([t, nan, nan, t]))
    assert 32 <= len(buf) <= 64
    assert buf.column("test_time_second")[0] == 0.0
    assert buf.column("test_time_second")[-1] == 499.0
    assert buf.last()["temperature_celsius"] == 499.0


def test_model_shares_a_sample_budget_between_channels():
    model = LiveModel(trace_capacity=1000, trace_budget=1500, trace_floor=100)
    model.add_samples(samples(np.arange(3000.0), "a"))
    assert len(model.channels["a"].trace) <= 1000
    assert model.channels["a"].trace._data.shape[1] == 1000  # grown to its bound, no more
    model.add_samples(samples(np.arange(3000.0), "b"))
    model.add_samples(samples(np.arange(3000.0), "c"))
    for name in "abc":
        trace = model.channels[name].trace
        assert trace.capacity == 500 and len(trace) <= 500
        assert trace._data.shape[1] <= 500  # memory given back, not just rows dropped
        t = trace.column("test_time_second")
        assert t[0] == 0.0 and t[-1] == 2999.0
    floored = LiveModel(trace_capacity=1000, trace_budget=1500, trace_floor=800)
    for name in "abc":
        floored.channel(name)
    assert [v.trace.capacity for v in floored.channels.values()] == [800, 800, 800]


def test_trace_buffer_rejects_bad_shape_and_tiny_capacity():
    with pytest.raises(ValueError, match="capacity"):
        TraceBuffer(capacity=4)
    with pytest.raises(ValueError, match="shape"):
        TraceBuffer(capacity=100).append(np.zeros((3, 5)))


# ---------------------------------------------------------------------------------- LiveModel


def test_model_splits_channels_and_reads_out_last_row():
    model = LiveModel(trace_capacity=100)
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
        poller = RunPoller(writer.path, chunk_rows=10)
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
