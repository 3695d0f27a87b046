"""Read time of cycler files: cellbench beside the public readers of the same file, in one run.

    python bench/readers.py [--repeat 9] [--data ../shared/data]

Files (the real ones of ``../shared/data`` and ``tests/corpus``) and the readers compared:

* BioLogic .mpr (``cycling/biol.mpr``, 23.5 k rows): galvani's ``BioLogic.MPRfile`` (a numpy
  record array of the raw columns);
* Neware .nda, BTS 7 (``tests/corpus/new_nda_file.nda``) and .ndax of ndc versions 17
  (``cycling/*.ndax``, 253 k rows) and 14 (``tests/corpus/nw4-120-1-6-53.ndax``): ``fastnda.read``
  (a polars frame) and ``NewareNDA.read`` (a pandas frame);
* Maccor text (``field/maccor_one.txt``) and Arbin .res (``cycling/*.res``, through
  mdb-export): cellpy's loaders (``cellpy.get`` with ``auto_summary=False``: its raw table only).

cellbench's time is ``read(path)``: the canonical frame (SI units, sign, per-cycle capacities
from the cycler's counters, schema checks) and the checks behind its error messages. Every tool
reads from the page cache (one warm-up read first); the reads alternate between the tools, so
load from other processes hits all alike; the table gives medians. The reference readers are
installed for this script only, in a separate environment::

    python3 -m venv /tmp/benchvenv
    /tmp/benchvenv/bin/pip install -e . galvani fastnda NewareNDA cellpy
    /tmp/benchvenv/bin/python bench/readers.py

A reader that is not installed, or cannot read the file, says so in its column.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from cellbench.analysis.readers import read

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
CORPUS = ROOT / "tests" / "corpus"
Reader = Callable[[Path], object]


def _quiet(f: Reader) -> Reader:
    def run(path: Path) -> object:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return f(path)

    return run


def _galvani() -> Reader | None:
    try:
        from galvani import BioLogic
    except ImportError:
        return None
    return lambda path: BioLogic.MPRfile(str(path)).data


def _fastnda() -> Reader | None:
    try:
        import fastnda
    except ImportError:
        return None
    logging.getLogger("fastnda").setLevel(logging.ERROR)
    return lambda path: fastnda.read(path)


def _newarenda() -> Reader | None:
    try:
        import NewareNDA
    except ImportError:
        return None
    for name in ("NewareNDA", "newarenda"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return lambda path: NewareNDA.read(str(path))


def _cellpy(instrument: str, **kwargs) -> Reader | None:
    try:
        import cellpy
    except ImportError:
        return None
    logging.getLogger("cellpy").setLevel(logging.ERROR)
    return lambda path: (
        cellpy.get(
            str(path), instrument=instrument, auto_summary=False, logging_mode="CRITICAL", **kwargs
        ).data.raw
    )


def _cellbench(path: Path) -> object:
    return read(path).frame


def _rows(obj: object) -> int:
    if hasattr(obj, "height"):
        return obj.height  # type: ignore[attr-defined]
    if isinstance(obj, tuple):
        return _rows(obj[0])
    return len(obj)  # type: ignore[arg-type]


def compare(path: Path, tools: dict[str, Reader | None], repeat: int):
    """Median seconds and rows per tool on ``path`` (None: not installed; str: its error)."""
    ready: dict[str, Reader] = {}
    rows: dict[str, int | str | None] = {}
    for name, f in tools.items():
        if f is None:
            rows[name] = None
            continue
        try:
            rows[name] = _rows(_quiet(f)(path))  # warm-up: page cache, imports
            ready[name] = _quiet(f)
        except Exception as exc:  # a reference reader refusing the file is a result too
            rows[name] = f"cannot read: {type(exc).__name__}"
    times: dict[str, list[float]] = {k: [] for k in ready}
    for _ in range(repeat):
        for name, f in ready.items():
            t0 = time.perf_counter()
            f(path)
            times[name].append(time.perf_counter() - t0)
    medians = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    return medians, best, rows


def cases(data: Path) -> list[tuple[str, Path, dict[str, Reader | None]]]:
    cycling, field = data / "cycling", data / "field"
    ndax = sorted(cycling.glob("*.ndax"))
    res = sorted(cycling.glob("*.res"))
    neware = {"fastnda": _fastnda(), "NewareNDA": _newarenda()}
    return [
        ("BioLogic .mpr", cycling / "biol.mpr", {"galvani": _galvani()}),
        ("Neware .nda (BTS 7)", CORPUS / "new_nda_file.nda", neware),
        ("Neware .ndax (ndc 17)", ndax[0] if ndax else cycling / "none.ndax", neware),
        ("Neware .ndax (ndc 14)", CORPUS / "nw4-120-1-6-53.ndax", neware),
        ("Maccor .txt", field / "maccor_one.txt", {"cellpy": _cellpy("maccor_txt", model="one")}),
        ("Arbin .res", res[0] if res else cycling / "none.res", {"cellpy": _cellpy("arbin_res")}),
    ]


def _cell(name: str, med: dict[str, float], best: dict[str, float], rows: dict) -> str:
    if rows[name] is None:
        return f"{name}: not installed"
    if isinstance(rows[name], str):
        return f"{name}: {rows[name]}"
    return (
        f"{name} {med[name] * 1e3:.1f} ms, best {best[name] * 1e3:.1f} "
        f"({med['cellbench'] / med[name]:.2f}x, best {best['cellbench'] / best[name]:.2f}x)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=9, help="timed reads per tool")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    args = parser.parse_args(argv)
    logging.disable(logging.INFO)  # the reference readers log every file they open
    print(
        f"median (and best) of {args.repeat} reads each, tools alternating; "
        "(ratio) = cellbench / reference"
    )
    print("\n| file | rows | cellbench | references |\n| --- | --- | --- | --- |")
    for label, path, refs in cases(args.data):
        if not path.is_file():
            print(f"| {label} | n/a | no file at {path} | |")
            continue
        med, best, rows = compare(path, {"cellbench": _cellbench, **refs}, args.repeat)
        ours = f"{med['cellbench'] * 1e3:.1f} ms, best {best['cellbench'] * 1e3:.1f}"
        others = "; ".join(_cell(name, med, best, rows) for name in refs)
        print(f"| {label} (`{path.name}`) | {rows['cellbench']} | {ours} | {others} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
