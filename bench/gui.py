"""Benchmark: the window's live views on long runs and many channels, offscreen.

Three figures, each beside a reference measured in the same run:

1. **Refresh** of the time plots (V, I, T, p of one channel: ask the history for the visible
   range, ``setData``, repaint the widget) with 1e5, 1e6 and 1e7 rows in the channel's history;
   median of ``--repeat`` refreshes, whole run shown (the heaviest case), and zoomed into 1 %.
   Every size shows the same picture (40 cycles over the run, noise, spikes), so the figure
   tells how the cost grows with the number of rows, not with how much ink the curves need.
   Reference: what the window did before (every row held handed to pyqtgraph, which clips to the
   view and downsamples per pixel with its peak mode), at the same sizes.
2. **Attach** to a closed run of ``--attach-rows`` rows (10 M by default, one channel, 1 s
   sampling: 116 days): wall time from ``attach()`` until the model's history counts every row
   and the time plots span the whole run (first to last row), the window's event loop running
   as usual — the older rows come as the store's per-segment min/max summaries, only the recent
   window as rows; then until the cycle views hold every cycle too (built on the poller thread
   from every row), and the same attach once the summaries are deleted (a run written before
   them: computed from the rows). Reference: reading the same rows into one polars frame
   (``RunReader.read``).
3. **Event-loop stall** while 64 channels stream: a writer thread appends 64 channels x 10 Hz
   to a run folder every 0.25 s (as the logger's recorder does), the window attached to it with
   its default timings, the overview tab and then a channel's time plots shown; a 5 ms timer
   records how late it fires. Longest and p99 stall. Reference: the same timer with no window.

Run:  python bench/gui.py                       (about 3-4 min: the 10 M-row run is written)
      python bench/gui.py --attach-rows 1000000 --stream-seconds 10   (quick)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import polars as pl
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from cellbench.core.schema import RunMeta
from cellbench.daq.run_reader import open_run
from cellbench.daq.store import create_run
from cellbench.daq.summaries import SUMMARY_GLOB
from cellbench.gui.history import HISTORY_COLUMNS
from cellbench.gui.model import LiveModel
from cellbench.gui.plots import TimePlots

CHANNELS = 64


def columns(n: int, seed: int = 0, cycles: int | None = 40) -> np.ndarray:
    """(5, n): 1 s sampling, noise, a few one-sample spikes; ``cycles`` charge/discharge cycles
    over the run (the same picture at every size: what is timed is the size, not the content),
    or 2 h cycles when None."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    period = n / cycles if cycles else 7200.0
    phase = (t % period) / period
    v = np.where(phase < 0.5, 3.4 + 1.6 * phase, 4.2 - 1.6 * (phase - 0.5))
    v += rng.normal(0, 2e-4, n)
    i = np.where(phase < 0.5, 1e-3, -1e-3) + rng.normal(0, 1e-7, n)
    temp = 25 + rng.normal(0, 0.02, n)
    p = 5 + rng.normal(0, 0.001, n)
    spikes = rng.choice(n, 10, replace=False)
    temp[spikes] = 70.0
    return np.vstack([t, v, i, temp, p])


def pump(app: QApplication, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.002)


# ------------------------------------------------------------------------------------ refresh


def refresh_times(app: QApplication, n: int, repeat: int) -> dict[str, float]:
    """Median ms of a refresh with ``n`` rows: history whole run, zoomed, and the reference."""
    model = LiveModel()
    view = model.channel("cell1")
    cols = columns(n)
    for start in range(0, n, 1_000_000):
        view.trace.append(cols[:, start : start + 1_000_000])
    plots = TimePlots()
    plots.resize(1600, 900)
    plots.show()
    pump(app, 0.2)
    plots.show_channel(view)

    def timed(action) -> float:
        out = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            action()
            plots.viewport().repaint()
            out.append(1e3 * (time.perf_counter() - t0))
        return statistics.median(out)

    whole = timed(plots.refresh)
    unit = plots.unit_s
    plots.plots["voltage_volt"].setXRange(0.5 * n / unit, 0.51 * n / unit, padding=0)
    pump(app, 0.1)
    zoomed = timed(plots.refresh)
    plots.close()

    # reference: every row to pyqtgraph (clip to view + peak downsampling), as before
    ref = pg.GraphicsLayoutWidget()
    ref.resize(1600, 900)
    curves = []
    for row in range(4):
        plot = ref.addPlot(row=row, col=0)
        plot.setClipToView(True)
        plot.setDownsampling(auto=True, mode="peak")
        curves.append(plot.plot([], []))
    ref.show()
    pump(app, 0.2)
    x = cols[0] / 86400

    def ref_refresh() -> None:
        for k, curve in enumerate(curves):
            curve.setData(x, cols[k + 1])

    reference = timed(ref_refresh)
    ref.close()
    return {"whole": whole, "zoomed": zoomed, "reference": reference}


