"""Set-up: the station's instruments (connect/identify, status lights, ports) and the new-run form.

:class:`StationPanel` lists the instruments of a station file (name, driver, address, roles,
channel) with a status light each: grey not asked yet, blue simulated, green identified (the
identity in the tooltip), red no answer (the reason in the tooltip). *Identify* asks every real
instrument on a worker thread (bounded timeouts, never the GUI thread); *Find ports* lists the
serial ports and VISA resources of this PC. *Simulated instruments* runs a station that has a
``[simulation]`` table on simulators instead of its real addresses (a copy of the station file
with every address ``"sim"``, written under the runs folder; the original is never touched).

:class:`NewRunForm` holds everything a run needs: protocol (shown as a step table with each
problem at its line), output folder, run name, the cell (id, chemistry, area, thickness, active
mass, notes: kept in ``run.json`` through ``cellbench run --cell KEY=VALUE``) and the time scale
of simulated stations. :meth:`NewRunForm.values` and :meth:`NewRunForm.run_args` hand them to
whoever starts the logger. The last choices are remembered (QSettings); on a first start nothing
is filled in and nothing is "ready".
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

import cellbench.gui.qt_fixes  # noqa: F401 - before any PySide6 call
from cellbench.gui.protocol_table import StepRow, add_summaries, protocol_rows

PROBLEM_BRUSH = QBrush(QColor("#f8d0d0"))
LIGHTS = {"unknown": "#9e9e9e", "sim": "#1f77b4", "ok": "#2ca02c", "error": "#d62728"}
SETTINGS_KEYS = (
    "protocol",
    "station",
    "out_dir",
    "run_name",
    "cell_name",
    "chemistry",
    "area_cm2",
    "thickness_um",
    "active_mass_mg",
    "notes",
    "time_scale",
    "simulated",
)


class PathField(QWidget):
    """A path line edit with a Browse button (file or folder dialog)."""

    changed = Signal()

    def __init__(self, caption: str, start_dir: Path | None, *, folder: bool = False, filt=""):
        super().__init__()
        self.caption, self.start_dir, self.folder, self.filter = caption, start_dir, folder, filt
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("choose a folder" if folder else "choose a file")
        self.edit.editingFinished.connect(self.changed.emit)
        self.button = QPushButton("Browse…")
        self.button.clicked.connect(self.browse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.button)

    def path(self) -> Path | None:
        text = self.edit.text().strip()
        return Path(text).expanduser() if text else None

    def set_path(self, path: Path | str | None) -> None:
        self.edit.setText("" if path is None else str(path))
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


def light(state: str) -> QTableWidgetItem:
    item = QTableWidgetItem("●")
    item.setForeground(QBrush(QColor(LIGHTS[state])))
    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
    return item


def short_path(path: Path | str, keep: int = 2) -> str:
    """The last ``keep`` parts of a path (``protocols/demo.toml``), for narrow tables."""
    parts = Path(path).parts
    return str(Path(*parts[-keep:])) if len(parts) > keep else str(path)


def simulated_copy(station_path: Path, folder: Path) -> Path:
    """A copy of the station file with every instrument address ``"sim"``, in ``folder``.

    Relative paths of the ``[simulation]`` table (the simulated cell) are made absolute so the
    copy reads the same cell. The original file is never changed.
    """
    text = station_path.read_text(encoding="utf-8")
    base = station_path.parent.resolve()
    out_lines = []
    section = ""
    for raw in text.splitlines():
        head = re.match(r"^\s*\[\[?\s*([A-Za-z0-9_.]+)", raw)
        if head:
            section = head.group(1)
        if section == "instrument" and re.match(r"^\s*address\s*=", raw):
            raw = 'address = "sim"'
        m = re.match(r'^(\s*cell\s*=\s*")([^"]+)(".*)$', raw)
        if section == "simulation" and m and not Path(m.group(2)).is_absolute():
            raw = f"{m.group(1)}{(base / m.group(2)).resolve().as_posix()}{m.group(3)}"
        out_lines.append(raw)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{station_path.stem}-simulated.toml"
    out.write_text("\n".join(out_lines) + "\n", encoding="utf-8")
    return out


class StationPanel(QGroupBox):
    """The instruments of a station file with a status light each; identify; ports; sim switch."""

    def __init__(self, start_dir: Path | None, parent=None):
        super().__init__("Station", parent)
        toml = "TOML files (*.toml);;All files (*)"
        self.station = PathField("Station", start_dir, filt=toml)
        self.station.changed.connect(self.load)
        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["", "instrument", "driver", "address", "channel"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        for col in range(5):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setMinimumHeight(100)
        self.identify_button = QPushButton("Connect / identify")
        self.identify_button.setToolTip("ask every real instrument who it is (1 s timeout each)")
        self.identify_button.clicked.connect(self.identify)
        self.ports_button = QPushButton("Find ports")
        self.ports_button.clicked.connect(self.find_ports)
        self.simulated = QCheckBox("simulated instruments")
        self.simulated.setToolTip(
            "run this station on simulators (needs a [simulation] table in the station file)"
        )
        self.simulated.toggled.connect(lambda _: self._show_lights())
        self.ports = QListWidget()
        self.ports.setMaximumHeight(70)
        self.ports.setVisible(False)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.identify_button)
        buttons.addWidget(self.ports_button)
        buttons.addWidget(self.simulated)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.station)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.ports)
        layout.addWidget(self.message)
        self.instruments: list[dict[str, Any]] = []
        self.has_simulation = False
        self.states: dict[str, tuple[str, str]] = {}  # instrument -> (light, tooltip)
        self._results: list[tuple[str, str, str]] = []  # filled by the identify thread
        self._ports_found: list[str] | None = None
        self._lock = threading.Lock()
        self._busy = False

    def load(self) -> None:
        """Read the station file's instruments (without checking it: the form does that)."""
        import tomllib

        self.instruments, self.has_simulation = [], False
        self.states = {}
        path = self.station.path()
        if path is not None and path.is_file():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                self.message.setText(f"{path}: {exc}")
                data = {}
            else:
                self.message.setText("")
            inst = data.get("instrument", [])
            self.instruments = (
                [i for i in inst if isinstance(i, dict)] if isinstance(inst, list) else []
            )
            self.has_simulation = isinstance(data.get("simulation"), dict)
        self.simulated.setEnabled(self.has_simulation and not self.all_simulated())
        if not self.has_simulation:
            self.simulated.setChecked(False)
        self._show_lights()

    def all_simulated(self) -> bool:
        return bool(self.instruments) and all(i.get("address") == "sim" for i in self.instruments)

    def _show_lights(self) -> None:
        t = self.table
        t.setRowCount(len(self.instruments))
        for r, inst in enumerate(self.instruments):
            name = str(inst.get("name", f"#{r + 1}"))
            sim = inst.get("address") == "sim" or self.simulated.isChecked()
            state, tip = (
                ("sim", "simulated") if sim else self.states.get(name, ("unknown", "not asked yet"))
            )
            item = light(state)
            item.setToolTip(tip)
            t.setItem(r, 0, item)
            roles = ", ".join(inst.get("roles", []) or [])
            cells = (
                name,
                str(inst.get("driver", "")),
                str(inst.get("address", "")),
                str(inst.get("channel", "") or roles),
            )
            for c, text in enumerate(cells, start=1):
                cell = QTableWidgetItem(text)
                cell.setToolTip(f"{text}\nroles: {roles}" if c == 1 else text)
                t.setItem(r, c, cell)

    def identify(self) -> None:
        """Ask every real instrument who it is, on a worker thread; lights update on poll()."""
        if self._busy:
            return
        todo = [
            (str(i.get("name")), str(i.get("address")))
            for i in self.instruments
            if i.get("address") not in (None, "sim")
        ]
        if not todo or self.simulated.isChecked():
            self.message.setText("every instrument is simulated: nothing to ask")
            return
        self._busy = True
        self.identify_button.setEnabled(False)
        self.message.setText(f"asking {len(todo)} instrument(s) …")

        def work() -> None:
            from cellbench.drivers.discovery import identify

            for name, address in todo:
                try:
                    r = identify(address, timeout_s=1.0)
                    out = ("ok", r.identity) if r.ok else ("error", r.error)
                except Exception as exc:  # a driver bug must not kill the thread
                    out = ("error", f"{type(exc).__name__}: {exc}")
                with self._lock:
                    self._results.append((name, *out))
            with self._lock:
                self._results.append(("", "done", ""))

        threading.Thread(target=work, name="cellbench-identify", daemon=True).start()

    def find_ports(self) -> None:
        if self._busy:
            return
        self._busy = True
        self.ports_button.setEnabled(False)
        self.message.setText("looking for serial ports and VISA resources …")

        def work() -> None:
            from cellbench.drivers.discovery import list_serial_ports, list_visa_resources

            found = []
            try:
                for p in list_serial_ports():
                    found.append(f"{p.address}  {', '.join(p.by_id) or p.description}")
                visa, note = list_visa_resources(2.0)
                found += [f"{p.address}  (VISA)" for p in visa]
                if note:
                    found.append(f"note: {note}")
            except Exception as exc:
                found.append(f"error: {type(exc).__name__}: {exc}")
            with self._lock:
                self._ports_found = found

        threading.Thread(target=work, name="cellbench-ports", daemon=True).start()

    def poll(self) -> None:
        """Take what the worker threads found (called from the window's timer)."""
        with self._lock:
            results, self._results = self._results, []
            ports, self._ports_found = self._ports_found, None
        changed = False
        for name, state, tip in results:
            if name == "" and state == "done":
                self._busy = False
                self.identify_button.setEnabled(True)
                bad = sum(1 for s, _ in self.states.values() if s == "error")
                self.message.setText(
                    f"{bad} instrument(s) did not answer" if bad else "all answered"
                )
                continue
            self.states[name] = (state, tip)
            changed = True
        if changed:
            self._show_lights()
        if ports is not None:
            self._busy = False
            self.ports_button.setEnabled(True)
            self.ports.clear()
            self.ports.addItems(ports or ["no serial ports or VISA resources found"])
            self.ports.setVisible(True)
            self.message.setText(f"{len(ports)} port(s)")


