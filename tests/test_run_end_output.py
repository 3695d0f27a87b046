"""What ``cellbench run`` and ``run --continue`` print around a run (issue 17): the run folder
once, and the run's end in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cellbench.cli.main import main
from cellbench.daq.store import open_run

FX = Path(__file__).resolve().parents[1] / "fixtures"
STATION = FX / "stations" / "demo_station.toml"

TINY = """
name = "tiny"
sample_interval = "10 s"

[safety]
voltage_min = "2.5 V"
voltage_max = "4.35 V"
current_max = "5 mA"

[[step]]
type = "rest"
duration = "30 min"
"""


def _protocol(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY, encoding="utf-8")
    return path


def _end_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.rstrip().endswith("run completed")]


def test_a_plain_run_ends_with_one_line(tmp_path, capsys):
    argv = ["run", str(_protocol(tmp_path)), "--station", str(STATION)]
    argv += ["--out", str(tmp_path / "runs"), "--name", "t1", "--plain", "--time-scale", "4000"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert len(_end_lines(out)) == 1, out
    assert out.rstrip().splitlines()[-1].startswith("run at ")  # with the time it ended


def _killed_run(tmp_path: Path, protocol: Path) -> Path:
    """A run whose process died (kill -9) after a few samples: left 'running'."""
    run = tmp_path / "runs" / "k"
    argv = ["run", str(protocol), "--station", str(STATION), "--out", str(tmp_path / "runs")]
    argv += ["--name", "k", "--plain", "--time-scale", "50"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cellbench.cli", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if open_run(run).tables()["samples"] >= 3:
                    break
            except Exception:  # not created yet, or being created
                pass
            time.sleep(0.05)
        else:
            raise AssertionError(f"{run}: no samples within 60 s")
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    return run


def test_continue_prints_the_run_folder_once_and_its_end_once(tmp_path, capsys):
    protocol = _protocol(tmp_path)
    run = _killed_run(tmp_path, protocol)
    capsys.readouterr()
    argv = ["run", str(protocol), "--station", str(STATION), "--out", str(tmp_path / "runs")]
    argv += ["--name", "k", "--continue", "--plain", "--time-scale", "4000"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count(str(run)) == 1, out
    assert "resuming running run" in out.splitlines()[0]
    assert len(_end_lines(out)) == 1, out
    assert open_run(run).meta.status == "completed"
