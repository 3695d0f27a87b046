"""Alarms the technician cannot miss: a banner until acknowledged, the list, sound, notification.

:class:`AlarmBanner` appears with the first unacknowledged alarm or fault and stays (however
many ticks pass, whatever tab is shown) until *Acknowledge* is pressed; a later alarm brings it
back. :class:`AlarmList` lists every alarm and fault with its time, channel and message (values
in their units). On each new alarm the window may beep (:attr:`AlarmBanner.sound`) and show a
desktop notification through the system tray when one exists.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSystemTrayIcon,
    QTableWidget,
    QTableWidgetItem,
)

import cellbench.gui.qt_fixes  # noqa: F401 - before any PySide6 call
from cellbench.gui.model import LiveModel, fmt_duration

BANNER_STYLE = (
    "QFrame#alarmBanner { background: #d62728; border-radius: 3px; }"
    "QFrame#alarmBanner QLabel { color: white; font-weight: bold; }"
    "QFrame#alarmBanner QCheckBox { color: white; }"
)


class AlarmBanner(QFrame):
    """Red bar with the newest alarm until acknowledged; ``acknowledged`` when pressed."""

    acknowledged = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("alarmBanner")
        self.setStyleSheet(BANNER_STYLE)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.button = QPushButton("Acknowledge")
        self.button.clicked.connect(self.acknowledged.emit)
        self.sound_box = QCheckBox("sound")
        self.sound_box.setToolTip("beep on every new alarm")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.sound_box)
        layout.addWidget(self.button)
        self.setVisible(False)
        self._seen = 0  # alarms already announced
        self.tray: QSystemTrayIcon | None = None
        self.notifications: list[str] = []  # what was announced (tests and the log read this)

    @property
    def sound(self) -> bool:
        return self.sound_box.isChecked()

    def update_from(self, model: LiveModel) -> None:
        new = model.alarm_count - self._seen
        if new > 0:
            self._seen = model.alarm_count
            newest = model.alarms[-1] if model.alarms else None
            text = newest.message if newest else "alarm"
            where = f"{newest.channel}: " if newest and newest.channel else ""
            self._announce(f"{where}{text}")
        pending = model.unacknowledged
        if pending > 0:
            newest = model.alarms[-1] if model.alarms else None
            when = fmt_duration(newest.test_time_second) if newest else "-"
            where = f"{newest.channel}: " if newest and newest.channel else ""
            more = f"  (+{pending - 1} more)" if pending > 1 else ""
            self.label.setText(f"ALARM at {when}  {where}{newest.message if newest else ''}{more}")
        if self.isVisible() != (pending > 0):
            self.setVisible(pending > 0)

    def reset(self) -> None:
        self._seen = 0
        self.setVisible(False)

    def _announce(self, text: str) -> None:
        self.notifications.append(text)
        if self.sound:
            QApplication.beep()
        if QSystemTrayIcon.isSystemTrayAvailable():
            if self.tray is None:
                self.tray = QSystemTrayIcon(QApplication.windowIcon(), self)
                self.tray.show()
            self.tray.showMessage("cellbench alarm", text, QSystemTrayIcon.MessageIcon.Critical)


class AlarmList(QTableWidget):
    """Every alarm and fault: test time, channel, kind, message; newest last."""

    def __init__(self, parent=None):
        super().__init__(0, 4, parent)
        self.setHorizontalHeaderLabels(["test time", "channel", "kind", "message"])
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(22)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.horizontalHeader()
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        for col in range(3):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self._shown = 0

    def reset(self) -> None:
        self.setRowCount(0)
        self._shown = 0

    def update_from(self, model: LiveModel) -> None:
        new = min(model.alarm_count - self._shown, len(model.alarms))
        if new <= 0:
            return
        for ev in list(model.alarms)[-new:]:
            r = self.rowCount()
            self.insertRow(r)
            for c, text in enumerate(
                (fmt_duration(ev.test_time_second), ev.channel or "run", ev.kind, ev.message)
            ):
                self.setItem(r, c, QTableWidgetItem(text))
        self._shown = model.alarm_count
        self.scrollToBottom()