class NewRunForm(QGroupBox):
    """Protocol (step table with problems), output, run name, cell details; remembered."""

    def __init__(self, start_dir: Path | None, out_dir: Path, parent=None):
        super().__init__("New run", parent)
        toml = "TOML files (*.toml);;All files (*)"
        self.protocol = PathField("Protocol", start_dir, filt=toml)
        self.steps = QTableWidget(0, 3)
        self.steps.setHorizontalHeaderLabels(["line", "step", "what it does / problem"])
        self.steps.verticalHeader().setVisible(False)
        self.steps.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.steps.setWordWrap(True)
        self.steps.setMinimumHeight(150)
        header = self.steps.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.out = PathField("Runs folder", out_dir, folder=True)
        self.out.set_path(out_dir)
        self.run_name = QLineEdit()
        self.run_name.setPlaceholderText("default: <UTC time>-<protocol>")
        self.cell_name = QLineEdit()
        self.cell_name.setPlaceholderText("e.g. A7-LLZO-0412")
        self.chemistry = QLineEdit()
        self.chemistry.setPlaceholderText("e.g. Li | LLZO | NMC811")
        self.area = self._number(" cm²", 4, 0.0, 1e4)
        self.thickness = self._number(" µm", 1, 0.0, 1e5)
        self.mass = self._number(" mg", 3, 0.0, 1e6)
        self.notes = QPlainTextEdit()
        self.notes.setPlaceholderText("anything the next person should know")
        self.notes.setMaximumHeight(48)
        self.time_scale = QDoubleSpinBox()
        self.time_scale.setRange(0.0, 1e6)
        self.time_scale.setDecimals(0)
        self.time_scale.setSpecialValueText("station's")
        self.time_scale.setToolTip("simulated stations only: simulated seconds per wall second")
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("runs folder", self.out)
        form.addRow("run name", self.run_name)
        form.addRow("cell id", self.cell_name)
        form.addRow("chemistry", self.chemistry)
        sizes = QHBoxLayout()
        for label, box in (
            ("area", self.area),
            ("thickness", self.thickness),
            ("active mass", self.mass),
        ):
            sizes.addWidget(QLabel(label))
            sizes.addWidget(box, 1)
        form.addRow("cell", sizes)
        form.addRow("notes", self.notes)
        form.addRow("time scale", self.time_scale)
        layout = QVBoxLayout(self)
        layout.addWidget(self.protocol)
        layout.addWidget(self.steps, 1)
        layout.addLayout(form)
        self.rows: list[StepRow] = []

    @staticmethod
    def _number(suffix: str, decimals: int, lo: float, hi: float) -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setRange(lo, hi)
        box.setDecimals(decimals)
        box.setSuffix(suffix)
        box.setSpecialValueText("from station")  # 0: keep the station's value
        return box

    # ------------------------------------------------------------------------------ steps

    def show_steps(self, problems: list[str], station: Path | None = None) -> None:
        """The protocol's step table with ``problems`` at their lines (red rows); the steps'
        currents resolved with ``station``'s cell (C-rates, current densities) when given."""
        path = self.protocol.path()
        self.steps.setRowCount(0)
        if path is None:
            self.rows = []
            return
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            text = ""
            problems = [*problems, f"{path}: {exc.strerror or exc}"]
        self.rows = protocol_rows(text, problems, path)
        if not problems:
            add_summaries(self.rows, _summaries(path, station))
        for row in self.rows:
            if row.line == 0 and not row.problems and not row.text:
                continue
            r = self.steps.rowCount()
            self.steps.insertRow(r)
            what = " | ".join(row.problems) if row.problems else row.text
            title = ("    " * row.depth) + row.title + (f" ({row.kind})" if row.kind else "")
            cells = (str(row.line) if row.line else "", title, what)
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(
                    "\n".join(row.problems) + ("\n\n" if row.problems else "") + row.text
                )
                if row.problems:
                    item.setBackground(PROBLEM_BRUSH)
                self.steps.setItem(r, c, item)
        self.steps.resizeRowsToContents()

    # ------------------------------------------------------------------------------ values

    def cell_overrides(self) -> dict[str, Any]:
        """This run's cell on top of the station's (only what was filled in), run.json units."""
        out: dict[str, Any] = {}
        if self.cell_name.text().strip():
            out["name"] = self.cell_name.text().strip()
        if self.chemistry.text().strip():
            out["chemistry"] = self.chemistry.text().strip()
        if self.area.value() > 0:
            out["area_cm2"] = self.area.value()
        if self.thickness.value() > 0:
            out["thickness_cm"] = self.thickness.value() * 1e-4
        if self.mass.value() > 0:
            out["active_mass_g"] = self.mass.value() * 1e-3
        if self.notes.toPlainText().strip():
            out["notes"] = self.notes.toPlainText().strip()
        return out

    def values(self) -> dict[str, Any]:
        """Everything the form holds (paths as Path or None)."""
        return {
            "protocol": self.protocol.path(),
            "out_dir": self.out.path(),
            "run_name": self.run_name.text().strip() or None,
            "cell": self.cell_overrides(),
            "time_scale": self.time_scale.value() or None,
        }

    def run_args(self, station: Path) -> list[str]:
        """``cellbench run`` arguments for this form and ``station``."""
        v = self.values()
        args = [str(v["protocol"]), "--station", str(station), "--out", str(v["out_dir"] or "runs")]
        if v["run_name"]:
            args += ["--name", v["run_name"]]
        for key, value in v["cell"].items():
            args += ["--cell", f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"]
        if v["time_scale"]:
            args += ["--time-scale", f"{v['time_scale']:g}"]
        return args

    # ------------------------------------------------------------------------------ memory

    def save(self, settings: QSettings, station: StationPanel) -> None:
        """Remember the choices (called when a run starts)."""
        v = {
            "protocol": str(self.protocol.path() or ""),
            "station": str(station.station.path() or ""),
            "out_dir": str(self.out.path() or ""),
            "run_name": self.run_name.text(),
            "cell_name": self.cell_name.text(),
            "chemistry": self.chemistry.text(),
            "area_cm2": self.area.value(),
            "thickness_um": self.thickness.value(),
            "active_mass_mg": self.mass.value(),
            "notes": self.notes.toPlainText(),
            "time_scale": self.time_scale.value(),
            "simulated": station.simulated.isChecked(),
        }
        settings.beginGroup("new_run")
        for key, value in v.items():
            settings.setValue(key, value)
        settings.endGroup()
        settings.sync()

    def restore(self, settings: QSettings, station: StationPanel) -> bool:
        """Fill in the last choices; False when there are none (a first start)."""
        settings.beginGroup("new_run")
        try:
            if not settings.contains("protocol"):
                return False

            def num(key: str) -> float:
                try:
                    return float(settings.value(key, 0.0))
                except (TypeError, ValueError):
                    return 0.0

            self.run_name.setText(str(settings.value("run_name", "")))
            self.cell_name.setText(str(settings.value("cell_name", "")))
            self.chemistry.setText(str(settings.value("chemistry", "")))
            self.area.setValue(num("area_cm2"))
            self.thickness.setValue(num("thickness_um"))
            self.mass.setValue(num("active_mass_mg"))
            self.notes.setPlainText(str(settings.value("notes", "")))
            self.time_scale.setValue(num("time_scale"))
            if settings.value("out_dir"):
                self.out.set_path(str(settings.value("out_dir")))
            if settings.value("station"):
                station.station.set_path(str(settings.value("station")))
            station.simulated.setChecked(str(settings.value("simulated", "false")) == "true")
            if settings.value("protocol"):
                self.protocol.set_path(str(settings.value("protocol")))
            return True
        finally:
            settings.endGroup()


def _summaries(path: Path, station: Path | None = None) -> dict[int, str]:
    """Each step's one-line summary by its header line, when the protocol loads (with the
    station's cell when given)."""
    try:
        from cellbench.daq.protocol import load_protocol
        from cellbench.daq.station import load_station

        cell = load_station(station).cell if station is not None else None
        protocol = load_protocol(path, cell=cell)
    except Exception:  # needs the station's cell, or is broken: the written keys stay
        return {}
    return {step.line: step.summary() for step, _ in protocol.walk() if step.line}