# ------------------------------------------------------------------------------------ attach


def write_long_run(root: Path, n: int) -> Path:
    meta = RunMeta(run_id="long", start_time="2026-01-01T00:00:00Z")
    cols = columns(n, seed=1, cycles=None)
    with create_run(root, meta, seal_interval_s=1e9) as writer:
        for start in range(0, n, 500_000):
            part = cols[:, start : start + 500_000]
            m = part.shape[1]
            writer.append(
                "samples",
                pl.DataFrame(
                    {
                        "channel": ["cell1"] * m,
                        "test_time_second": part[0],
                        "unix_time_second": 1.767e9 + part[0],
                        "voltage_volt": part[1],
                        "current_ampere": part[2],
                        "cycle_count": (part[0] // 7200 + 1).astype(np.int32),
                        "step_count": (part[0] // 3600 + 1).astype(np.int32),
                        "step_index": ((part[0] // 3600) % 2).astype(np.int32),
                        "temperature_celsius": part[3],
                        "pressure_megapascal": part[4],
                    }
                ),
            )
        path = writer.path
    return path


def attach_time(
    app: QApplication, path: Path, n: int
) -> tuple[float, float, float, list[float], list[float]]:
    """(s until the model spans every row and the whole span is drawn, s until the cycle views
    hold every cycle too, s for polars to read the rows, how late (ms) a 5 ms timer fired until
    the span was drawn — the first paint of the channel's views and this bench's forced redraws
    included —, and how late while the cycles were built afterwards)."""
    from cellbench.gui.window import MainWindow

    t0 = time.perf_counter()
    frame = open_run(path).read("samples")
    reference = time.perf_counter() - t0
    assert frame.height == n
    del frame
    window = MainWindow(out_dir=path.parent)
    window.resize(1600, 900)
    window.show()
    pump(app, 0.3)
    meter = StallMeter()
    t0 = time.perf_counter()
    window.attach(path)
    window.open_channel("cell1")
    meter.start()  # after building the channel's views: what the attach's reading costs
    last = float(n - 1)
    while True:
        app.processEvents()
        view = window.model.channels.get("cell1")
        if view is not None and view.trace.rows_seen >= n:
            window.redraw(force=True)
            x = window.time_plots.curves["voltage_volt"].getData()[0]
            unit = window.time_plots.unit_s
            if x is not None and len(x) and x[0] == 0.0 and x[-1] * unit == last:
                break
        if time.perf_counter() - t0 > 300:
            raise RuntimeError("attach did not finish within 300 s")
        time.sleep(0.002)
    took = time.perf_counter() - t0
    meter.stop()
    drawing, meter = meter.late, StallMeter()
    meter.start()
    while window.feed is not None and window.feed.poller.backfilling:  # cycles of old rows
        app.processEvents()
        if time.perf_counter() - t0 > 300:
            raise RuntimeError("the cycles were not built within 300 s")
        time.sleep(0.002)
    cycles = time.perf_counter() - t0
    meter.stop()
    window.detach()
    window.close()
    return took, cycles, reference, drawing, meter.late


# ------------------------------------------------------------------------------------ stalls


class StallMeter:
    """A 5 ms timer; records how much later than due each tick fires (ms)."""

    def __init__(self) -> None:
        self.late: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._tick)
        self._last = None

    def start(self) -> None:
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.late.append(max(0.0, 1e3 * (now - self._last) - 5.0))
        self._last = now


def run_loop(app: QApplication, seconds: float) -> None:
    QTimer.singleShot(int(seconds * 1000), app.quit)
    app.exec()


def stream_rows(tick0: int, ticks: int) -> pl.DataFrame:
    tick = np.repeat(np.arange(tick0, tick0 + ticks), CHANNELS)
    ch = np.tile(np.arange(CHANNELS), ticks)
    t = tick * 0.1
    names = pl.Series([f"ch{i:02d}" for i in range(CHANNELS)])
    return pl.DataFrame(
        {
            "channel": names.gather(ch),
            "test_time_second": t,
            "unix_time_second": time.time() + 0 * t,
            "voltage_volt": 3.7 + 0.3 * np.sin(t / 3600 + ch),
            "current_ampere": np.where((tick // 36000) % 2 == 0, 0.002, -0.002),
            "cycle_count": (tick // 72000 + 1).astype(np.int32),
            "step_count": (tick // 36000 + 1).astype(np.int32),
            "step_index": ((tick // 36000) % 2).astype(np.int32),
            "temperature_celsius": 25.0 + 0 * t,
        }
    )


def stalls(app: QApplication, root: Path, seconds: float) -> tuple[list[float], list[float]]:
    """(late ms with the window attached to a 64-channel stream, late ms with no window)."""
    from cellbench.gui.window import TABS, MainWindow

    idle = StallMeter()
    idle.start()
    run_loop(app, min(5.0, seconds))
    idle.stop()

    meta = RunMeta(run_id="stream", start_time="2026-01-01T00:00:00Z")
    writer = create_run(root, meta)
    stop = threading.Event()
    tick = [0]

    def write() -> None:  # 64 channels x 10 Hz, a batch every 0.25 s, as the recorder does
        while not stop.wait(0.25):
            writer.append("samples", stream_rows(tick[0], 3))
            tick[0] += 3

    writer.append("samples", stream_rows(0, 3000))  # five minutes already recorded
    tick[0] = 3000
    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    window = MainWindow(out_dir=root)
    window.resize(1600, 900)
    window.show()
    window.attach(writer.path)
    window.tabs.setCurrentIndex(TABS.index("Overview"))
    run_loop(app, 2.0)  # the history arrives; not measured
    meter = StallMeter()
    meter.start()
    run_loop(app, seconds / 2)
    window.open_channel("ch07")
    run_loop(app, seconds / 2)
    meter.stop()
    stop.set()
    thread.join(5)
    writer.close("completed")
    window.detach()
    window.close()
    return meter.late, idle.late


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99)) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--attach-rows", type=int, default=10_000_000)
    ap.add_argument("--stream-seconds", type=float, default=20.0)
    args = ap.parse_args()
    app = QApplication.instance() or QApplication([])
    assert HISTORY_COLUMNS[0] == "test_time_second"

    print("refresh of the time plots (V, I, T, p; 1600x900), median ms")
    print(f"{'rows':>12} {'cellbench whole':>16} {'zoomed 1 %':>11} {'reference':>10}")
    results = {}
    for n in (100_000, 1_000_000, 10_000_000):
        r = refresh_times(app, n, args.repeat)
        results[n] = r
        print(f"{n:>12,} {r['whole']:>16.1f} {r['zoomed']:>11.1f} {r['reference']:>10.1f}")
    for key in ("whole", "zoomed", "reference"):
        ratio = results[10_000_000][key] / results[100_000][key]
        print(f"ratio 1e7 / 1e5 ({key}): {ratio:.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        n = args.attach_rows
        t0 = time.perf_counter()
        path = write_long_run(Path(tmp), n)
        print(f"\nwrote a {n:,}-row run in {time.perf_counter() - t0:.1f} s")
        took, cycles, reference, late, later = attach_time(app, path, n)
        print(f"attach until the whole span is drawn (every row counted): {took:.2f} s")
        print(f"  event loop meanwhile: longest stall {max(late):.1f} ms, p99 {p99(late):.1f} ms")
        print(f"  ... until the cycle views hold every cycle as well: {cycles:.2f} s")
        print(f"  event loop meanwhile: longest stall {max(later):.1f} ms, p99 {p99(later):.1f} ms")
        print(f"reference, polars reading the same rows (RunReader.read): {reference:.2f} s")
        print(f"ratio attach / polars read: {took / reference:.2f}")
        for summary in (path / "samples").glob(SUMMARY_GLOB):  # a run of an older cellbench
            summary.unlink()
        old, *_ = attach_time(app, path, n)
        print(f"the same run without its summaries (computed from the rows): {old:.2f} s")

        late, idle = stalls(app, Path(tmp), args.stream_seconds)
        print(f"\nevent loop during a 64-channel x 10 Hz stream ({args.stream_seconds:g} s):")
        print(f"  window attached: longest stall {max(late):.1f} ms, p99 {p99(late):.1f} ms")
        print(f"  reference, no window: longest {max(idle):.1f} ms, p99 {p99(idle):.1f} ms")


if __name__ == "__main__":
    main()
