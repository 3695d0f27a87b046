"""One channel's live views, as tabs: time plots, cycle views, impedance.

:class:`ChannelLiveView` holds every view of the channel chosen in the overview:

- *Time*: V, I, T and p against test time with a crosshair readout; *View all* follows the whole
  run again after a zoom or pan;
- *Cycles*: V against capacity by cycle (overlaid, coloured by cycle), capacity and Coulombic
  efficiency against cycle, dQ/dV of the cycle chosen;
- *Impedance*: Nyquist and Bode of the sweeps chosen in the sweep list (any of them; the newest
  is chosen as it arrives while the list follows).

Only the visible tab is redrawn, so 64 streaming channels cost one channel's drawing.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

import cellbench.gui.qt_fixes  # noqa: F401 - before any PySide6 call
from cellbench.gui.cycle_plots import CapacityVoltagePlot, CycleSummaryPlot, DqdvPlot
from cellbench.gui.eis_plots import BodePlot, NyquistPlot, sweep_name
from cellbench.gui.model import ChannelView
from cellbench.gui.plots import TimePlots


class ChannelLiveView(QWidget):
    """The live views of one channel (see the module docstring)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.view: ChannelView | None = None
        self.title = QLabel("no channel")
        self.title.setStyleSheet("font-weight: bold;")
        self.view_all_button = QPushButton("View all")
        self.view_all_button.setToolTip("show the whole run again and follow new data")
        self.view_all_button.clicked.connect(self.view_all)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.title, 1)
        top.addWidget(self.view_all_button)

        self.tabs = QTabWidget()
        self.time_plots = TimePlots()
        self.tabs.addTab(self.time_plots, "Time")

        self.vq = CapacityVoltagePlot()
        self.summary = CycleSummaryPlot()
        self.dqdv = DqdvPlot()
        self.cycle_box = QComboBox()
        self.cycle_box.setMinimumContentsLength(6)
        self.cycle_box.currentIndexChanged.connect(lambda _: self.refresh())
        dq = QWidget()
        dq_layout = QVBoxLayout(dq)
        dq_layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("dQ/dV of cycle"))
        row.addWidget(self.cycle_box)
        row.addStretch(1)
        dq_layout.addLayout(row)
        dq_layout.addWidget(self.dqdv, 1)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.summary)
        right.addWidget(dq)
        cycles = QSplitter(Qt.Orientation.Horizontal)
        cycles.addWidget(self.vq)
        cycles.addWidget(right)
        cycles.setSizes([500, 400])
        self.tabs.addTab(cycles, "Cycles")

        self.sweep_list = QListWidget()
        self.sweep_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.sweep_list.itemSelectionChanged.connect(self._sweeps_chosen)
        self.sweep_list.setMaximumWidth(220)
        self.sweep_list.setMinimumWidth(120)
        self.follow_sweeps = True  # choose the newest sweep as it arrives
        self.nyquist = NyquistPlot()
        self.bode = BodePlot()
        eis = QSplitter(Qt.Orientation.Horizontal)
        sweeps = QWidget()
        sweeps.setMaximumWidth(230)
        sweeps_layout = QVBoxLayout(sweeps)
        sweeps_layout.setContentsMargins(0, 0, 0, 0)
        sweeps_layout.addWidget(QLabel("sweeps (Ctrl/Shift: several)"))
        sweeps_layout.addWidget(self.sweep_list, 1)
        eis.addWidget(sweeps)
        eis.addWidget(self.nyquist)
        eis.addWidget(self.bode)
        eis.setSizes([150, 450, 350])
        self.tabs.addTab(eis, "Impedance")
        self.tabs.currentChanged.connect(lambda _: self.refresh())

        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.tabs, 1)
        self._updating_list = False

    def show_channel(self, view: ChannelView | None) -> None:
        """Show ``view`` (a different channel starts following its newest data again)."""
        if view is not self.view:
            self.view = view
            self.title.setText(view.name if view is not None else "no channel")
            self.sweep_list.clear()
            self.cycle_box.clear()
            self.follow_sweeps = True
            self.time_plots.show_channel(view)
        self.refresh()

    def view_all(self) -> None:
        self.time_plots.view_all()
        for plot in (self.vq, self.nyquist):
            plot.getPlotItem().enableAutoRange()
        self.follow_sweeps = True
        self.refresh()

    def refresh(self) -> None:
        """Redraw the visible tab (and keep the sweep and cycle lists current)."""
        view = self.view
        self._update_lists()
        tab = self.tabs.currentIndex()
        if tab == 0:
            self.time_plots.show_channel(view)
        elif tab == 1:
            tracker = view.cycles if view is not None else None
            self.vq.show_cycles(tracker)
            self.summary.show_cycles(tracker)
            self.dqdv.show_cycle(tracker, self.cycle_box.currentData())
        else:
            chosen = self.chosen_sweeps()
            self.nyquist.show_sweeps(chosen)
            self.bode.show_sweeps(chosen)

    def chosen_sweeps(self) -> list:
        if self.view is None:
            return []
        picked = {item.data(Qt.ItemDataRole.UserRole) for item in self.sweep_list.selectedItems()}
        return [s for s in self.view.sweeps if s.sweep_index in picked]

    def select_sweeps(self, indices) -> None:
        """Choose sweeps by index (stops following the newest)."""
        wanted = set(indices)
        self.follow_sweeps = False
        self._updating_list = True
        for row in range(self.sweep_list.count()):
            item = self.sweep_list.item(row)
            item.setSelected(item.data(Qt.ItemDataRole.UserRole) in wanted)
        self._updating_list = False
        self.refresh()

    def _sweeps_chosen(self) -> None:
        if self._updating_list:
            return
        newest = self.sweep_list.count() - 1
        selected = [self.sweep_list.row(i) for i in self.sweep_list.selectedItems()]
        self.follow_sweeps = newest in selected and len(selected) == 1
        self.refresh()

    def _update_lists(self) -> None:
        view = self.view
        if view is None:
            return
        sweeps = list(view.sweeps)
        lst = self.sweep_list
        if lst.count() > len(sweeps) or (
            lst.count() and lst.item(0).data(Qt.ItemDataRole.UserRole) != sweeps[0].sweep_index
        ):
            lst.clear()  # the oldest sweeps rolled out of the model
        self._updating_list = True
        for sweep in sweeps[lst.count() :]:
            item = QListWidgetItem(sweep_name(sweep))
            item.setData(Qt.ItemDataRole.UserRole, sweep.sweep_index)
            lst.addItem(item)
        if sweeps and self.follow_sweeps:
            last = lst.item(lst.count() - 1)
            if not last.isSelected() or len(lst.selectedItems()) != 1:
                lst.clearSelection()
                last.setSelected(True)
                lst.scrollToBottom()
        self._updating_list = False
        cycles = view.cycles.cycles()
        box = self.cycle_box
        if box.count() != len(cycles):
            following = box.currentIndex() in (-1, box.count() - 1)
            box.blockSignals(True)
            current = box.currentData()
            box.clear()
            for c in cycles:
                box.addItem(str(c), c)
            index = box.findData(current)
            box.setCurrentIndex(box.count() - 1 if following or index < 0 else index)
            box.blockSignals(False)
