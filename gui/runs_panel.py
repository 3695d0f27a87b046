"""Runs going on (or left behind by a dead logger) in the window's runs folder, with what can be
done with each: *Attach* to a live run; *Resume* or *Close* a crashed one. Also the question
asked when the window closes while it follows a run: stop it, or leave it running.

The folder is scanned on a worker thread every few seconds (a folder of a thousand runs reads a
thousand small run.json files), never on the GUI thread.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QGuiApplication
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

import cellbench.gui.qt_fixes  # noqa: F401 - before any PySide6 call
from cellbench.gui.launcher import FoundRun, LaunchError, close_run, find_runs, resume_run

CRASHED_BRUSH = QBrush(QColor("#fde0c5"))
LIVE_BRUSH = QBrush(QColor("#d9f2d9"))


class RunsPanel(QGroupBox):
    """Live and crashed runs under ``out_dir``; emits :attr:`attach_requested` (a run folder)."""

    attach_requested = Signal(Path)

    def __init__(
        self, out_dir: Path | str, *, refresh_ms: int = 3000, parent: QWidget | None = None
    ):
        super().__init__("Runs going on", parent)
        self.out_dir = Path(out_dir)
        self.runs: list[FoundRun] = []
        self.following: Path | None = None  # the run the window follows (not offered)
        self._scanned: list[FoundRun] | None = None
        self._scanning = False
        self._busy: set[Path] = set()  # runs being resumed or closed
        self.list = QListWidget()
        self.list.setMaximumHeight(110)
        self.list.currentRowChanged.connect(lambda _: self._update_buttons())
        self.list.itemDoubleClicked.connect(lambda _: self.attach_selected())
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.attach_button = QPushButton("Attach")
        self.resume_button = QPushButton("Resume")
        self.close_button = QPushButton("Close as interrupted")
        self.attach_button.setToolTip("follow this run and control it (stop, pause, continue)")
        self.resume_button.setToolTip("cellbench resume: continue the run where its logger died")
        self.close_button.setToolTip("cellbench resume --close: keep what was recorded, end it")
        self.attach_button.clicked.connect(self.attach_selected)
        self.resume_button.clicked.connect(self.resume_selected)
        self.close_button.clicked.connect(self.close_selected)
        buttons = QHBoxLayout()
        for b in (self.attach_button, self.resume_button, self.close_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        layout.addWidget(self.message)
        self._update_buttons()
        self.timer = QTimer(self)
        self.timer.setInterval(refresh_ms)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.refresh()

    def set_out_dir(self, out_dir: Path | str) -> None:
        self.out_dir = Path(out_dir)
        self.refresh()

    # ----------------------------------------------------------------------------- listing

    def refresh(self) -> None:
        """Show the last scan; start the next one on a worker thread."""
        if self._scanned is not None:
            self._show(self._scanned)
            self._scanned = None
        if self._scanning:
            return
        self._scanning = True
        folder = self.out_dir

        def scan() -> None:
            try:
                self._scanned = find_runs(folder)
            finally:
                self._scanning = False

        threading.Thread(target=scan, name="cellbench-find-runs", daemon=True).start()

    def scan_now(self) -> list[FoundRun]:
        """Scan on this thread and show the result (tests, and after a resume/close)."""
        self._show(find_runs(self.out_dir))
        return self.runs

    def _show(self, runs: list[FoundRun]) -> None:
        following = self.following.resolve() if self.following is not None else None
        runs = [r for r in runs if not (r.live and r.path.resolve() == following)]
        if [(r.path, r.live) for r in runs] == [(r.path, r.live) for r in self.runs]:
            return
        chosen = self.selected()
        self.runs = runs
        self.list.clear()
        for run in runs:
            what = "running" if run.live else "logger died: resume or close"
            item = QListWidgetItem(f"{run.path.name}  ({what})")
            item.setData(Qt.ItemDataRole.UserRole, str(run.path))
            item.setToolTip(f"{run.path}\nprotocol: {run.protocol}\nstarted {run.start_time}")
            item.setBackground(LIVE_BRUSH if run.live else CRASHED_BRUSH)
            self.list.addItem(item)
            if chosen is not None and run.path == chosen.path:
                self.list.setCurrentItem(item)
        if runs and self.list.currentRow() < 0:
            self.list.setCurrentRow(0)
        live = sum(r.live for r in runs)
        crashed = len(runs) - live
        parts = []
        if live:
            parts.append(f"{live} run(s) going on: attach to follow and control")
        if crashed:
            parts.append(f"{crashed} run(s) whose logger died: resume or close")
        self.message.setText("; ".join(parts) or f"no run going on in {self.out_dir}")
        self._update_buttons()

    def selected(self) -> FoundRun | None:
        row = self.list.currentRow()
        return self.runs[row] if 0 <= row < len(self.runs) else None

    def select(self, path: Path | str) -> bool:
        """Select the row of run folder ``path``; False if it is not listed."""
        for row, run in enumerate(self.runs):
            if run.path.resolve() == Path(path).resolve():
                self.list.setCurrentRow(row)
                return True
        return False

    def _update_buttons(self) -> None:
        run = self.selected()
        idle = run is not None and run.path not in self._busy
        self.attach_button.setEnabled(idle and run.live)
        self.resume_button.setEnabled(idle and run.crashed)
        self.close_button.setEnabled(idle and run.crashed)

    # ----------------------------------------------------------------------------- actions

    def attach_selected(self) -> None:
        run = self.selected()
        if run is not None and run.live:
            self.attach_requested.emit(run.path)

    def resume_selected(self) -> None:
        """``cellbench resume RUN`` as a detached logger, then attach to it."""
        run = self.selected()
        if run is None or not run.crashed:
            return
        try:
            resume_run(run.path)
        except LaunchError as exc:
            self.message.setText(f"cannot resume: {exc}")
            return
        self.message.setText(f"resuming {run.path.name} (its log: logger.log in the run folder)")
        self.attach_requested.emit(run.path)

    def close_selected(self) -> None:
        """``cellbench resume RUN --close`` on a worker thread; the list updates when done."""
        run = self.selected()
        if run is None or not run.crashed:
            return
        self._busy.add(run.path)
        self._update_buttons()
        self.message.setText(f"closing {run.path.name} as interrupted …")

        def work() -> None:
            try:
                text = close_run(run.path)
            except (LaunchError, OSError) as exc:
                text = f"cannot close {run.path.name}: {exc}"
            self._closed_text = text
            self._busy.discard(run.path)

        self._closed_text = ""
        threading.Thread(target=work, name="cellbench-close-run", daemon=True).start()
        QTimer.singleShot(200, self._after_close)

    def _after_close(self) -> None:
        if self._busy:
            QTimer.singleShot(200, self._after_close)
            return
        self.scan_now()
        if self._closed_text:
            self.message.setText(self._closed_text)
        self._update_buttons()


def ask_stop_or_leave(parent: QWidget, run_name: str) -> str:
    """Closing while following a run: ``stop``, ``leave`` (it goes on) or ``cancel``.

    Without a screen (the ``offscreen`` platform: scripts, CI) nobody could answer: ``leave``
    — a run is never stopped without someone asking for it."""
    if QGuiApplication.platformName() == "offscreen":
        return "leave"
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("Stop the run or leave it running?")
    box.setText(f"The window follows the run {run_name}.")
    box.setInformativeText(
        "Leave it running: it goes on without the window (attach again any time). "
        "Stop it: every channel ends at its next sample with its output off."
    )
    leave = box.addButton("Leave running", QMessageBox.ButtonRole.AcceptRole)
    stop = box.addButton("Stop the run", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(leave)
    box.exec()
    clicked = box.clickedButton()
    if clicked is leave:
        return "leave"
    if clicked is stop:
        return "stop"
    return "cancel"
