"""Read time of binary cycler files: cellbench beside the reference readers, in the same run.

    python bench/readers.py [--repeat 15] [--data ../shared/data]

* BioLogic .mpr (``cycling/biol.mpr``, 23.5 k rows): cellbench ``read`` (canonical frame:
  units, sign, per-cycle capacities, checks) beside galvani's ``BioLogic.MPRfile`` (a numpy
  record array of the raw columns).
* Neware .ndax (``cycling/*.ndax``, 253 k rows): cellbench ``read`` beside ``fastnda.read``
  (a polars frame with time, capacities and cycle numbers).

Each tool reads the file from the page cache (one warm-up read first); the runs alternate
between the tools so that load from other processes hits both alike; the table gives medians.
galvani and fastnda are installed for this script only (``pip install galvani fastnda``); when
absent their rows say "n/a (not installed)".
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from cellbench.analysis.readers import read

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _galvani() -> Callable[[Path], object] | None:
    try:
        from galvani import BioLogic
    except ImportError:
        return None
    return lambda path: BioLogic.MPRfile(str(path)).data


def _fastnda() -> Callable[[Path], object] | None:
    try:
        import fastnda
    except ImportError:
        return None
    # fastnda logs a notice on every read of this file (its own unix time runs backwards by
    # about 0.4 s at 8 places; cellbench's does not); keep the table readable.
    logging.getLogger("fastnda").setLevel(logging.ERROR)
    return lambda path: fastnda.read(path)


def _rows(obj: object) -> int:
    return len(obj) if not hasattr(obj, "height") else obj.height  # type: ignore[attr-defined]


def _cellbench(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read(path).frame


def compare(path: Path, reference: Callable[[Path], object] | None, repeat: int):
    """Medians (s) and row counts of cellbench and the reference on ``path``, runs alternated."""
    tools = {"cellbench": _cellbench}
    if reference is not None:
        tools["reference"] = reference
    times: dict[str, list[float]] = {k: [] for k in tools}
    rows = {k: _rows(f(path)) for k, f in tools.items()}  # warm-up (page cache, imports)
    for _ in range(repeat):
        for name, f in tools.items():
            t0 = time.perf_counter()
            f(path)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="timed reads per tool")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    args = parser.parse_args(argv)
    cycling = args.data / "cycling"
    ndax = sorted(cycling.glob("*.ndax"))
    cases = [
        ("BioLogic .mpr", cycling / "biol.mpr", "galvani", _galvani()),
        ("Neware .ndax", ndax[0] if ndax else cycling / "missing.ndax", "fastnda", _fastnda()),
    ]
    print(f"median of {args.repeat} reads each, alternating tools\n")
    header = f"{'file':16s} {'rows':>8s} | {'cellbench':>12s} | {'reference':>24s} | ratio"
    print(header)
    print("-" * len(header))
    for label, path, ref_name, ref in cases:
        if not path.is_file():
            print(f"{label:16s} n/a (no file at {path})")
            continue
        med, rows = compare(path, ref, args.repeat)
        ours = f"{med['cellbench'] * 1e3:9.1f} ms"
        if ref is None:
            theirs, ratio = f"{ref_name}: n/a (not installed)", ""
        else:
            theirs = f"{ref_name} {med['reference'] * 1e3:9.1f} ms"
            ratio = f"{med['cellbench'] / med['reference']:.2f}x"
            if rows["reference"] != rows["cellbench"]:
                ratio += f"  (rows: ref {rows['reference']})"
        print(f"{label:16s} {rows['cellbench']:>8d} | {ours:>12s} | {theirs:>24s} | {ratio}")
    print("\nratio = cellbench time / reference time (below 1: cellbench faster)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
