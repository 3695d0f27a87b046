"""``cellbench run``, ``resume`` and ``demo`` as a user (or systemd) runs them: subprocesses,
signals, kill -9 and resume, exit codes."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import polars as pl
import pytest
from cli_support import cellbench, wait_for_rows

from cellbench.cli.main import main
from cellbench.daq.store import open_run

FX = Path(__file__).resolve().parents[1] / "fixtures"
STATION = FX / "stations" / "demo_station.toml"

LONG = """
name = "long rest"
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
type = "ocv"
duration = "3 h"

[[step]]
type = "rest"
duration = "20 min"
"""


@pytest.fixture
def long_protocol(tmp_path) -> Path:
    path = tmp_path / "long.toml"
    path.write_text(LONG, encoding="utf-8")
    return path


def test_kill_9_then_resume_loses_no_sample(tmp_path, long_protocol):
    run = tmp_path / "runs" / "r1"
    proc = cellbench(
        "run", str(long_protocol), "--station", str(STATION), "--out", str(tmp_path / "runs"),
        "--name", "r1", "--plain", "--time-scale", "1000",
    )  # fmt: skip
    try:
        wait_for_rows(run, 1500)  # well into the OCV step (cc is 1800 samples)
        before = open_run(run).read("samples")
    finally:
        proc.kill()  # SIGKILL: no handler, no flush, no close
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert open_run(run).meta.status == "running"  # as the dead writer left it

    resumed = cellbench("resume", str(run), "--plain", "--time-scale", "4000")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert "run completed" in out

    reader = open_run(run)
    after = reader.read("samples")
    key = ["channel", "test_time_second"]
    lost = before.join(after, on=key, how="anti")
    assert lost.height == 0, f"{lost.height} recorded samples lost"
    same = before.join(after, on=key, how="inner", suffix="_after")
    assert (same["voltage_volt"] == same["voltage_volt_after"]).all()
    assert after.height > before.height
    assert after["test_time_second"].is_sorted()  # time continues after the outage
    assert reader.meta.status == "completed"
    assert reader.meta.extra["resumes"]
    ev = reader.read("events")
    assert ev.filter(pl.col("kind") == "status")["message"].str.contains("interrupted").any()
    assert ev.filter(pl.col("kind") == "gap").height >= 1
    # the interrupted step started again and every later step ran
    last_start = before["step_index"].max()
    restarted = ev.filter(
        (pl.col("kind") == "step_start")
        & (pl.col("test_time_second") > before["test_time_second"].max())
    )
    assert restarted["step_index"].to_list() == list(range(last_start, 3))


def test_signals_stop_cleanly_with_documented_exit_codes(tmp_path, long_protocol):
    for sig, code in ((signal.SIGTERM, 0), (signal.SIGINT, 130)):
        name = f"r-{sig.name}"
        run = tmp_path / "runs" / name
        proc = cellbench(
            "run", str(long_protocol), "--station", str(STATION), "--out",
            str(tmp_path / "runs"), "--name", name, "--plain", "--time-scale", "500",
        )  # fmt: skip
        wait_for_rows(run, 50)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == code, err
        assert "run stopped" in out
        reader = open_run(run)
        assert reader.meta.status == "stopped"
        assert f"{sig.name} received" in " ".join(reader.read("events")["message"].to_list())
    # --continue on a run that already ended does not start it again
    proc = cellbench(
        "run", str(long_protocol), "--station", str(STATION), "--out", str(tmp_path / "runs"),
        "--name", "r-SIGTERM", "--continue", "--plain",
    )  # fmt: skip
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "already stopped" in out


def test_malformed_protocol_exit_1_with_lines(tmp_path, capsys):
    code = main(
        [
            "run",
            str(FX / "protocols" / "bad" / "typos.toml"),
            "--station",
            str(STATION),
            "--out",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("cellbench: error:")
    assert "typos.toml:" in err
    lines = [ln for ln in err.splitlines() if "typos.toml:" in ln and ln.split(":")[1].isdigit()]
    assert lines, err
    assert not any(tmp_path.iterdir())  # nothing was started or written


def test_resume_refuses_a_finished_run_and_close_marks_interrupted(tmp_path, long_protocol, capsys):
    run = tmp_path / "runs" / "k"
    proc = cellbench(
        "run", str(long_protocol), "--station", str(STATION), "--out", str(tmp_path / "runs"),
        "--name", "k", "--plain", "--time-scale", "500",
    )  # fmt: skip
    try:
        wait_for_rows(run, 20)
        capsys.readouterr()
        assert main(["resume", str(run)]) == 1  # its process is alive and holds the run
        assert "another process is writing this run" in capsys.readouterr().err
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert main(["resume", str(run), "--close"]) == 0
    assert open_run(run).meta.status == "interrupted"
    capsys.readouterr()
    assert main(["resume", str(run)]) == 1  # closed means closed
    assert "run is interrupted" in capsys.readouterr().err


def test_demo_runs_end_to_end_under_a_minute(tmp_path):
    t0 = time.monotonic()
    proc = cellbench("demo", "--plain", "--out", str(tmp_path))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "run completed" in out
    assert "cycle summary:" in out and "EIS fits" in out
    runs = [p for p in tmp_path.iterdir() if (p / "run.json").is_file()]
    assert len(runs) == 1
    reader = open_run(runs[0])
    spectra = reader.read("spectra")
    # EIS at three temperatures + the one before cycling, then every 5 of 20 cycles
    assert spectra["sweep_index"].n_unique() == 3 + 4
    samples = reader.read("samples")
    assert samples["cycle_count"].max() == 20
    assert (runs[0] / "summary" / "cycles.csv").is_file()
    assert (runs[0] / "summary" / "eis_fits.csv").is_file()
    elapsed = time.monotonic() - t0
    print(f"demo took {elapsed:.1f} s")


def test_live_display_shows_each_channel(tmp_path, long_protocol):
    import io

    from rich.console import Console

    from cellbench.cli.display import LiveDisplay
    from cellbench.daq.session import prepare

    session = prepare(long_protocol, STATION, tmp_path, time_scale=20000)
    buffer = io.StringIO()
    engine = session.engine
    engine.start()
    display = LiveDisplay(engine, console=Console(file=buffer, width=120, force_terminal=False))
    display.start()
    try:
        status = "running"
        while status == "running":
            status = engine.wait(timeout=0.1)
            display.update()
    finally:
        display.stop()
        session.close()
    text = buffer.getvalue()
    assert status == "completed"
    assert "cell1" in text and "cycle" in text and "step left" in text
    assert "run at " in text and ": run completed" in text  # the run_end event's line


def test_time_scale_is_refused_for_real_instruments(tmp_path, long_protocol):
    station = tmp_path / "real.toml"
    station.write_text(
        '[cell]\nnominal_capacity_ah = 0.002\n[[instrument]]\nname = "smu1"\n'
        'driver = "keithley2450"\naddress = "TCPIP::127.0.0.1::5025::SOCKET"\n'
        'roles = ["source"]\nchannel = "cell1"\n',
        encoding="utf-8",
    )
    args = ["run", str(long_protocol), "--station", str(station), "--time-scale", "10"]
    assert main([*args, "--out", str(tmp_path / "runs")]) == 1
    assert not (tmp_path / "runs").exists()


def test_unreachable_instrument_exits_75_and_starts_nothing(tmp_path, long_protocol, capsys):
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now: connection refused
    station = tmp_path / "real.toml"
    station.write_text(
        '[cell]\nnominal_capacity_ah = 0.002\n[[instrument]]\nname = "smu1"\n'
        f'driver = "keithley2450"\naddress = "TCPIP::127.0.0.1::{port}::SOCKET"\n'
        'roles = ["source"]\nchannel = "cell1"\ntimeout_s = 0.5\n',
        encoding="utf-8",
    )
    out = tmp_path / "runs"
    code = main(["run", str(long_protocol), "--station", str(station), "--out", str(out)])
    assert code == 75
    assert "could not start" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
