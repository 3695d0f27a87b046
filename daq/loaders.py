"""Load canonical frames from whatever the user points at: a cellbench run folder or a vendor file.

The command line uses these so that every ``analyze`` command accepts every format. Run folders are
read through :mod:`cellbench.daq.store`; files go through :mod:`cellbench.analysis.readers`.
:func:`load_run_data` is what ``cellbench report`` and the window's Analysis tab open.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from cellbench.core.errors import CellbenchError

if TYPE_CHECKING:
    from cellbench.analysis.report import RunData


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


def load_run_data(
    path: Path | str,
    *,
    error: type[CellbenchError] = CellbenchError,
    reemit_warnings: bool = True,
) -> RunData:
    """A run folder's tables and ``run.json``, or a vendor file's frame (with reader notes).

    A run folder is read through the run reader (read-only; works while a writer appends). A
    vendor file goes through :func:`cellbench.analysis.readers.read`: its
    :class:`~cellbench.analysis.readers.ReaderWarning` messages become ``reader: ...`` notes,
    spectra come back as ``spectra``, and time series without cycle numbers are segmented.
    A missing path, or a folder without ``run.json``, raises ``error`` (a
    :class:`CellbenchError` subclass) naming the path. With ``reemit_warnings`` every warning
    caught while reading is warned again to the caller after the read.
    """
    from cellbench.analysis.report import RunData

    path = Path(path)
    if not path.exists():
        raise error(f"{path}: no such file or folder")
    if is_run(path):
        from cellbench.daq.run_reader import open_run

        run = open_run(path)
        return RunData(
            samples=run.read("samples"),
            spectra=run.read("spectra"),
            events=run.read("events"),
            meta=run.meta,
            source=str(path),
        )
    if path.is_dir():
        raise error(f"{path}: a folder without run.json is not a cellbench run")
    from cellbench.analysis.readers import ReaderWarning, read

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReaderWarning)
        result = read(path)
    notes = [f"reader: {w.message}" for w in caught if issubclass(w.category, ReaderWarning)]
    if reemit_warnings:
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if result.kind == "spectra":
        return RunData(spectra=result.frame, source=f"{path} ({result.format})", notes=notes)
    samples = result.frame
    cycles = samples.get_column("cycle_count", default=None)
    if cycles is None or cycles.null_count() == samples.height:
        from cellbench.analysis.segment import segment

        samples = segment(samples)
    return RunData(samples=samples, source=f"{path} ({result.format})", notes=notes)
