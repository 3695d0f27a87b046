"""The main window: set up and start a run, or attach to one; watch every channel; analyse.

Tabs: *Set-up* (station instruments, the new-run form, attach, the run's facts), *Overview*
(one row per channel, the events), *Channel* (the chosen channel's live views), *Alarms*, and
*Analysis* (recorded runs and vendor files). An alarm banner above the tabs stays until it is
acknowledged; the status bar shows the chosen channel's step, V, I, T and elapsed time from one
sample row, and the age of the newest data (red when stale).

Runs outlive the window: a run started here is its own ``cellbench run`` process
(:class:`~cellbench.gui.launcher.LoggerRun`), followed like a run started from a terminal — its
folder read by an :class:`AttachFeed` (read-only polling), stopped, paused and continued over
the logger's control channel. Closing or killing the window never touches it. A timer on the
GUI thread drains the feed's queue into the :class:`LiveModel` and redraws what is visible when
something arrived.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QBrush, QCloseEvent, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

import cellbench.gui.qt_fixes  # noqa: F401 - before any PySide6 call
from cellbench.daq.control import ControlError
from cellbench.daq.run_reader import load_meta
from cellbench.gui.alarms import AlarmBanner, AlarmList
from cellbench.gui.analysis_panel import AnalysisPanel
from cellbench.gui.catalog_open import ask_attach_catalog
from cellbench.gui.engine_run import check_files
from cellbench.gui.launcher import LaunchError, LoggerRun
from cellbench.gui.live_views import ChannelLiveView
from cellbench.gui.model import LiveModel, fmt_duration, run_summary, status_text
from cellbench.gui.overview import ChannelOverview
from cellbench.gui.poller import AttachFeed
from cellbench.gui.qt_fixes import keep_none_alive
from cellbench.gui.runs_panel import RunsPanel, ask_stop_or_leave
from cellbench.gui.setup_panel import NewRunForm, PathField, StationPanel, simulated_copy

__all__ = ["ALARM_BRUSH", "MainWindow", "PathField", "default_fixtures", "gui_settings"]

ALARM_BRUSH = QBrush(QColor("#f8d0d0"))
WARNING_BRUSH = QBrush(QColor("#fff2cc"))
ALARM_STYLE = "QLabel { background: #d62728; color: white; font-weight: bold; }"
STALE_STYLE = "QLabel { color: white; background: #d62728; padding: 0 4px; }"
EVENT_ROWS = 2_000  # rows kept in the events table (the model keeps more)
#: newest data older than this (s) is stale while a run goes on
STALE_AFTER_S = 60.0
TABS = ("Set-up", "Overview", "Channel", "Alarms", "Analysis")


def default_fixtures() -> Path | None:
    """The example files (cellbench.fixtures), where the file dialogs open (None if missing)."""
    from cellbench.fixtures import FixturesNotFound, fixtures_dir

    try:
        return fixtures_dir()
    except FixturesNotFound:
        return None


def gui_settings() -> QSettings:
    """Where the window remembers the last choices: ``$CELLBENCH_GUI_SETTINGS`` (an INI file)
    when set (tests, several users of one account), else the user's cellbench settings."""
    path = os.environ.get("CELLBENCH_GUI_SETTINGS")
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings("cellbench", "cellbench")


