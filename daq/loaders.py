"""Load canonical frames from whatever the user points at: a cellbench run folder or a vendor file.

The command line uses these so that every ``analyze`` command accepts every format. Run folders are
read through :mod:`cellbench.daq.store`; files go through :mod:`cellbench.analysis.readers`.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cellbench.core.errors import CellbenchError


def is_run(path: Path) -> bool:
    """True for a cellbench run folder (it holds ``run.json``)."""
    return path.is_dir() and (path / "run.json").is_file()


def _check(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise CellbenchError(f"{path}: no such file or folder")
    return path


def load_samples(path: Path) -> pl.DataFrame:
    """Time-series samples (``samples`` columns) of a run folder or a cycler file."""
    path = _check(path)
    if is_run(path):
        from cellbench.daq.store import open_run

        return open_run(path).read("samples")
    from cellbench.analysis.readers import read_samples

    return read_samples(path)


def load_spectra(path: Path) -> pl.DataFrame:
    """Impedance spectra (``spectra`` columns, all sweeps) of a run folder or an EIS file."""
    path = _check(path)
    if is_run(path):
        from cellbench.daq.store import open_run

        return open_run(path).read("spectra")
    from cellbench.analysis.readers import read_spectra

    return read_spectra(path)
