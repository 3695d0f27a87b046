"""``cellbench runs list|show|export|repair``: in-process through main() and as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellbench.cli.main import main
from cellbench.core.schema import Cell, RunMeta
from cellbench.daq.store import create_run, open_run


def samples(n: int, channel: str) -> pl.DataFrame:
    t = np.arange(n, dtype=np.float64)
    return pl.DataFrame(
        {
            "channel": channel,
            "test_time_second": t,
            "unix_time_second": 1.7e9 + t,
            "voltage_volt": 3.7,
            "current_ampere": 0.001,
            "cycle_count": 1,
            "step_count": 1,
            "step_index": 0,
        }
    )


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    cell = Cell(name="LLZO-7", chemistry="Li|LLZO|Li", area_cm2=0.785)
    truth = {"r_bulk_ohm": 25.4777, "shorted": False, "params": {"ocv_volt": [3.0, 4.2]}}
    meta = RunMeta(
        "cc-001", "2026-02-01T10:00:00Z", cell=cell, protocol={"name": "ccd"}, ground_truth=truth
    )
    with create_run(tmp_path, meta) as w:
        w.append("samples", samples(7200, "ch01"))
        w.append("samples", samples(10, "ch02"))
        w.event("alarm", "voltage above 4.3 V", severity="alarm", channel="ch01")
        w.event("step_start", "rest")
        w.event("step_start", "CC charge")
    create_run(tmp_path, RunMeta("eis-002", "2026-01-01T00:00:00Z")).close("stopped")
    return tmp_path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cellbench.cli", "runs", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_list_plain_text_when_piped(runs_dir):
    proc = run_cli("list", str(runs_dir))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["run", "status", "start"]
    assert lines[1].split()[:2] == ["eis-002", "stopped"]  # oldest start first
    row = lines[2].split()
    assert row[:2] == ["cc-001", "completed"]
    assert "7210" in row and "3" in row and "LLZO-7," in row


def test_show_prints_counts_span_and_events(runs_dir, capsys):
    assert main(["runs", "show", str(runs_dir / "cc-001")]) == 0
    out = capsys.readouterr().out
    assert any(ln.split() == ["samples", "rows", "7210"] for ln in out.splitlines())
    assert "0 .. 7199 s (1:59:59)" in out
    assert "ch01, ch02" in out
    assert "ccd" in out and "0.785" in out
    assert any(ln.split()[:3] == ["step_start", "info", "2"] for ln in out.splitlines())
    assert "voltage above 4.3 V" in out
    # a simulated run's truth: scalars in short, nested tables left in run.json
    assert "r_bulk_ohm=25.48, shorted=False, (+1 nested in run.json)" in out


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_each_table_and_refuse_overwrite(runs_dir, tmp_path, capsys, fmt):
    out = tmp_path / "out"
    assert (
        main(["runs", "export", str(runs_dir / "cc-001"), "--format", fmt, "--out", str(out)]) == 0
    )
    read = pl.read_parquet if fmt == "parquet" else pl.read_csv
    exported = read(out / f"cc-001_samples.{fmt}")
    original = open_run(runs_dir / "cc-001").read("samples")
    assert exported.height == original.height == 7210
    assert exported["voltage_volt"].to_list() == original["voltage_volt"].to_list()
    assert read(out / f"cc-001_events.{fmt}").height == 3
    assert (out / f"cc-001_spectra.{fmt}").exists()
    assert (
        main(["runs", "export", str(runs_dir / "cc-001"), "--format", fmt, "--out", str(out)]) == 1
    )
    assert "exists; use --force" in capsys.readouterr().err
    args = ["runs", "export", str(runs_dir / "cc-001"), "--format", fmt, "--out", str(out)]
    assert main([*args, "--table", "events", "--force"]) == 0


def test_errors_are_one_line_exit_1_and_usage_exit_2(tmp_path):
    proc = run_cli("show", str(tmp_path))
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        == f"cellbench: error: {tmp_path}: not a cellbench run folder (no run.json)"
    )
    proc = run_cli("list", str(tmp_path / "missing"))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "no such folder" in proc.stderr
    proc = run_cli("export", str(tmp_path), "--format", "xlsx")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    proc = run_cli("list", "--help")
    assert proc.returncode == 0 and "rows per table" in proc.stdout


def test_repair_closes_a_crashed_run_as_interrupted(tmp_path, capsys):
    writer = Path(__file__).with_name("store_writer.py")
    proc = subprocess.run(
        [sys.executable, str(writer), str(tmp_path), "--rows", "5", "--batches", "1",
         "--exit-without-close"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert main(["runs", "list", str(tmp_path)]) == 0
    assert "running (no writer" in capsys.readouterr().out
    assert main(["runs", "repair", str(tmp_path / "r")]) == 0
    assert "status interrupted; rows: samples 5, spectra 0, events 1" in capsys.readouterr().out
    r = open_run(tmp_path / "r")
    assert r.meta.status == "interrupted" and r.tables()["samples"] == 5
    assert main(["runs", "repair", str(tmp_path / "r")]) == 1
    assert "only a 'running' run needs repair" in capsys.readouterr().err


def test_list_uses_a_rich_table_on_a_terminal(runs_dir, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "160")
    assert main(["runs", "list", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "cc-001" in out and "┃" in out  # rich's heavy header rule


def test_runs_without_action_prints_help_and_exits_2(capsys):
    assert main(["runs"]) == 2
    assert "list" in capsys.readouterr().out
