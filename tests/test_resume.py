"""Resume tells the truth about the outage: after ``kill -9`` of the logger and a wait, ``cellbench
resume`` records a gap at least as long as the wait, with the last recorded and first new times;
time columns never go backwards; the cycle's capacity counters carry on."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import polars as pl
import pytest
from cli_support import cellbench, wait_for_rows

from cellbench.daq.store import open_run

FX = Path(__file__).resolve().parents[1] / "fixtures"
STATION = FX / "stations" / "demo_station.toml"

PROTOCOL = """
name = "charge then rest"
sample_interval = "2 s"

[safety]
voltage_min = "2.5 V"
voltage_max = "4.35 V"
current_max = "5 mA"

[[step]]
type = "cc"
current = "C/5"
until = { time = "1 h" }

[[step]]
type = "rest"
duration = "10 min"
"""

WAIT_S = 2.0  # the outage: the acceptance run uses 5 s (docs/engine.md); the test asserts >= it


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    protocol = tmp / "p.toml"
    protocol.write_text(PROTOCOL, encoding="utf-8")
    run = tmp / "runs" / "r1"
    proc = cellbench(
        "run", str(protocol), "--station", str(STATION), "--out", str(tmp / "runs"),
        "--name", "r1", "--plain", "--time-scale", "500",
    )  # fmt: skip
    try:
        wait_for_rows(run, 400)  # inside the 1 h charge (1800 samples)
        time.sleep(0.3)
    finally:
        proc.kill()  # SIGKILL: no handler, no flush, no close
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    killed = time.time()
    before = open_run(run).read("samples")
    time.sleep(WAIT_S)
    again = cellbench("resume", str(run), "--plain", "--time-scale", "4000")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    return run, before, killed, out


def test_gap_event_records_the_outage_with_last_and_first_times(resumed):
    run, before, _, _ = resumed
    ev = open_run(run).read("events")
    gaps = ev.filter((pl.col("kind") == "gap") & pl.col("message").str.contains("resumed"))
    assert gaps.height == 1
    gap = gaps.row(0, named=True)
    data = json.loads(gap["data"])
    assert gap["duration_second"] >= WAIT_S and data["outage_wall_second"] >= WAIT_S
    assert f"resumed after {gap['duration_second']:.1f} s" in gap["message"]
    assert data["last_test_time_second"] == pytest.approx(before["test_time_second"].max(), abs=1)
    assert data["first_test_time_second"] >= data["last_test_time_second"]
    assert data["first_unix_time_second"] >= data["last_unix_time_second"]
    (resume,) = open_run(run).meta.extra["resumes"]
    assert resume["outage_wall_second"] >= WAIT_S
    # the repair's own event says what it did, not that the run was resumed
    status = ev.filter(pl.col("kind") == "status")["message"].to_list()
    assert any("interrupted" in m and "resumed" not in m for m in status)


def test_time_columns_never_go_backwards_across_the_resume(resumed):
    run, before, _, _ = resumed
    after = open_run(run).read("samples")
    assert after.height > before.height
    for column in ("test_time_second", "unix_time_second"):
        assert after[column].is_sorted(), f"{column} goes backwards"
    events = open_run(run).read("events")
    assert events["unix_time_second"].is_sorted()


def test_the_cycles_capacity_carries_on_across_the_resume(resumed):
    run, before, _, _ = resumed
    after = open_run(run).read("samples")
    last = before.sort("test_time_second").row(-1, named=True)
    new = after.filter(pl.col("test_time_second") > last["test_time_second"]).row(0, named=True)
    assert new["cycle_count"] == last["cycle_count"]
    q0 = last["charging_capacity_ampere_hour"]
    assert q0 > 0
    assert new["charging_capacity_ampere_hour"] >= q0 - 1e-12, "capacity reset by the resume"
    charge = after.filter(pl.col("step_index") == 0)
    assert charge["charging_capacity_ampere_hour"].is_sorted()