class MainWindow(QMainWindow):
    """cellbench: set up, start or attach to a run, watch every channel, alarms, analysis."""

    def __init__(
        self,
        *,
        out_dir: Path | str = "runs",
        refresh_ms: int = 250,
        attach_interval_s: float = 1.0,
        settings: QSettings | None = None,
    ):
        super().__init__()
        self.setWindowTitle("cellbench")
        self.out_dir = Path(out_dir)
        self.attach_interval_s = attach_interval_s
        self.settings = settings if settings is not None else gui_settings()
        self.model = LiveModel()
        self.run: LoggerRun | None = None
        self.feed: AttachFeed | None = None
        self.problems: list[str] = []
        self.stale_after_s = STALE_AFTER_S
        self._drawn_version = -1
        self._events_shown = 0
        self._alarmed = False
        self._catching_up = False
        fixtures = default_fixtures()

        # ---- set-up: station, new run, attach, the run's facts
        self.station_panel = StationPanel(fixtures / "stations" if fixtures else None)
        self.station = self.station_panel.station
        self.form = NewRunForm(fixtures / "protocols" if fixtures else None, self.out_dir)
        self.protocol = self.form.protocol
        self.time_scale = self.form.time_scale
        self.protocol.changed.connect(self.check)
        self.station.changed.connect(self.check)
        self.station_panel.simulated.toggled.connect(lambda _: self.check())
        self.check_label = QLabel("choose a protocol and a station file")
        self.check_label.setWordWrap(True)
        self.problem_list = QListWidget()  # every problem, one line each (also in the step table)
        self.problem_list.setMaximumHeight(90)
        self.problem_list.setVisible(False)  # shown when there are problems
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start_run)
        self.stop_button = QPushButton("Stop…")
        self.stop_button.clicked.connect(self.stop_clicked)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip(
            "hold every channel at its next safe point (between steps, or at once in a rest)"
        )
        self.pause_button.clicked.connect(self.pause_clicked)
        self.continue_button = QPushButton("Continue")
        self.continue_button.clicked.connect(self.continue_clicked)
        start_row = QHBoxLayout()
        start_row.addWidget(self.check_label, 1)
        start_row.addWidget(self.start_button)
        run_bar = self.addToolBar("Run")  # on every tab; not disabled with the set-up form
        run_bar.setObjectName("run-controls")
        run_bar.setMovable(False)
        for button in (self.pause_button, self.continue_button, self.stop_button):
            run_bar.addWidget(button)
        self.form.layout().addWidget(self.problem_list)
        self.form.layout().addLayout(start_row)

        self.attach_path = PathField("Run folder", self.out_dir, folder=True)
        self.attach_button = QPushButton("Attach (read-only)")
        self.attach_button.clicked.connect(self.attach_clicked)
        self.attach_label = QLabel("follow a run another process writes")
        self.attach_label.setWordWrap(True)
        self.attach_box = QGroupBox("Attach to a run")
        attach_layout = QVBoxLayout(self.attach_box)
        row = QHBoxLayout()
        row.addWidget(self.attach_path, 1)
        row.addWidget(self.attach_button)
        self.catalog_button = QPushButton("From catalog…")  # a run in the lab catalog
        self.catalog_button.clicked.connect(lambda: ask_attach_catalog(self))
        attach_layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.attach_label, 1)
        row.addWidget(self.catalog_button, 0, Qt.AlignmentFlag.AlignTop)
        attach_layout.addLayout(row)

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

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.station_panel, 1)
        left_layout.addWidget(self.attach_box)
        self.runs_panel = RunsPanel(self.out_dir)  # runs going on here: attach, resume, close
        self.runs_panel.attach_requested.connect(self.attach)
        left_layout.addWidget(self.runs_panel)
        setup = QSplitter(Qt.Orientation.Horizontal)
        setup.addWidget(left)
        setup.addWidget(self.form)
        setup.setStretchFactor(0, 2)
        setup.setStretchFactor(1, 3)
        setup_scroll = QScrollArea()  # a 1024x700 screen scrolls rather than clips
        setup_scroll.setWidgetResizable(True)
        setup_scroll.setWidget(setup)
        setup.setMinimumSize(900, 560)

        # ---- overview: one row per channel, the events
        self.overview = ChannelOverview()
        self.overview.channel_chosen.connect(self.open_channel)
        self.events_table = QTableWidget(0, 4)
        self.events_table.setHorizontalHeaderLabels(["test time", "channel", "kind", "message"])
        self.events_table.verticalHeader().setVisible(False)
        self.events_table.verticalHeader().setDefaultSectionSize(22)
        self.events_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.events_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.events_table.horizontalHeader()
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        for col in range(3):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        overview = QSplitter(Qt.Orientation.Vertical)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        self.run_label = QLabel("no run")
        self.run_label.setWordWrap(True)
        top_layout.addWidget(self.run_label)
        top_layout.addWidget(QLabel("double-click a channel to open its live views"))
        row = QHBoxLayout()
        row.addWidget(self.overview, 3)
        row.addWidget(self.info_box, 1)  # what the run is (run.json), beside its channels
        top_layout.addLayout(row, 1)
        overview.addWidget(top)
        overview.addWidget(self.events_table)
        overview.setSizes([350, 250])

        # ---- one channel's live views
        self.channel_box = QComboBox()
        self.channel_box.setMinimumContentsLength(8)
        self.channel_box.currentTextChanged.connect(lambda _: self.redraw(force=True))
        self.live = ChannelLiveView()
        self.time_plots = self.live.time_plots
        self.nyquist = self.live.nyquist
        channel = QWidget()
        channel_layout = QVBoxLayout(channel)
        channel_layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("channel"))
        row.addWidget(self.channel_box)
        row.addStretch(1)
        channel_layout.addLayout(row)
        channel_layout.addWidget(self.live, 1)

        # ---- alarms, analysis
        self.alarm_list = AlarmList()
        self.banner = AlarmBanner()
        self.banner.acknowledged.connect(self.acknowledge_alarms)
        self.analysis = AnalysisPanel()

        self.tabs = QTabWidget()
        for widget, name in zip(
            (setup_scroll, overview, channel, self.alarm_list, self.analysis), TABS, strict=True
        ):
            self.tabs.addTab(widget, name)
        self.tabs.currentChanged.connect(lambda _: self.redraw(force=True))
        central = QWidget()
        central_layout = QVBoxLayout(central)
        central_layout.setContentsMargins(4, 4, 4, 0)
        central_layout.addWidget(self.banner)
        central_layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

        self.status_label = QLabel(status_text({}, "", ""))
        self.age_label = QLabel("")
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.age_label)
        self.setMinimumSize(800, 560)
        self.resize(1024, 700)

        if not self.form.restore(self.settings, self.station_panel):
            self.check()  # a first start: nothing chosen, nothing ready

        self.timer = QTimer(self)
        self.timer.setInterval(refresh_ms)
        self.timer.timeout.connect(self.tick)
        self.timer.start()

    # ------------------------------------------------------------------------------ checking

    def station_path(self) -> Path | None:
        """The station file a run uses: the chosen one, or its simulated copy when switched."""
        path = self.station.path()
        if path is None or not self.station_panel.simulated.isChecked() or not path.is_file():
            return path
        return simulated_copy(path, self.out_dir / ".stations")

    def check(self) -> list[str]:
        """Check the chosen protocol and station with the real loaders; list every problem."""
        protocol, station = self.protocol.path(), self.station_path()
        self.problem_list.clear()
        if protocol is None or station is None:
            self.problems = ["choose a protocol and a station file"]
            self.check_label.setText(self.problems[0])
            self.form.show_steps([])
        else:
            self.problems = check_files(protocol, station)
            self.form.show_steps(self.problems, station)
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
        self.problem_list.setVisible(self.problem_list.count() > 0)
        self._update_buttons()
        return self.problems

    def _busy(self) -> bool:
        """Following a run that goes on (one that ended stays shown until the next start)."""
        return self.run is not None and not self.run.finished

    def _update_buttons(self) -> None:
        running = self.run is not None and not self.run.finished
        state = self.run.state if running else ""
        controllable = running and self.run.control.listening and not self.run.stop_requested
        self.start_button.setEnabled(not self.problems and not self._busy())
        self.stop_button.setEnabled(running and not self.run.stop_requested)
        self.pause_button.setEnabled(controllable and state == "running")
        self.continue_button.setEnabled(controllable and state in ("pausing", "paused"))
        following = self.feed is not None or self.run is not None
        self.attach_button.setText("Detach" if following else "Attach")
        self.attach_button.setToolTip(
            "stop following this run (it goes on)" if following else "follow this run folder"
        )
        for widget in (self.form, self.station_panel):
            widget.setEnabled(not self._busy())

    # ----------------------------------------------------------------------------- run here

    def start_run(self) -> None:
        """Check again (the files may have changed), then start the engine on a worker thread."""
        if self.check() or self._busy():
            return
        scale = self.time_scale.value() or None
        self.form.save(self.settings, self.station_panel)
        self.out_dir = self.form.out.path() or self.out_dir
        self._reset_view()
        self.detach()
        try:  # its own logger process: it outlives this window
            self.run = LoggerRun.start(
                self.protocol.path(),
                self.station_path(),
                self.out_dir,
                name=self.form.values()["run_name"],
                cell=self.form.cell_overrides(),
                time_scale=scale,
                interval_s=self.attach_interval_s,
            )
        except LaunchError as exc:
            self.run_label.setText(f"could not start: {exc}")
            self.problem_list.addItem(QListWidgetItem(str(exc)))
            return
        self.runs_panel.following = self.run.run_path
        self.runs_panel.set_out_dir(self.out_dir)
        self.attach_path.edit.setText(str(self.run.run_path))
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
            try:
                self.run.request_stop("stopped from the GUI")
            except ControlError as exc:
                self.run_label.setText(f"cannot stop: {exc}")
                return
            self.stop_button.setEnabled(False)
            self.run_label.setText("stopping …")

    def pause_clicked(self) -> None:
        """Every channel holds at its next safe point (between steps, or at once in a rest)."""
        if self.run is None or self.run.finished:
            return
        try:
            self.run.request_pause()
        except ControlError as exc:
            self.run_label.setText(f"cannot pause: {exc}")
            return
        self.pause_button.setEnabled(False)
        self.run_label.setText("pausing: each channel holds at its next safe point …")

    def continue_clicked(self) -> None:
        if self.run is None or self.run.finished:
            return
        try:
            self.run.request_continue()
        except ControlError as exc:
            self.run_label.setText(f"cannot continue: {exc}")
            return
        self.continue_button.setEnabled(False)
        self.run_label.setText("continuing …")

    # ------------------------------------------------------------------------------- attach

    def attach_clicked(self) -> None:
        if self.feed is not None or self.run is not None:
            self.detach()  # the run goes on
            return
        path = self.attach_path.path()
        if path is None:
            self.attach_label.setText("choose a run folder")
            return
        self.attach(path)

    def attach(self, path: Path | str) -> None:
        """Follow the run folder ``path`` (read-only; whoever started it): its data from the
        folder, stop/pause/continue over its logger's control channel. The run followed so
        far goes on untouched."""
        self.detach()
        try:
            run = LoggerRun.attach(path, interval_s=self.attach_interval_s)
        except Exception as exc:
            self.attach_label.setText(f"cannot attach: {exc}")
            return
        self._reset_view()
        self.run = run
        self.feed = run.feed
        self.runs_panel.following = run.run_path
        self.runs_panel.refresh()
        self.attach_path.edit.setText(str(run.run_path))
        self.run_label.setText(f"attached to {run.run_path.name}")
        self._update_buttons()

    def detach(self) -> None:
        """Stop following the run (it goes on)."""
        if self.run is not None:
            self.run.detach()
            self.run = None
        if self.feed is not None:
            self.feed.stop()
            self.feed = None
            self.attach_label.setText("detached")
        self.runs_panel.following = None
        self._update_buttons()

    # --------------------------------------------------------------------------- live view

    def _reset_view(self) -> None:
        self.model = LiveModel()
        self._drawn_version = -1
        self._events_shown = 0
        self.events_table.setRowCount(0)
        self.channel_box.clear()
        self.overview.clear_rows()
        self.alarm_list.reset()
        self.banner.reset()
        self.live.show_channel(None)
        self._alarmed = False
        self.status_label.setStyleSheet("")
        self.age_label.setText("")
        self.age_label.setStyleSheet("")
        self._info_key = ()
        for label in self.info_labels.values():
            label.setText("-")

    def open_channel(self, name: str) -> None:
        """Show ``name``'s live views (from the overview)."""
        index = self.channel_box.findText(name)
        if index >= 0:
            self.channel_box.setCurrentIndex(index)
        self.tabs.setCurrentIndex(TABS.index("Channel"))
        self.redraw(force=True)

    def acknowledge_alarms(self) -> None:
        """The banner goes until the next alarm; the alarm list keeps every one."""
        self.model.acknowledge()
        self.banner.update_from(self.model)

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
        feed = self.feed
        if feed is not None and not feed.poller.caught_up and not self._catching_up:
            self._catching_up = True  # a long run's history: the next chunk as soon as it is read
            QTimer.singleShot(20, self._catch_up)

    def _catch_up(self) -> None:
        self._catching_up = False
        self.tick()

    def _run_progress(self) -> None:
        run = self.run
        run.update()
        if self.feed is None and run.feed is not None:  # the logger has made its folder
            self.feed = run.feed
        if run.status == "failed":
            self.run_label.setText(f"could not run: {run.error}")
            for line in (run.error or "failed").splitlines()[-3:]:
                self.problem_list.addItem(QListWidgetItem(line))
            run.detach()
            self.run = None
        elif run.finished:
            self.run_label.setText(f"run {run.status}: {run.run_path}")
        else:
            state = "stopping" if run.stop_requested else run.state
            text = f"{state}: {run.run_path}"
            if run.uncontrollable:  # written by a logger we cannot reach: say why
                text += f"\nno control: {run.control.error}"
            if text != self.run_label.text():
                self.run_label.setText(text)
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
        """Bring what is visible up to date with the model (only when something changed)."""
        model = self.model
        self.station_panel.poll()
        self.banner.update_from(model)
        if not force and model.version == self._drawn_version:
            self._update_status()
            return
        self._drawn_version = model.version
        for name in model.channels:
            if self.channel_box.findText(name) < 0:
                self.channel_box.addItem(name)
        tab = TABS[self.tabs.currentIndex()]
        if tab == "Overview":
            self.overview.update_from(model)
        elif tab == "Channel":
            self.live.show_channel(model.channels.get(self.channel_box.currentText()))
        elif tab == "Alarms":
            self.alarm_list.update_from(model)
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

    def _snapshot(self, channel: str) -> dict:
        """Step, V, I, T, test time and step time left of ``channel`` from one moment: the
        engine's channel state when the run is in this process, else the newest sample row."""
        readout = self.model.readout(channel)
        running = self.run is not None and not self.run.finished
        state = self.run.control.channel(channel) if running else {}
        if not state or not state.get("samples"):
            return readout

        def number(key: str) -> float:
            value = state.get(key)
            return float("nan") if value is None else float(value)

        snap = {  # one status reply of the logger: one moment (T and p too, never the row's)
            "step": state.get("step_label") or readout.get("step"),
            "cycle_count": state.get("cycle_count"),
            "voltage_volt": number("voltage_volt"),
            "current_ampere": number("current_ampere"),
            "temperature_celsius": number("temperature_celsius"),
            "pressure_megapascal": number("pressure_megapascal"),
            "test_time_second": number("test_time_second"),
            "step_remaining_second": state.get("step_remaining_second"),
        }
        return {**readout, **snap}

    def _update_status(self) -> None:
        channel = self.channel_box.currentText()
        status = self.model.status
        if self.run is not None and self.run.state in ("starting", "pausing", "paused", "crashed"):
            status = self.run.state
        snap = self._snapshot(channel)
        text = status_text(snap, channel, status)
        left = snap.get("step_remaining_second")
        if left is not None:
            text += f" | step left {fmt_duration(left)}"
        alarmed = bool(self.model.alarm_count) or status == "aborted"
        if self.model.alarm_count:
            text += f" | {self.model.alarm_count} alarm(s)/fault(s)"
        if text != self.status_label.text():
            self.status_label.setText(text)
        if alarmed != self._alarmed:  # the bar turns red with the first alarm, fault or abort
            self._alarmed = alarmed
            self.status_label.setStyleSheet(ALARM_STYLE if alarmed else "")
        self._update_age(status)

    def _update_age(self, status: str) -> None:
        """Age of the newest data; red when a running run has sent nothing for too long."""
        age = self.model.data_age()
        if age is None or status not in ("running", "paused", "pausing"):
            self.age_label.setText("")
            return
        stale = status == "running" and age > self.stale_after_s
        self.age_label.setText(f"newest data {fmt_duration(age)} ago")
        self.age_label.setStyleSheet(STALE_STYLE if stale else "")
        self.age_label.setToolTip(
            f"no new data for more than {self.stale_after_s:g} s: is the logger alive?"
            if stale
            else "wall-clock age of the newest sample row"
        )

    # --------------------------------------------------------------------------------- close

    def ask_on_close(self, run_name: str) -> str:
        """``stop``, ``leave`` or ``cancel`` (a dialog; tests replace it)."""
        return ask_stop_or_leave(self, run_name)

    def closeEvent(self, event: QCloseEvent) -> None:
        """Following a run that goes on: ask only whether to stop it or leave it running."""
        if self.run is not None and not self.run.finished and not self.run.stop_requested:
            answer = self.ask_on_close(self.run.run_path.name)
            if answer == "cancel":
                event.ignore()
                return
            if answer == "stop":
                try:
                    self.run.request_stop("stopped when the GUI closed")
                except ControlError as exc:
                    QMessageBox.warning(self, "Cannot stop the run", str(exc))
                    event.ignore()
                    return
        self.timer.stop()
        self.detach()
        event.accept()
