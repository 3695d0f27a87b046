"""The window's views, offscreen (pytest-qt): live views, alarms, set-up form, analysis, export.

Runs are real run folders: written by the run store's writer (deterministic data whose every
view is known), or recorded by the engine on the simulated demo station (the safety trip).
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import polars as pl
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QMessageBox

from cellbench.core.schema import Cell, RunMeta
from cellbench.daq.store import create_run
from cellbench.gui.window import TABS, MainWindow

WAIT_S = 30.0  # generous: a loaded 2-core machine


def wait_for(condition, timeout_s: float = WAIT_S) -> None:
    """Process Qt events until ``condition()`` holds, sleeping between rounds.

    Not qtbot.waitUntil: its nested event loop can keep the GIL while idle (seen after an
    earlier test ran QApplication.exec), and the attach thread's polars scan then never ends.
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s")
        QApplication.processEvents()
        time.sleep(0.01)


def pause(seconds: float) -> None:
    end = time.monotonic() + seconds
    wait_for(lambda: time.monotonic() > end, seconds + 5)


@pytest.fixture
def settings_file(tmp_path, monkeypatch):
    path = tmp_path / "settings.ini"
    monkeypatch.setenv("CELLBENCH_GUI_SETTINGS", str(path))
    return path


@pytest.fixture
def window(qtbot, tmp_path, settings_file, monkeypatch):
    monkeypatch.setattr(
        QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes)
    )
    w = MainWindow(out_dir=tmp_path / "runs", refresh_ms=50, attach_interval_s=0.1)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.detach()


