"""The main window: start a run (checked first), or attach to one; watch it live; stop it safely.

Two ways to feed the live view, one view: a run started here (:class:`EngineRun`, the engine's
live bus) or a run folder written by another process (:class:`AttachFeed`, read-only polling).
A timer on the GUI thread drains the source's queue into the :class:`LiveModel` and redraws
when something arrived; no engine thread ever touches a widget.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QBrush, QCloseEvent, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

import cellbench.gui.qt_fixes  # noqa: F401 - before any PySide6 call
from cellbench.daq.run_reader import load_meta
from cellbench.gui.engine_run import EngineRun, check_files
from cellbench.gui.model import LiveModel, fmt_duration, run_summary, status_text
from cellbench.gui.plots import NyquistPlot, TimePlots
from cellbench.gui.poller import AttachFeed
from cellbench.gui.qt_fixes import keep_none_alive

ALARM_BRUSH = QBrush(QColor("#f8d0d0"))
WARNING_BRUSH = QBrush(QColor("#fff2cc"))
ALARM_STYLE = "QLabel { background: #d62728; color: white; font-weight: bold; }"
EVENT_ROWS = 2_000  # rows kept in the events table (the model keeps more)


def default_fixtures() -> Path | None:
    """The example files (cellbench.fixtures), where the file dialogs open (None if missing)."""
    from cellbench.fixtures import FixturesNotFound, fixtures_dir

    try:
        return fixtures_dir()
    except FixturesNotFound:
        return None


class PathField(QWidget):
    """A path line edit with a Browse button (file or folder dialog)."""

    def __init__(self, caption: str, start_dir: Path | None, *, folder: bool = False, filt=""):
        super().__init__()
        self.caption, self.start_dir, self.folder, self.filter = caption, start_dir, folder, filt
        self.edit = QLineEdit()
        self.button = QPushButton("Browse…")
        self.button.clicked.connect(self.browse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.button)

    def path(self) -> Path | None:
        text = self.edit.text().strip()
        return Path(text) if text else None

    def set_path(self, path: Path | str) -> None:
        self.edit.setText(str(path))
        self.edit.editingFinished.emit()

    def browse(self) -> None:
        current = self.path()
        start = str(current.parent if current and current.exists() else self.start_dir or "")
        if self.folder:
            chosen = QFileDialog.getExistingDirectory(self, self.caption, start)
        else:
            chosen, _ = QFileDialog.getOpenFileName(self, self.caption, start, self.filter)
        if chosen:
            self.set_path(chosen)


class MainWindow(QMainWindow):
    """cellbench: start or attach to a run, watch V/I/T and Nyquist plots, alarms; stop safely."""

    def __init__(
        self,
        *,
        out_dir: Path | str = "runs",
        refresh_ms: int = 250,
        attach_interval_s: float = 1.0,
    ):
        super().__init__()
        self.setWindowTitle("cellbench")
        self.out_dir = Path(out_dir)
        self.attach_interval_s = attach_interval_s
        self.model = LiveModel()
        self.run: EngineRun | None = None
        self.feed: AttachFeed | None = None
        self.problems: list[str] = []
        self._drawn_version = -1
        self._events_shown = 0
        self._alarmed = False
        fixtures = default_fixtures()

        # ---- start panel
        toml = "TOML files (*.toml);;All files (*)"
        self.protocol = PathField(
            "Protocol", fixtures / "protocols" if fixtures else None, filt=toml
        )
        self.station = PathField("Station", fixtures / "stations" if fixtures else None, filt=toml)
        self.time_scale = QDoubleSpinBox()
        self.time_scale.setRange(0.0, 1e6)
        self.time_scale.setDecimals(0)
        self.time_scale.setSingleStep(1000)
        self.time_scale.setSpecialValueText("station's")
        self.time_scale.setToolTip("simulated stations only: simulated seconds per wall second")
        self.problem_list = QListWidget()
        self.problem_list.setMinimumHeight(80)
        self.problem_list.setWordWrap(True)
        self.check_label = QLabel("choose a protocol and a station")
        self.check_label.setWordWrap(True)
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(False)
        self.start_button.clicked.connect(self.start_run)
        self.stop_button.clicked.connect(self.stop_clicked)
        for field in (self.protocol, self.station):
            field.edit.editingFinished.connect(self.check)
        start_box = QGroupBox("Run a protocol")
        form = QFormLayout()
        form.addRow("protocol", self.protocol)
        form.addRow("station", self.station)
        form.addRow("time scale", self.time_scale)
        start_layout = QVBoxLayout(start_box)
        start_layout.addLayout(form)
        start_layout.addWidget(self.check_label)
        start_layout.addWidget(self.problem_list, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        start_layout.addLayout(buttons)

        # ---- attach panel
        self.attach_path = PathField("Run folder", self.out_dir, folder=True)
        self.attach_button = QPushButton("Attach (read-only)")
        self.attach_button.clicked.connect(self.attach_clicked)
        self.attach_label = QLabel("follow a run another process writes")
        self.attach_label.setWordWrap(True)
        attach_box = QGroupBox("Attach to a run")
        attach_layout = QVBoxLayout(attach_box)
        attach_layout.addWidget(self.attach_path)
        attach_layout.addWidget(self.attach_button)
        attach_layout.addWidget(self.attach_label)

        # ---- what the run is (run.json)
        self.info_box = QGroupBox("Run")
        self.info_form = QFormLayout(self.info_box)
        self.info_labels: dict[str, QLabel] = {}
        for key in ("run", "status", "protocol", "station", "cell", "time", "instruments"):
            label = QLabel("-")
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.info_labels[key] = label
            self.info_form.addRow(key, label)
        self._info_key: tuple = ()

        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.addWidget(start_box)
        side_layout.addWidget(attach_box)
        side_layout.addWidget(self.info_box)
        side_layout.addStretch(1)
        self.problem_list.setMaximumHeight(240)
        side.setMinimumWidth(320)

        # ---- live view
        self.channel_box = QComboBox()
        self.channel_box.currentTextChanged.connect(lambda _: self.redraw(force=True))
        self.run_label = QLabel("no run")
        top = QHBoxLayout()
        top.addWidget(QLabel("channel"))
        top.addWidget(self.channel_box)
        top.addWidget(self.run_label, 1)
        self.time_plots = TimePlots()
        self.nyquist = NyquistPlot()
        plots = QSplitter(Qt.Orientation.Horizontal)
        plots.addWidget(self.time_plots)
        plots.addWidget(self.nyquist)
        plots.setStretchFactor(0, 3)
        plots.setStretchFactor(1, 2)
        self.events_table = QTableWidget(0, 4)
        self.events_table.setHorizontalHeaderLabels(["test time", "channel", "kind", "message"])
        self.events_table.verticalHeader().setVisible(False)
        self.events_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.events_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.events_table.horizontalHeader()
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        for col in range(3):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        view_split = QSplitter(Qt.Orientation.Vertical)
        view_split.addWidget(plots)
        view_split.addWidget(self.events_table)
        view_split.setSizes([620, 200])
        live = QWidget()
        live_layout = QVBoxLayout(live)
        live_layout.addLayout(top)
        live_layout.addWidget(view_split, 1)

        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(side)
        main.addWidget(live)
        main.setStretchFactor(1, 1)
        self.setCentralWidget(main)
        self.status_label = QLabel(status_text({}, "", ""))
        self.statusBar().addWidget(self.status_label, 1)
        self.resize(1400, 850)

        if fixtures:
            self.protocol.edit.setText(str(fixtures / "protocols" / "demo.toml"))
            self.station.edit.setText(str(fixtures / "stations" / "demo_station.toml"))
            self.check()

        self.timer = QTimer(self)
        self.timer.setInterval(refresh_ms)
        self.timer.timeout.connect(self.tick)
        self.timer.start()

    # ------------------------------------------------------------------------------ checking

    def check(self) -> list[str]:
        """Check the chosen protocol and station with the real loaders; list every problem."""
        protocol, station = self.protocol.path(), self.station.path()
        self.problem_list.clear()
        if protocol is None or station is None:
            self.problems = ["choose a protocol and a station file"]
            self.check_label.setText(self.problems[0])
        else:
            self.problems = check_files(protocol, station)
            for line in self.problems:
                item = QListWidgetItem(line)
                item.setBackground(ALARM_BRUSH)
                item.setToolTip(line)
                self.problem_list.addItem(item)
            self.check_label.setText(
                f"{len(self.problems)} problem(s): fix them before starting"
                if self.problems
                else "checked: ready to start"
            )
        self._update_buttons()
        return self.problems

    def _busy(self) -> bool:
        return (self.run is not None and not self.run.finished) or self.feed is not None

    def _update_buttons(self) -> None:
        running = self.run is not None and not self.run.finished
        self.start_button.setEnabled(not self.problems and not self._busy())
        self.stop_button.setEnabled(running and not self.run.stop_requested)
        self.attach_button.setEnabled(not running)
        self.attach_button.setText("Detach" if self.feed is not None else "Attach (read-only)")
        for widget in (self.protocol, self.station, self.time_scale):
            widget.setEnabled(not self._busy())

    # ----------------------------------------------------------------------------- run here

    def start_run(self) -> None:
        """Check again (the files may have changed), then start the engine on a worker thread."""
        if self.check() or self._busy():
            return
        scale = self.time_scale.value() or None
        self._reset_view()
        self.run = EngineRun(
            self.protocol.path(), self.station.path(), self.out_dir, time_scale=scale
        )
        self.run.start()
        self.run_label.setText(f"starting {self.protocol.path().name} …")
        self._update_buttons()

    def stop_clicked(self) -> None:
        if self.run is None or self.run.finished:
            return
        answer = QMessageBox.question(
            self,
            "Stop the run?",
            "Stop the run now? Every channel ends at its next sample with its output off; "
            "the run is closed 'stopped'.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.run.request_stop("stopped from the GUI")
            self.stop_button.setEnabled(False)
            self.run_label.setText("stopping …")

    # ------------------------------------------------------------------------------- attach

    def attach_clicked(self) -> None:
        if self.feed is not None:
            self.detach()
            return
        path = self.attach_path.path()
        if path is None:
            self.attach_label.setText("choose a run folder")
            return
        self.attach(path)

    def attach(self, path: Path | str) -> None:
        """Follow the run folder ``path`` read-only (another process may be writing it)."""
        if self.run is not None and not self.run.finished:
            raise RuntimeError("a run started here is going; stop it before attaching")
        self.detach()
        try:
            feed = AttachFeed(path, interval_s=self.attach_interval_s)
        except Exception as exc:
            self.attach_label.setText(f"cannot attach: {exc}")
            return
        self._reset_view()
        self.run = None
        self.feed = feed
        self.attach_path.edit.setText(str(feed.path))
        feed.start()
        self.run_label.setText(f"attached to {feed.path.name} (read-only)")
        self._update_buttons()

    def detach(self) -> None:
        if self.feed is not None:
            self.feed.stop()
            self.feed = None
            self.attach_label.setText("detached")
        self._update_buttons()

    # --------------------------------------------------------------------------- live view

    def _reset_view(self) -> None:
        self.model = LiveModel()
        self._drawn_version = -1
        self._events_shown = 0
        self.events_table.setRowCount(0)
        self.channel_box.clear()
        self._alarmed = False
        self.status_label.setStyleSheet("")
        self._info_key = ()
        for label in self.info_labels.values():
            label.setText("-")

    def tick(self) -> None:
        """Take what the source has queued, then redraw if anything changed."""
        keep_none_alive()
        source = self.feed or self.run
        if source is not None:
            self.model.feed_all(source.drain())
        if self.run is not None:
            self._run_progress()
        if self.feed is not None:
            self._attach_progress()
        self._update_info()
        self.redraw()

    def _run_progress(self) -> None:
        run = self.run
        if run.status == "failed":
            self.run_label.setText(f"could not run: {run.error}")
            self.problem_list.addItem(QListWidgetItem(run.error or "failed"))
            self.run = None
        elif run.finished:
            self.run_label.setText(f"run {run.status}: {run.run_path}")
        elif run.run_path is not None:
            doing = "stopping" if run.stop_requested else "running"
            self.run_label.setText(f"{doing}: {run.run_path}")
        self._update_buttons()

    def _attach_progress(self) -> None:
        feed = self.feed
        poller = feed.poller
        status = poller.status or "?"
        if status == "running" and not poller.writer_alive:
            status = "running, but no process writes it (crashed? `cellbench resume`)"
        counts = ", ".join(f"{t} {n}" for t, n in poller.offsets.items())
        text = f"{feed.path.name}: {status}; {counts}"
        if feed.error:
            text += f"\nread error: {feed.error}"
        self.attach_label.setText(text)

    def _update_info(self) -> None:
        """The Run box from run.json, re-read when the run or its status changes."""
        meta = None
        if self.feed is not None:
            meta = self.feed.poller.last_meta
            key = (str(self.feed.path), meta.status, meta.end_time)
        elif self.run is not None and self.run.run_path is not None:
            key = (str(self.run.run_path), self.run.status, self.model.status)
            if key != self._info_key:
                try:
                    meta = load_meta(self.run.run_path)
                except Exception:  # not written yet: try on the next tick
                    return
        else:
            return
        if key == self._info_key or meta is None:
            return
        self._info_key = key
        rows = dict(run_summary(meta))
        for name, label in self.info_labels.items():
            label.setText(rows.get(name, "-"))

    def redraw(self, *, force: bool = False) -> None:
        model = self.model
        if not force and model.version == self._drawn_version:
            self._update_status()
            return
        self._drawn_version = model.version
        for name in model.channels:
            if self.channel_box.findText(name) < 0:
                self.channel_box.addItem(name)
        view = model.channels.get(self.channel_box.currentText())
        self.time_plots.show_channel(view)
        self.nyquist.show_channel(view)
        self._append_events()
        self._update_status()

    def _append_events(self) -> None:
        model = self.model
        new = min(model.events_total - self._events_shown, len(model.events))
        if new <= 0:
            return
        rows = list(model.events)[-new:]
        table = self.events_table
        table.setUpdatesEnabled(False)
        for ev in rows:
            r = table.rowCount()
            table.insertRow(r)
            cells = (fmt_duration(ev.test_time_second), ev.channel or "run", ev.kind, ev.message)
            brush = ALARM_BRUSH if ev.is_alarm else None
            if brush is None and ev.severity == "warning":
                brush = WARNING_BRUSH
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if brush is not None:
                    item.setBackground(brush)
                table.setItem(r, c, item)
        excess = table.rowCount() - EVENT_ROWS
        for _ in range(max(0, excess)):
            table.removeRow(0)
        table.setUpdatesEnabled(True)
        table.scrollToBottom()
        self._events_shown = model.events_total

    def _update_status(self) -> None:
        channel = self.channel_box.currentText()
        status = self.model.status
        if self.run is not None and self.run.status == "starting":
            status = "starting"
        text = status_text(self.model.readout(channel), channel, status)
        engine = self.run.engine if self.run is not None and not self.run.finished else None
        state = engine.states.get(channel) if engine is not None else None
        if state is not None and state.step_remaining_second is not None:
            text += f" | step left {fmt_duration(state.step_remaining_second)}"
        alarmed = bool(self.model.alarm_count) or status == "aborted"
        if self.model.alarm_count:
            text += f" | {self.model.alarm_count} alarm(s)/fault(s)"
        self.status_label.setText(text)
        if alarmed != self._alarmed:  # the bar turns red with the first alarm, fault or abort
            self._alarmed = alarmed
            self.status_label.setStyleSheet(ALARM_STYLE if alarmed else "")

    # --------------------------------------------------------------------------------- close

    def closeEvent(self, event: QCloseEvent) -> None:
        """A run started here is stopped cleanly (after asking) before the window closes."""
        if self.run is not None and not self.run.finished:
            answer = QMessageBox.question(
                self,
                "Quit and stop the run?",
                "A run started here is going. Stop it (outputs off) and quit?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
            self.run.request_stop("GUI closed")
            deadline = time.monotonic() + 30.0
            while not self.run.join(0.1) and time.monotonic() < deadline:
                pass
        self.timer.stop()
        self.detach()
        event.accept()
