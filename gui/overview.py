"""Every channel of the run at a glance: state, step, V, I, T, cycle and alarms, one row each.

Double-clicking a row (or pressing Enter on it) emits :attr:`ChannelOverview.channel_chosen`,
which opens that channel's live views. Rows with an alarm are red; cells change text only
when their value changed, so 64 channels refresh in well under a millisecond.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

import cellbench.gui.qt_fixes  # noqa: F401 - before any PySide6 call
from cellbench.gui.model import LiveModel, fmt_duration, fmt_si

COLUMNS = (
    "channel",
    "state",
    "step",
    "voltage",
    "current",
    "temperature",
    "cycle",
    "alarms",
    "test time",
)
ALARM_ROW = QBrush(QColor("#f8d0d0"))


def channel_state(readout: dict[str, Any], run_status: str) -> str:
    """``charging`` / ``discharging`` / ``resting`` while the run goes, else the run's status."""
    if run_status and run_status not in ("running", "paused", "starting"):
        return run_status
    if run_status == "paused":
        return "paused"
    i = readout.get("current_ampere")
    if i is None or not math.isfinite(i):
        return run_status or "-"
    if abs(i) < 1e-9:
        return "resting"
    return "charging" if i > 0 else "discharging"


def overview_cells(readout: dict[str, Any], name: str, run_status: str) -> tuple[str, ...]:
    temp = readout.get("temperature_celsius")
    cycle = readout.get("cycle_count")
    return (
        name,
        channel_state(readout, run_status),
        readout.get("step") or "-",
        fmt_si(readout.get("voltage_volt"), "V"),
        fmt_si(readout.get("current_ampere"), "A"),
        "-" if temp is None or not math.isfinite(temp) else f"{temp:.1f} °C",
        "-" if cycle is None else str(cycle),
        str(readout.get("alarms", 0)),
        fmt_duration(readout.get("test_time_second")),
    )


class ChannelOverview(QTableWidget):
    """One row per channel; ``channel_chosen(name)`` on double click or Enter."""

    channel_chosen = Signal(str)

    def __init__(self, parent=None):
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(22)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.horizontalHeader()
        for col in range(len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.itemDoubleClicked.connect(lambda item: self._choose(item.row()))
        self.itemActivated.connect(lambda item: self._choose(item.row()))
        self._rows: dict[str, int] = {}

    def _choose(self, row: int) -> None:
        item = self.item(row, 0)
        if item is not None:
            self.channel_chosen.emit(item.text())

    def clear_rows(self) -> None:
        self.setRowCount(0)
        self._rows = {}

    def update_from(self, model: LiveModel) -> None:
        for name in model.channels:
            if name not in self._rows:
                row = self.rowCount()
                self.insertRow(row)
                self._rows[name] = row
                for col in range(len(COLUMNS)):
                    item = QTableWidgetItem("")
                    if col >= 3:
                        item.setTextAlignment(
                            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                        )
                    self.setItem(row, col, item)
            row = self._rows[name]
            readout = model.readout(name)
            cells = overview_cells(readout, name, model.status)
            alarmed = bool(readout.get("alarms"))
            for col, text in enumerate(cells):
                item = self.item(row, col)
                if item.text() != text:
                    item.setText(text)
                if alarmed and item.background() != ALARM_ROW:
                    item.setBackground(ALARM_ROW)
