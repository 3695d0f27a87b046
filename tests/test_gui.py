"""The window (offscreen, pytest-qt): checks before start, attach read-only, run and stop."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QMessageBox

from cellbench.cli.main import build_parser
from cellbench.core.schema import RunMeta
from cellbench.daq.run_reader import open_run
from cellbench.daq.store import create_run
from cellbench.gui.window import ALARM_BRUSH, MainWindow

WAIT_MS = 30_000  # generous: a loaded 2-core machine


@pytest.fixture
def asked(monkeypatch):
    """Answer every confirmation with Yes; record the questions."""
    questions: list[str] = []

    def question(parent, title, text, *args, **kwargs):
        questions.append(title)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    return questions


@pytest.fixture
def window(qtbot, tmp_path, asked):
    w = MainWindow(out_dir=tmp_path / "runs", refresh_ms=100, attach_interval_s=0.2)
    qtbot.addWidget(w)
    w.show()
    yield w
    if w.run is not None and not w.run.finished:  # never leave a logger running
        with contextlib.suppress(Exception):
            w.run.request_stop("test teardown")
    w.ask_on_close = lambda name: "leave"
    w.detach()


def test_window_opens_with_nothing_ready_then_checks_the_files_chosen(window, fixtures_dir):
    assert window.windowTitle() == "cellbench"
    assert window.protocol.path() is None and window.station.path() is None  # nothing ready
    assert not window.start_button.isEnabled()
    assert "idle" in window.status_label.text()
    window.station.set_path(fixtures_dir / "stations" / "demo_station.toml")
    window.protocol.set_path(fixtures_dir / "protocols" / "demo.toml")
    assert window.problems == []
    assert window.start_button.isEnabled()
    assert not window.stop_button.isEnabled()


def test_malformed_protocol_lists_every_problem_and_start_stays_disabled(window, fixtures_dir):
    window.station.set_path(fixtures_dir / "stations" / "demo_station.toml")
    bad = fixtures_dir / "protocols" / "bad"
    for name in ("typos.toml", "safety.toml", "syntax.toml"):
        window.protocol.set_path(bad / name)
        shown = [window.problem_list.item(i).text() for i in range(window.problem_list.count())]
        assert shown, name
        assert shown == window.problems
        assert all(line.startswith(f"{bad / name}:") for line in shown), shown
        assert window.problem_list.item(0).background() == ALARM_BRUSH
        assert not window.start_button.isEnabled()
        assert "problem" in window.check_label.text()
    window.start_run()  # a press that slipped through must not start anything either
    assert window.run is None
    window.protocol.set_path(fixtures_dir / "protocols" / "demo.toml")
    assert window.start_button.isEnabled()


def _snapshot(path: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for root, _, names in os.walk(path):
        for name in names:
            p = Path(root) / name
            st = p.stat()
            out[str(p.relative_to(path))] = (st.st_mtime_ns, st.st_size)
    return out


def _batch(first: int, n: int) -> pl.DataFrame:
    t = np.arange(first, first + n, dtype=float)
    return pl.DataFrame(
        {
            "channel": "cell1",
            "test_time_second": t,
            "unix_time_second": 1.7e9 + t,
            "voltage_volt": 3.6 + 0.2 * np.sin(t / 50.0),
            "current_ampere": np.where((t // 100) % 2 == 0, 1e-3, -1e-3),
            "cycle_count": 1 + (t // 200).astype(np.int32),
            "step_count": 1,
            "step_index": 0,
            "temperature_celsius": 25.0,
        }
    )


def test_attach_follows_a_run_another_writer_appends_without_touching_it(qtbot, window, tmp_path):
    meta = RunMeta(run_id="attach", start_time="2026-01-01T00:00:00Z")
    writer = create_run(tmp_path / "lab", meta)
    writer.event("run_start", "run started", test_time_second=0.0)
    writer.event("alarm", "voltage above 4.3 V", severity="alarm", channel="cell1")
    writer.append("spectra", _spectrum())
    written = [0]
    stop = threading.Event()
    writer.append("samples", _batch(0, 50))
    written[0] = 50

    def write() -> None:
        while not stop.wait(0.05):
            writer.append("samples", _batch(written[0], 20))
            written[0] += 20

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        untouched = {k: v for k, v in _snapshot(writer.path).items() if not k.startswith("samples")}
        window.attach(writer.path)
        assert not window.start_button.isEnabled()  # nothing can be started while attached
        assert window.attach_button.text() == "Detach"

        def rows() -> int:
            return _rows(window)

        qtbot.waitUntil(lambda: rows() >= 50, timeout=WAIT_MS)
        seen = rows()
        qtbot.waitUntil(lambda: rows() >= seen + 100, timeout=WAIT_MS)  # keeps following
        assert window.model.status == "running"
        assert window.feed.poller.writer_alive  # the writer still holds its lock
        assert "running" in window.status_label.text()
        assert window.channel_box.currentText() == "cell1"
        window.open_channel("cell1")  # only the tab shown is drawn
        curve = window.time_plots.curves["voltage_volt"]
        qtbot.waitUntil(lambda: len(curve.xData) >= seen, timeout=WAIT_MS)
        assert len(window.model.channels["cell1"].sweeps) == 1
        table = window.events_table
        kinds = [table.item(r, 2).text() for r in range(table.rowCount())]
        assert kinds == ["run_start", "alarm"]
        assert window.events_table.item(1, 0).background() == ALARM_BRUSH
        assert "1 alarm" in window.status_label.text()
        assert "background" in window.status_label.styleSheet()  # the bar turns red
        stop.set()
        thread.join(5)
        # nothing the writer did not write changed, and nothing new appeared
        after = _snapshot(writer.path)
        assert {k: v for k, v in after.items() if not k.startswith("samples")} == untouched
        writer.append("samples", _batch(written[0], 5))  # the writer is not blocked by us
        written[0] += 5
    finally:
        stop.set()
        thread.join(5)
        writer.close("completed")
    qtbot.waitUntil(lambda: window.model.status == "completed", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: rows() == written[0], timeout=WAIT_MS)
    assert "completed" in window.attach_label.text()
    qtbot.waitUntil(lambda: window.info_labels["status"].text() == "completed", timeout=WAIT_MS)
    assert window.info_labels["run"].text() == "attach"
    assert open_run(writer.path).tables()["samples"] == written[0]
    window.detach()
    assert window.feed is None and window.attach_button.text() != "Detach"


def _spectrum() -> pl.DataFrame:
    f = np.logspace(5, 0, 15)
    z = 12.0 + 40.0 / (1 + 2j * np.pi * f * 40.0 * 2e-6)
    return pl.DataFrame(
        {
            "channel": "cell1",
            "sweep_index": np.zeros(15, dtype=np.int32),
            "test_time_second": np.linspace(0, 30, 15),
            "unix_time_second": 1.7e9 + np.linspace(0, 30, 15),
            "frequency_hertz": f,
            "z_real_ohm": z.real,
            "z_imag_ohm": z.imag,
        }
    )


def test_cli_gui_is_registered_and_refuses_a_folder_without_run_json(tmp_path):
    parser = build_parser()
    args = parser.parse_args(["gui", str(tmp_path), "--time-scale", "5000"])
    assert args.run_dir == tmp_path and args.time_scale == 5000.0
    with pytest.raises(Exception, match="not a cellbench run folder"):
        args.func(args)


def test_unreachable_instrument_is_reported_and_start_comes_back(qtbot, window, tmp_path):
    # Nothing listens on port 9 of this host: the engine cannot open the SMU and says so.
    station = tmp_path / "bench.toml"
    station.write_text(
        '[cell]\nname = "c"\nnominal_capacity_ah = 0.002\n\n[[instrument]]\nname = "smu1"\n'
        'driver = "keithley2450"\naddress = "TCPIP::127.0.0.1::9::SOCKET"\nroles = ["source"]\n'
        'channel = "cell1"\ntimeout_s = 0.5\n'
    )
    protocol = tmp_path / "rest.toml"
    protocol.write_text(
        'name = "rest"\nsample_interval = "1 s"\n[[step]]\ntype = "rest"\nduration = "10 s"\n'
    )
    window.protocol.set_path(protocol)
    window.station.set_path(station)
    assert window.problems == []
    window.start_run()
    qtbot.waitUntil(lambda: window.run is None, timeout=WAIT_MS)  # the failed run is dropped
    shown = [window.problem_list.item(i).text() for i in range(window.problem_list.count())]
    assert any("smu1" in line and "127.0.0.1::9" in line for line in shown), shown
    assert "could not run" in window.run_label.text()
    assert window.start_button.isEnabled()


def test_attach_says_when_no_process_writes_a_running_run(qtbot, window, tmp_path):
    # A copy of a live run folder: run.json says running, but nobody holds its writer lock —
    # what a crashed or killed `cellbench run` leaves behind.
    meta = RunMeta(run_id="crashed", start_time="2026-01-01T00:00:00Z")
    with create_run(tmp_path / "live", meta) as writer:
        writer.append("samples", _batch(0, 10))
        shutil.copytree(writer.path, tmp_path / "crashed")
    window.attach(tmp_path / "crashed")
    qtbot.waitUntil(lambda: "no process writes it" in window.attach_label.text(), timeout=WAIT_MS)
    assert "cellbench resume" in window.attach_label.text()
    qtbot.waitUntil(lambda: _rows(window) == 10, timeout=WAIT_MS)


def _rows(window: MainWindow, channel: str = "cell1") -> int:
    """Samples the window holds for ``channel``."""
    view = window.model.channels.get(channel)
    return 0 if view is None else len(view.trace)


def test_cellbench_gui_run_dir_opens_the_window_attached(qtbot, tmp_path, qapp, monkeypatch):
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    # The application's own exec()/quit() would leave it closing: no QTimer of any later test
    # in this process would fire again. A local event loop stands in for exec().
    loop = QEventLoop()
    monkeypatch.setattr(QApplication, "exec", lambda *args: loop.exec())

    meta = RunMeta(run_id="done", start_time="2026-01-01T00:00:00Z")
    with create_run(tmp_path, meta) as writer:
        writer.append("samples", _batch(0, 30))
    seen: list[MainWindow] = []

    def look_then_quit() -> None:
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)]
        window = windows[-1]
        rows = window.model.channels.get("cell1")
        if (rows is None or len(rows.trace) < 30) and len(seen) < 200:
            seen.append(window)
            QTimer.singleShot(100, look_then_quit)
            return
        seen.append(window)
        window.close()
        loop.quit()

    QTimer.singleShot(100, look_then_quit)
    args = build_parser().parse_args(["gui", str(tmp_path / "done"), "--out", str(tmp_path)])
    assert args.func(args) == 0
    window = seen[-1]
    qtbot.addWidget(window)  # pytest-qt disposes of it
    assert window.feed is None  # closing detached it
    assert len(window.model.channels["cell1"].trace) == 30
    assert window.model.status == "completed"


def test_time_plots_pick_a_time_unit_and_hide_an_unmeasured_temperature(qtbot):
    from cellbench.gui.model import LiveModel
    from cellbench.gui.plots import TimePlots, time_unit

    assert time_unit(600.0) == (60.0, "min")
    assert time_unit(86400.0) == (3600.0, "h")
    assert time_unit(90 * 86400.0) == (86400.0, "d")
    plots = TimePlots()
    qtbot.addWidget(plots)
    model = LiveModel()
    model.add_samples(_batch(0, 100).drop("temperature_celsius"))
    plots.show_channel(model.channels["cell1"])
    assert not plots.plots["temperature_celsius"].isVisible()
    assert plots.plots["current_ampere"].getAxis("bottom").labelText == "test time (min)"
    model.add_samples(_batch(10 * 86400, 10))  # now ten days long, with temperature
    plots.show_channel(model.channels["cell1"])
    assert plots.plots["temperature_celsius"].isVisible()
    assert plots.plots["temperature_celsius"].getAxis("bottom").labelText == "test time (d)"
    assert plots.curves["voltage_volt"].xData[-1] == pytest.approx((10 * 86400 + 9) / 86400)