def cycling_frame(cycles: int = 3, period_s: float = 7200.0, step_s: float = 10.0):
    """CC charge/discharge at +-1 mA, V rising/falling, T and p measured, one channel."""
    t = np.arange(0.0, cycles * period_s, step_s)
    phase = (t % period_s) / period_s
    charging = phase < 0.5
    v = np.where(charging, 3.4 + 1.6 * phase, 4.2 - 1.6 * (phase - 0.5))
    return pl.DataFrame(
        {
            "channel": "cell1",
            "test_time_second": t,
            "unix_time_second": 1.7e9 + t,
            "voltage_volt": v,
            "current_ampere": np.where(charging, 1e-3, -0.97e-3),
            "cycle_count": (t // period_s + 1).astype(np.int32),
            "step_count": (t // (period_s / 2) + 1).astype(np.int32),
            "step_index": np.where(charging, 0, 1).astype(np.int32),
            "temperature_celsius": 25.0 + 0.1 * np.sin(t / 900),
            "pressure_megapascal": 5.0 + 0.01 * np.cos(t / 900),
        }
    )


def rc_spectrum(sweep: int, r0: float, r1: float, cycle: int, t0: float) -> pl.DataFrame:
    f = np.logspace(5, 0, 31)
    q, n = 2e-6, 0.85
    z = r0 + r1 / (1 + r1 * q * (2j * np.pi * f) ** n)
    return pl.DataFrame(
        {
            "channel": "cell1",
            "sweep_index": np.full(len(f), sweep, dtype=np.int32),
            "test_time_second": t0 + np.arange(len(f), dtype=float),
            "unix_time_second": 1.7e9 + t0 + np.arange(len(f), dtype=float),
            "frequency_hertz": f,
            "z_real_ohm": z.real,
            "z_imag_ohm": z.imag,
            "cycle_count": np.full(len(f), cycle, dtype=np.int32),
            "temperature_celsius": 25.0,
        }
    )


def write_run(folder: Path, name: str = "views") -> Path:
    meta = RunMeta(
        run_id=name,
        start_time="2026-01-01T00:00:00Z",
        cell=Cell(name="A7", chemistry="Li|LLZO|NMC", area_cm2=0.785, thickness_cm=0.05),
    )
    with create_run(folder, meta) as writer:
        writer.event("run_start", "run started", test_time_second=0.0)
        writer.event("step_start", "step 0 cc 1 mA", channel="cell1", test_time_second=0.0)
        writer.append("samples", cycling_frame())
        for k in range(3):
            writer.append("spectra", rc_spectrum(k, 10.0, 40.0 + 10 * k, k + 1, 7200.0 * k))
        path = writer.path
    return path


def test_attached_run_shows_data_in_every_live_view(qtbot, window, tmp_path):
    path = write_run(tmp_path)
    window.attach(path)
    wait_for(lambda: window.model.status == "completed")
    wait_for(lambda: len(window.model.channels["cell1"].sweeps) == 3)
    rows = cycling_frame().height
    wait_for(lambda: window.model.channels["cell1"].trace.rows_seen == rows)

    # the overview: one row for the channel, opening its live views
    window.tabs.setCurrentIndex(TABS.index("Overview"))
    window.redraw(force=True)
    assert window.overview.rowCount() == 1
    assert window.overview.item(0, 0).text() == "cell1"
    assert window.overview.item(0, 6).text() == "3"  # cycle
    window.overview.channel_chosen.emit("cell1")
    assert TABS[window.tabs.currentIndex()] == "Channel"

    live = window.live
    # time plots: V, I, T and p, the whole run
    live.tabs.setCurrentIndex(0)
    window.redraw(force=True)
    for column, plot in window.time_plots.plots.items():
        x, _y = window.time_plots.curves[column].getData()
        assert plot.isVisible() and x is not None and len(x) > 100, column
        assert x[0] == 0.0 and x[-1] == pytest.approx(
            cycling_frame()["test_time_second"][-1] / 3600
        )
    assert window.time_plots.unit == "h"

    # cycle views: V against capacity per half-cycle, capacity and CE per cycle, dQ/dV
    live.tabs.setCurrentIndex(1)
    window.redraw(force=True)
    assert len(live.vq.curves) == 6  # 3 cycles x (charge, discharge)
    q, v = live.vq.curves[0].getData()
    assert q[-1] == pytest.approx(1e-3, rel=0.02) and v.max() == pytest.approx(4.2, abs=0.01)
    cyc, ce = live.summary.ce.getData()
    assert list(cyc) == [1.0, 2.0, 3.0] and ce[1] == pytest.approx(97.0, abs=0.5)
    assert live.cycle_box.count() == 3
    assert len(live.dqdv.getPlotItem().listDataItems()) == 2

    # impedance: the newest sweep followed; any older one selectable; Bode too
    live.tabs.setCurrentIndex(2)
    window.redraw(force=True)
    assert live.sweep_list.count() == 3
    assert [s.sweep_index for s in live.chosen_sweeps()] == [2]
    labels = [lbl.toPlainText() for lbl in live.nyquist.labels]
    assert {"100 kHz", "1 kHz", "1 Hz"} <= set(labels), labels  # decades named on the arc
    live.select_sweeps([0, 1])
    assert [s.sweep_index for s in live.chosen_sweeps()] == [0, 1]
    assert len(live.nyquist.getPlotItem().listDataItems()) == 2
    assert len(live.bode.mag.listDataItems()) == 2
    assert live.nyquist.getPlotItem().vb.state["aspectLocked"]  # equal axes
    # the status bar: one row's step, V, I, T; no stale warning on a finished run
    assert "cycle 3" in window.status_label.text() and "°C" in window.status_label.text()


def test_zoom_is_not_fought_by_live_updates_and_view_all_brings_the_run_back(
    qtbot, window, tmp_path
):
    meta = RunMeta(run_id="live", start_time="2026-01-01T00:00:00Z")
    writer = create_run(tmp_path, meta)
    frame = cycling_frame(cycles=2)
    half = frame.height // 2
    try:
        writer.append("samples", frame.slice(0, half))
        window.attach(writer.path)
        trace = lambda: window.model.channels.get("cell1")  # noqa: E731
        wait_for(lambda: trace() is not None and trace().trace.rows_seen == half)
        window.tabs.setCurrentIndex(TABS.index("Channel"))
        window.redraw(force=True)
        plots = window.time_plots
        vb = plots.plots["voltage_volt"].vb
        unit = plots.unit_s
        lo, hi = 1800 / unit, 2700 / unit
        vb.setXRange(lo, hi, padding=0)  # the user zooms into 15 min of the run
        assert not plots.following
        pause(0.2)  # the zoomed range is fetched at full resolution
        x, _ = plots.curves["voltage_volt"].getData()
        assert x.min() >= lo - 10 / unit and x.max() <= hi + 10 / unit
        assert len(x) == pytest.approx(900 / 10, abs=3)  # every row: 10 s apart
        writer.append("samples", frame.slice(half))  # new data arrives
        wait_for(lambda: trace().trace.rows_seen == frame.height)
        window.redraw(force=True)
        scale = unit / plots.unit_s  # the axis may have gone from minutes to hours
        assert vb.viewRange()[0] == pytest.approx([lo * scale, hi * scale])  # the view stayed
        window.live.view_all_button.click()
        assert plots.following
        x, _ = plots.curves["voltage_volt"].getData()
        assert x[0] == 0.0 and x[-1] == pytest.approx(frame["test_time_second"][-1] / 3600)
    finally:
        writer.close("completed")


def test_a_tripped_safety_limit_raises_a_banner_that_stays_until_acknowledged(
    qtbot, window, tmp_path, fixtures_dir
):
    from cellbench.daq.session import prepare

    protocol = tmp_path / "trip.toml"
    protocol.write_text(
        'name = "trip"\nsample_interval = "1 s"\n\n[safety]\nvoltage_min = "3.2 V"\n'
        'current_max = "5 mA"\n\n[[step]]\ntype = "rest"\nduration = "1 h"\n'
    )
    session = prepare(
        protocol, fixtures_dir / "stations" / "demo_station.toml", tmp_path, time_scale=2000
    )
    try:
        session.engine.start()
        assert session.engine.wait() == "aborted"  # the simulated cell sits at 3.0 V
    finally:
        session.close()
    window.attach(session.engine.run_path)
    banner = window.banner
    wait_for(banner.isVisible)
    text = banner.label.text()
    assert "cell1" in text and "below limit 3.2 V" in text
    assert "e-0" not in text and "2.99999" not in text  # values in units, sensible digits
    assert banner.notifications and "safety limit" in banner.notifications[0]
    pause(0.3)  # ticks pass: the banner stays
    assert banner.isVisible()
    assert "background" in window.status_label.styleSheet()
    banner.button.click()  # acknowledge
    assert not banner.isVisible()
    pause(0.2)
    assert not banner.isVisible()  # and stays away until the next alarm
    window.tabs.setCurrentIndex(TABS.index("Alarms"))
    window.redraw(force=True)
    assert window.alarm_list.rowCount() == 1  # the list keeps it
    assert "below limit 3.2 V" in window.alarm_list.item(0, 3).text()


def test_first_start_selects_nothing_then_remembers_the_last_choices(
    qtbot, window, tmp_path, fixtures_dir, settings_file
):
    assert window.protocol.path() is None and window.station.path() is None
    assert not window.start_button.isEnabled()
    assert "choose" in window.check_label.text()
    form = window.form
    window.station.set_path(fixtures_dir / "stations" / "demo_station.toml")
    assert window.station_panel.table.rowCount() >= 2  # the station's instruments, a light each
    assert window.station_panel.table.item(0, 0).toolTip() == "simulated"
    bad = fixtures_dir / "protocols" / "bad" / "typos.toml"
    window.protocol.set_path(bad)
    assert window.problems and not window.start_button.isEnabled()
    red = [r for r in range(form.steps.rowCount()) if "duraton" in form.steps.item(r, 2).text()]
    assert red and form.steps.item(red[0], 1).text().startswith("step 1")
    window.protocol.set_path(fixtures_dir / "protocols" / "demo.toml")
    assert window.problems == [] and window.start_button.isEnabled()
    texts = [form.steps.item(r, 2).text() for r in range(form.steps.rowCount())]
    assert "temperature 25 °C ± 1 K stable 2 min (timeout 2 h)" in texts  # the step's summary
    assert sum("eis" in t.lower() for t in texts) >= 3
    form.run_name.setText("A7-first")
    form.cell_name.setText("A7")
    form.chemistry.setText("Li | LLZO | NMC811")
    form.area.setValue(0.785)
    form.thickness.setValue(500)
    form.mass.setValue(12.5)
    form.notes.setPlainText("pressed at 5 MPa")
    args = form.run_args(window.station.path())
    assert args[:2] == [str(fixtures_dir / "protocols" / "demo.toml"), "--station"]
    cells = [args[i + 1] for i, a in enumerate(args) if a == "--cell"]
    assert cells == [
        "name=A7",
        "chemistry=Li | LLZO | NMC811",
        "area_cm2=0.785",
        "thickness_cm=0.05",
        "active_mass_g=0.0125",
        "notes=pressed at 5 MPa",
    ]
    assert "--name" in args and "A7-first" in args
    form.save(window.settings, window.station_panel)
    again = MainWindow(
        out_dir=tmp_path / "runs",
        settings=QSettings(str(settings_file), QSettings.Format.IniFormat),
    )
    qtbot.addWidget(again)
    assert again.protocol.path() == fixtures_dir / "protocols" / "demo.toml"
    assert again.form.cell_overrides() == form.cell_overrides()
    assert again.problems == []


def test_the_window_fits_a_1024x700_screen(window):
    hint = window.minimumSizeHint()
    assert hint.width() <= 1024 and hint.height() <= 700, hint
    window.resize(1024, 700)
    assert window.width() <= 1024 and window.height() <= 700


def test_fit_a_spectrum_in_the_analysis_tab_and_export_svg_png_csv(qtbot, window, tmp_path):
    path = write_run(tmp_path)
    panel = window.analysis
    window.tabs.setCurrentIndex(TABS.index("Analysis"))
    assert panel.open(path)
    assert panel.sweep_list.count() == 3
    assert panel.area.value() == pytest.approx(0.785) and panel.thickness.value() == pytest.approx(
        500
    )
    panel.sweep_list.setCurrentRow(1)
    panel.circuit_box.setCurrentText("auto")
    panel.fit_button.click()
    wait_for(lambda: not panel.busy)
    panel.wait()
    res = panel.fit.result
    assert res.circuit == "R0-p(R1,CPE1)"
    assert res.values["R1"] == pytest.approx(50.0, rel=1e-3)
    table = panel.eis.table
    names = [table.item(r, 0).text() for r in range(table.rowCount())]
    assert names[:2] == ["R0", "R1"] and table.horizontalHeaderItem(2).text() == "stderr"
    assert "R0-p(R1,CPE1)" in panel.eis.result.text()
    # the fit is drawn over the data; residuals against frequency
    assert len(panel.fit_nyquist.getPlotItem().listDataItems()) == 2
    assert len(panel.residuals.getPlotItem().listDataItems()) >= 2

    svg = panel.eis.export_figures(tmp_path / "out" / "fit.svg")
    assert [p.name for p in svg] == ["fit.svg", "fit-2.svg"]
    root = ET.parse(svg[0]).getroot()
    assert root.tag.endswith("svg")
    text = svg[0].read_text()
    assert text.count("<path") + text.count("<polyline") > 20 and "Z′" in text
    png = panel.eis.export_figures(tmp_path / "out" / "fit.png")
    assert png[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from cellbench.gui.export import export_table

    csv = export_table(panel.eis.frame, tmp_path / "out" / "params.csv")
    assert pl.read_csv(csv)["parameter"].to_list()[:2] == ["R0", "R1"]

    # interface resistance against cycle from fits of every sweep
    panel.circuit_box.setCurrentText("R0-p(R1,CPE1)")
    panel.resistance_box.setCurrentText("R1")
    panel.batch_button.click()
    wait_for(lambda: panel.interface.frame is not None)
    r1 = panel.interface.frame["R1_ohm"].to_list()
    assert r1 == pytest.approx([40.0, 50.0, 60.0], rel=1e-3)


def test_fade_and_arrhenius_in_the_analysis_tab(qtbot, window, tmp_path):
    # 30 short cycles whose discharge capacity fades linearly by 0.5 % per cycle
    n_cycles, period = 30, 600.0
    t = np.arange(0.0, n_cycles * period, 5.0)
    cycle = (t // period + 1).astype(np.int32)
    phase = (t % period) / period
    charging = phase < 0.5
    fade = 1.0 - 0.005 * (cycle - 1)
    current = np.where(charging, 1e-3, -1e-3 * fade)
    current = np.where(~charging & (phase - 0.5 > 0.5 * fade), 0.0, current)  # rest once empty
    frame = pl.DataFrame(
        {
            "channel": "cell1",
            "test_time_second": t,
            "unix_time_second": 1.7e9 + t,
            "voltage_volt": np.where(charging, 3.5 + phase, 4.0 - phase),
            "current_ampere": current,
            "cycle_count": cycle,
            "step_count": (t // (period / 2) + 1).astype(np.int32),
            "step_index": np.where(charging, 0, 1).astype(np.int32),
        }
    )
    meta = RunMeta(
        run_id="fade",
        start_time="2026-01-01T00:00:00Z",
        cell=Cell(name="P1", area_cm2=1.0, thickness_cm=0.1),
    )
    with create_run(tmp_path, meta) as writer:
        writer.append("samples", frame)
        for k, temp in enumerate((25.0, 45.0, 65.0, 85.0)):  # bulk R falls with temperature
            r0 = 100.0 * np.exp(0.35 / 8.617e-5 * (1 / (temp + 273.15) - 1 / 298.15))
            writer.append("spectra", rc_spectrum(k, r0, 40.0, 1, 100.0 * k).with_columns(
                pl.lit(temp).alias("temperature_celsius")))  # fmt: skip
        path = writer.path
    panel = window.analysis
    assert panel.open(path)
    panel.fit_fade()
    wait_for(lambda: not panel.busy)
    panel.wait()
    assert "end of life (80 %) at cycle" in panel.fade.result.text()
    assert panel.fade.frame is not None and panel.fade.frame.height >= 1
    assert len(panel.fade_plot.getPlotItem().listDataItems()) == 2  # measured and the fit

    panel.circuit_box.setCurrentText("R0-p(R1,CPE1)")
    panel.bulk_box.setCurrentText("R0")
    panel.fit_arrhenius()
    wait_for(lambda: not panel.busy)
    panel.wait()
    text = panel.arr.result.text()
    assert text.startswith("Ea = "), text
    ea = float(text.split()[2])
    assert ea == pytest.approx(0.35, abs=0.01)  # the activation energy the data were made with
    assert panel.arr.frame.height == 4


def test_station_lights_identify_and_the_simulated_switch(window, tmp_path, fixtures_dir):
    # the demo bench as it stands in a lab: real addresses (nobody listens on port 9)
    text = (fixtures_dir / "stations" / "demo_station.toml").read_text()
    text = text.replace('address = "sim"', 'address = "TCPIP::127.0.0.1::9::SOCKET"')
    sim_cell = (fixtures_dir / "sim" / "sulfide_full_cell.toml").as_posix()
    text = text.replace('cell = "../sim/sulfide_full_cell.toml"', 'cell = "../sim/x.toml"')
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "x.toml").write_text(Path(sim_cell).read_text())
    (tmp_path / "lab").mkdir()
    station = tmp_path / "lab" / "bench.toml"
    station.write_text(text)
    panel = window.station_panel
    window.station.set_path(station)
    assert panel.table.rowCount() == 3
    assert panel.table.item(0, 0).toolTip() == "not asked yet"  # grey until asked
    assert panel.simulated.isEnabled()  # it has a [simulation] table
    panel.identify_button.click()
    wait_for(lambda: panel.identify_button.isEnabled() and len(panel.states) == 3)
    window.redraw()
    assert all(state == "error" for state, _ in panel.states.values())  # red: no answer
    assert "did not answer" in panel.message.text()
    panel.simulated.setChecked(True)  # the same bench on simulators
    used = window.station_path()
    assert used != station and used.name == "bench-simulated.toml"
    copy = used.read_text()
    assert copy.count('address = "sim"') == 3 and "127.0.0.1" not in copy
    assert (tmp_path / "sim" / "x.toml").as_posix() in copy  # the simulated cell still found
    assert station.read_text() == text  # the station file itself untouched
    assert panel.table.item(0, 0).toolTip() == "simulated"
    window.protocol.set_path(fixtures_dir / "protocols" / "demo.toml")
    assert window.problems == []
