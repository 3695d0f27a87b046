"""Screenshots of the real window for the documentation: ``python -m cellbench.gui.screenshots``.

Records what the pictures show, then grabs the window at 1024x700 and at 1920x1080:

- the demo protocol on the simulated demo station (the engine, simulators, time scale 20 000:
  about 30 s), for the live time, cycle and impedance views and the analysis tab;
- a run that trips a safety limit on the same station (a few seconds), for the alarm banner;
- an 8-channel run written by the run store while the screenshots are taken (its writer
  keeps appending), for the overview and the attach view.

Files: ``OUT/<view>-<width>x<height>.png`` for set-up, overview, live-time, cycles, eis, alarm,
analysis and attach. ``--demo RUN`` reuses a recorded demo run instead of recording one.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

SIZES = ((1024, 700), (1920, 1080))


def pump(seconds: float) -> None:
    """Let the window work (timers, the attach thread) for ``seconds``."""
    from PySide6.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def wait_for(condition, timeout_s: float = 60.0) -> None:
    from PySide6.QtWidgets import QApplication

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the window did not get there in time")
        QApplication.processEvents()
        time.sleep(0.01)


def record_demo(out: Path) -> Path:
    from cellbench.daq.session import prepare
    from cellbench.fixtures import fixtures_dir

    fx = fixtures_dir()
    session = prepare(fx / "protocols" / "demo.toml", fx / "stations" / "demo_station.toml", out,
                      time_scale=20_000)  # fmt: skip
    try:
        session.engine.start()
        session.engine.wait()
    finally:
        session.close()
    return session.engine.run_path


def record_trip(out: Path) -> Path:
    from cellbench.daq.session import prepare
    from cellbench.fixtures import fixtures_dir

    out.mkdir(parents=True, exist_ok=True)
    protocol = out / "trip.toml"
    protocol.write_text(
        'name = "formation, low-voltage cut"\nsample_interval = "1 s"\n\n[safety]\n'
        'voltage_min = "3.2 V"\ncurrent_max = "5 mA"\n\n[[step]]\ntype = "rest"\n'
        'duration = "1 h"\n'
    )
    session = prepare(protocol, fixtures_dir() / "stations" / "demo_station.toml", out,
                      time_scale=2000)  # fmt: skip
    try:
        session.engine.start()
        session.engine.wait()
    finally:
        session.close()
    return session.engine.run_path


class EightChannels:
    """An 8-channel run that a writer thread keeps appending to (a logger's view of a rack)."""

    def __init__(self, root: Path):
        import numpy as np
        import polars as pl

        from cellbench.core.schema import Cell, RunMeta
        from cellbench.daq.store import create_run

        self.np, self.pl = np, pl
        meta = RunMeta(
            run_id="rack-A-formation",
            start_time="2026-03-02T08:00:00Z",
            protocol={"name": "formation C/10, 3 cycles"},
            station={"name": "rack A"},
            cell=Cell(name="A1-A8", chemistry="Li | LPSCl | NMC811", area_cm2=0.785),
        )
        self.writer = create_run(root, meta)
        self.tick = 0
        self.writer.event("run_start", "run started", test_time_second=0.0)
        for k in range(8):
            self.writer.event("step_start", "step 1 cc 0.2 mA until V > 4.25 V",
                              channel=f"ch{k + 1}", test_time_second=0.0)  # fmt: skip
        self.writer.event("alarm", "temperature 61.237 degC above limit 60 degC",
                          severity="alarm", channel="ch6", test_time_second=5400.0)  # fmt: skip
        self.append(2000)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rows(self, first: int, n: int):
        np, pl = self.np, self.pl
        tick = np.repeat(np.arange(first, first + n), 8)
        ch = np.tile(np.arange(8), n)
        t = tick * 5.0
        phase = (t % 36000) / 36000
        charging = phase < 0.5
        v = np.where(charging, 3.5 + 1.4 * phase, 4.2 - 1.4 * (phase - 0.5)) - 0.01 * ch
        return pl.DataFrame(
            {
                "channel": pl.Series([f"ch{k + 1}" for k in range(8)]).gather(ch),
                "test_time_second": t,
                "unix_time_second": time.time() - (first + n - tick) * 5.0,
                "voltage_volt": v,
                "current_ampere": np.where(charging, 2e-4, -2e-4) * (1 + 0.02 * ch),
                "cycle_count": (t // 36000 + 1).astype(np.int32),
                "step_count": (t // 18000 + 1).astype(np.int32),
                "step_index": np.where(charging, 1, 2).astype(np.int32),
                "temperature_celsius": 25 + 0.3 * ch + np.where(ch == 5, 36.0 * (tick == 1080), 0),
            }
        )

    def append(self, n: int) -> None:
        self.writer.append("samples", self.rows(self.tick, n))
        self.tick += n

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.append(1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.writer.close("stopped")


def shoot(window, out: Path, name: str, size: tuple[int, int]) -> Path:
    window.resize(*size)
    pump(0.4)
    window.redraw(force=True)
    pump(0.3)
    path = out / f"{name}-{size[0]}x{size[1]}.png"
    window.grab().save(str(path))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, nargs="?", default=Path("docs/screenshots"))
    parser.add_argument("--demo", type=Path, help="a recorded demo run to show (else recorded)")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from cellbench.fixtures import fixtures_dir
    from cellbench.gui.window import TABS, MainWindow

    app = QApplication.instance() or QApplication([])
    app.setStyle("Fusion")
    args.out.mkdir(parents=True, exist_ok=True)
    fx = fixtures_dir()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        demo = args.demo or record_demo(root / "runs")
        trip = record_trip(root / "trip")
        rack = EightChannels(root / "runs")
        settings = QSettings(str(root / "settings.ini"), QSettings.Format.IniFormat)
        written = []
        try:
            for size in SIZES:
                window = MainWindow(out_dir=root / "runs", refresh_ms=100,
                                    attach_interval_s=0.2, settings=settings)  # fmt: skip
                window.show()
                # set-up: a station, the demo protocol, this run's cell
                window.station.set_path(fx / "stations" / "demo_station.toml")
                window.protocol.set_path(fx / "protocols" / "demo.toml")
                form = window.form
                form.run_name.setText("A7-LLZO-demo")
                form.cell_name.setText("A7")
                form.chemistry.setText("Li | LLZO | NMC811")
                form.area.setValue(0.785)
                form.thickness.setValue(500)
                form.mass.setValue(12.5)
                form.notes.setPlainText("stack pressure 5 MPa, pellet pressed 2026-03-01")
                window.tabs.setCurrentIndex(TABS.index("Set-up"))
                written.append(shoot(window, args.out, "setup", size))

                # attach: a running 8-channel run, found under the runs folder
                window.attach(rack.writer.path)
                wait_for(lambda w=window: len(w.model.channels) == 8)
                pump(0.5)
                written.append(shoot(window, args.out, "attach", size))
                window.acknowledge_alarms()
                window.tabs.setCurrentIndex(TABS.index("Overview"))
                written.append(shoot(window, args.out, "overview", size))

                # the demo run: live time plots, cycles, impedance (several sweeps chosen)
                window.attach(demo)
                wait_for(lambda w=window: w.model.status == "completed")
                wait_for(lambda w=window: w.model.channels.get("cell1") is not None)
                pump(1.0)
                window.open_channel("cell1")
                live = window.live
                live.tabs.setCurrentIndex(0)
                written.append(shoot(window, args.out, "live-time", size))
                live.tabs.setCurrentIndex(1)
                live.cycle_box.setCurrentIndex(max(0, live.cycle_box.count() - 2))
                written.append(shoot(window, args.out, "cycles", size))
                live.tabs.setCurrentIndex(2)
                live.select_sweeps([0, 1, 2])
                written.append(shoot(window, args.out, "eis", size))

                # analysis of the demo run: fit the first sweep, automatic circuit
                window.tabs.setCurrentIndex(TABS.index("Analysis"))
                panel = window.analysis
                panel.open(demo)
                panel.sweep_list.setCurrentRow(0)
                panel.circuit_box.setCurrentText("auto")
                panel.fit_selected()
                wait_for(lambda p=panel: not p.busy, 120)
                panel.wait()
                written.append(shoot(window, args.out, "analysis", size))

                # a tripped safety limit: the banner until acknowledged, the alarm list
                window.attach(trip)
                wait_for(lambda w=window: w.banner.isVisible())
                window.tabs.setCurrentIndex(TABS.index("Alarms"))
                written.append(shoot(window, args.out, "alarm", size))
                window.detach()
                window.ask_on_close = lambda name: "leave"
                window.close()
        finally:
            rack.close()
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
