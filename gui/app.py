"""``cellbench gui``: the application object and its entry point."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path


def main(
    run_dir: Path | str | None = None,
    *,
    protocol: Path | str | None = None,
    station: Path | str | None = None,
    out_dir: Path | str = "runs",
    time_scale: float | None = None,
    start: bool = False,
    catalog: tuple[str, str] | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    """Open the window (attached to ``run_dir`` if given; with ``start``, the run of
    ``protocol`` on ``station`` under ``out_dir`` started at once as its own logger process;
    with ``catalog`` = ``(url, run_id)``, attached to that run of the lab catalog); returns the
    exit code."""
    from PySide6.QtWidgets import QApplication

    from cellbench.gui.window import MainWindow

    app = QApplication.instance() or QApplication(list(argv or sys.argv[:1]))
    window = MainWindow(out_dir=out_dir)
    if protocol is not None:
        window.protocol.set_path(protocol)
    if station is not None:
        window.station.set_path(station)
    if time_scale is not None:
        window.time_scale.setValue(time_scale)
    if run_dir is not None:
        window.attach(run_dir)
    if catalog is not None:
        from cellbench.gui.catalog_open import attach_catalog

        attach_catalog(window, *catalog)
    window.show()
    if start:  # scripted: exactly this protocol, station and folder, a new run name
        window.form.out.set_path(out_dir)
        window.form.run_name.clear()
        window.check()
        window.start_run()
        if window.run is None:
            for line in window.problems:
                print(f"cellbench gui: {line}", file=sys.stderr)
    return int(app.exec())
