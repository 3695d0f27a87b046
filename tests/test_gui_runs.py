"""Runs outlive the window (offscreen, pytest-qt, real window, real `cellbench run` loggers on the
simulated demo station): start from the window with cell details, pause / continue / stop over the
control channel; the window killed (SIGTERM, kill -9) while its run goes on, then a new window
attaches and stops it; a run started from a terminal stopped from the window; a crashed run
resumed or closed from the window's list of runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QMessageBox

from cellbench.daq import control
from cellbench.daq.run_reader import load_meta, open_run
from cellbench.gui.window import MainWindow

FX = Path(__file__).resolve().parents[1] / "fixtures"
DEMO = FX / "protocols" / "demo.toml"
STATION = FX / "stations" / "demo_station.toml"
SCALE = "2000"  # 3.5 simulated days in under 3 minutes; every test stops its run long before
WAIT_MS = 60_000  # generous: a loaded 2-core machine starting Python processes


@pytest.fixture
def env(monkeypatch, tmp_path):
    """Private control folder (short path) and GUI settings for this test; loggers it starts are
    killed at the end if a test left one running."""
    folder = Path(tempfile.mkdtemp(prefix="cbgui-"))
    monkeypatch.setenv("CELLBENCH_CONTROL_DIR", str(folder / "c"))
    monkeypatch.setenv("CELLBENCH_GUI_SETTINGS", str(tmp_path / "gui.ini"))
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    yield tmp_path
    for run_json in (tmp_path / "runs").glob("*/run.json"):
        pid = json.loads(run_json.read_text()).get("extra", {}).get("pid")
        if pid and alive(pid) and pid != os.getpid():
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def window(qtbot, env, monkeypatch):
    monkeypatch.setattr(
        QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes)
    )
    w = MainWindow(out_dir=env / "runs", refresh_ms=100, attach_interval_s=0.2)
    w.ask_on_close = lambda name: "leave"
    qtbot.addWidget(w)
    w.show()
    yield w
    w.detach()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (ended, not yet reaped by its parent) is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def samples(run: Path) -> int:
    return open_run(run).tables().get("samples", 0)


def wait_for(predicate, timeout_s: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


def rows(window: MainWindow, channel: str = "cell1") -> int:
    view = window.model.channels.get(channel)
    return 0 if view is None else len(view.trace)


def actions(run: Path) -> list[str]:
    ev = open_run(run).read("events").filter(pl.col("kind") == "status")
    return [json.loads(d)["action"] for d in ev["data"].drop_nulls() if '"action"' in d]


def logger(out: Path, name: str) -> subprocess.Popen:
    """`cellbench run` from a terminal (its own session, like a service)."""
    return subprocess.Popen(
        [sys.executable, "-m", "cellbench.cli", "run", str(DEMO), "--station", str(STATION),
         "--out", str(out), "--name", name, "--plain", "--time-scale", SCALE],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip


def gui(*args: str) -> subprocess.Popen:
    """`cellbench gui ...` in a process of its own (offscreen)."""
    return subprocess.Popen(
        [sys.executable, "-m", "cellbench.cli", "gui", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


# ----------------------------------------------------------------------------- from the window


def test_start_from_the_window_with_cell_details_pause_continue_stop(qtbot, window, env):
    window.protocol.set_path(DEMO)
    window.station.set_path(STATION)
    window.form.cell_name.setText("A7-LPSCl-0412")
    window.form.chemistry.setText("Li | Li6PS5Cl | NMC811")
    window.form.thickness.setValue(600.0)  # µm
    window.form.notes.setPlainText("pressed at 375 MPa")
    window.time_scale.setValue(float(SCALE))
    assert window.check() == []
    window.start_run()
    run = window.run
    assert run is not None and run.started_here
    assert os.getsid(run.process.pid) != os.getsid(0)  # its own session: no signal of ours
    qtbot.waitUntil(lambda: rows(window) >= 3, timeout=WAIT_MS)  # data through the folder
    meta = load_meta(run.run_path)
    assert meta.cell.name == "A7-LPSCl-0412" and meta.cell.chemistry.startswith("Li |")
    assert meta.cell.thickness_cm == pytest.approx(0.06) and meta.cell.notes == "pressed at 375 MPa"
    assert (run.run_path / "logger.log").is_file()

    qtbot.waitUntil(window.pause_button.isEnabled, timeout=WAIT_MS)  # control channel up
    window.pause_clicked()
    qtbot.waitUntil(lambda: run.state == "paused", timeout=WAIT_MS)
    qtbot.waitUntil(window.continue_button.isEnabled, timeout=WAIT_MS)
    assert not window.pause_button.isEnabled()
    qtbot.waitUntil(lambda: window.status_label.text().startswith("paused"), timeout=WAIT_MS)
    held = rows(window)
    qtbot.waitUntil(lambda: rows(window) > held, timeout=WAIT_MS)  # still sampled while held
    window.continue_clicked()
    qtbot.waitUntil(lambda: run.state == "running", timeout=WAIT_MS)
    qtbot.waitUntil(window.pause_button.isEnabled, timeout=WAIT_MS)

    window.stop_clicked()
    qtbot.waitUntil(lambda: run.finished, timeout=WAIT_MS)
    assert run.status == "stopped"
    assert run.process.wait(30) == 0
    assert load_meta(run.run_path).status == "stopped"
    assert actions(run.run_path) == ["pause_requested", "paused", "continue_requested", "continued"]
    qtbot.waitUntil(window.start_button.isEnabled, timeout=WAIT_MS)
    assert not window.stop_button.isEnabled() and not window.pause_button.isEnabled()


def test_window_killed_the_run_goes_on_a_new_window_attaches_and_stops_it(qtbot, window, env):
    out = env / "runs"
    first = gui(str(DEMO), "--station", str(STATION), "--out", str(out), "--time-scale", SCALE)
    try:
        wait_for(lambda: list(out.glob("*/run.json")), 60, "the run the window started")
        run = next(out.glob("*/run.json")).parent
        wait_for(lambda: control.listening(run), 60, "its logger's control channel")
        pid = load_meta(run).extra["pid"]
        assert pid != first.pid and os.getsid(pid) != os.getsid(first.pid)
        first.send_signal(signal.SIGTERM)  # the window is told to go (logout, systemctl, kill)
        first.wait(30)
        os.kill(pid, signal.SIGHUP)  # a hang-up (the desktop session ended) is ignored too
        before = samples(run)
        wait_for(lambda: samples(run) > before, 30, "data after the window went")
        assert alive(pid) and load_meta(run).status == "running"

        second = gui(str(run), "--out", str(out))  # a window attached, then killed hard
        time.sleep(2.0)
        second.kill()
        second.wait(30)
        before = samples(run)
        wait_for(lambda: samples(run) > before, 30, "data after kill -9 of a window")
        assert alive(pid)
    finally:
        for p in (first, locals().get("second")):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()

    found = window.runs_panel.scan_now()  # the new window offers the live run
    assert [(r.path, r.live) for r in found] == [(run, True)]
    assert window.runs_panel.attach_button.isEnabled()
    assert not window.runs_panel.resume_button.isEnabled()
    window.runs_panel.attach_selected()
    assert window.run is not None and window.run.run_path == run
    qtbot.waitUntil(lambda: rows(window) > 0, timeout=WAIT_MS)
    seen = rows(window)
    qtbot.waitUntil(lambda: rows(window) > seen, timeout=WAIT_MS)  # the data advance
    qtbot.waitUntil(window.stop_button.isEnabled, timeout=WAIT_MS)
    window.stop_clicked()
    qtbot.waitUntil(lambda: window.run.status == "stopped", timeout=WAIT_MS)
    wait_for(lambda: not alive(pid), 30, "the logger to end")


def test_stop_a_run_started_from_a_terminal_and_close_leaves_another_running(qtbot, window, env):
    out = env / "runs"
    headless = logger(out, "terminal")
    try:
        run = out / "terminal"
        wait_for(lambda: control.listening(run), 60, "the logger's control channel")
        window.attach(run)
        qtbot.waitUntil(lambda: rows(window) > 0, timeout=WAIT_MS)
        qtbot.waitUntil(window.stop_button.isEnabled, timeout=WAIT_MS)
        window.stop_clicked()
        assert headless.wait(60) == 0
        qtbot.waitUntil(lambda: window.run.status == "stopped", timeout=WAIT_MS)
        assert load_meta(run).status == "stopped"

        other = logger(out, "other")  # closing the window: asked, "leave running"
        wait_for(lambda: control.listening(out / "other"), 60, "the second logger")
        window.attach(out / "other")
        qtbot.waitUntil(window.stop_button.isEnabled, timeout=WAIT_MS)
        asked = []
        window.ask_on_close = lambda name: asked.append(name) or "leave"
        window.close()
        assert asked == ["other"]
        time.sleep(1.0)
        assert other.poll() is None and control.listening(out / "other")
        assert control.request(out / "other", "stop")["ok"]
        assert other.wait(60) == 0
    finally:
        for p in (headless, locals().get("other")):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def test_crashed_run_is_offered_resume_and_close(qtbot, window, env):
    out = env / "runs"
    crashed = logger(out, "crashed")
    run = out / "crashed"
    try:
        wait_for(lambda: control.listening(run), 60, "the logger")
        wait_for(lambda: samples(run) > 5, 60, "some data")
    finally:
        crashed.kill()  # kill -9: run.json stays "running", nobody writes it
        crashed.wait()
    found = window.runs_panel.scan_now()
    assert [(r.path, r.live) for r in found] == [(run, False)]
    panel = window.runs_panel
    assert panel.resume_button.isEnabled() and panel.close_button.isEnabled()
    assert not panel.attach_button.isEnabled()

    panel.resume_selected()  # cellbench resume, detached; the window follows it
    assert window.run is not None and window.run.run_path == run
    qtbot.waitUntil(lambda: window.run.control.listening, timeout=WAIT_MS)
    pid = window.run.control.status["pid"]  # the resumed logger (run.json keeps the first)
    assert pid != crashed.pid and alive(pid)
    seen = samples(run)
    wait_for(lambda: samples(run) > seen, 30, "the resumed run's data")
    os.kill(pid, signal.SIGKILL)  # and it dies again
    wait_for(lambda: not alive(pid), 30, "the resumed logger to die")
    qtbot.waitUntil(lambda: window.run.status == "crashed", timeout=WAIT_MS)
    assert "crashed" in window.status_label.text() or "crashed" in window.run_label.text()
    window.detach()
    panel.scan_now()
    assert panel.close_button.isEnabled()
    panel.close_selected()
    qtbot.waitUntil(lambda: load_meta(run).status == "interrupted", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not panel.runs, timeout=WAIT_MS)


def test_a_run_whose_logger_cannot_be_reached_says_why(qtbot, window, env):
    from cellbench.core.schema import RunMeta
    from cellbench.daq.store import create_run

    # A writer that serves no control channel (another machine's logger on a shared disk, an
    # older cellbench): followed, but not controllable, and the window says what to do.
    meta = RunMeta(run_id="elsewhere", start_time="2026-01-01T00:00:00Z", extra={"pid": 4242})
    with create_run(env / "runs", meta) as writer:
        window.attach(writer.path)
        qtbot.waitUntil(lambda: "no control" in window.run_label.text(), timeout=WAIT_MS)
        assert "kill -TERM 4242" in window.run_label.text()
        assert not window.pause_button.isEnabled() and not window.continue_button.isEnabled()
        window.stop_clicked()
        assert window.run_label.text().startswith("cannot stop:")
        window.detach()
