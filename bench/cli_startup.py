"""Benchmark: how long the ``cellbench`` command takes to start, beside a bare Python start-up.

Runs each command ``--repeat`` times in a fresh interpreter (alternating, so a burst of load on
the machine hits all of them alike) and prints the median wall time, the fastest, and the ratio
of cellbench's median to the reference: ``python -c pass``, the floor no command line written in
Python goes under. Registering the commands imports only argparse-level modules (numpy, polars,
scipy load inside the command that needs them; tests/test_cli_startup.py checks it), so
``cellbench --help`` costs little more than the interpreter itself.

Run:  python bench/cli_startup.py                 (15 repeats, about 10 s)
      python bench/cli_startup.py --repeat 31
      PYTHONPATH=/other/checkout python bench/cli_startup.py   (another tree's cellbench)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS: dict[str, list[str]] = {
    "python -c pass (reference)": [sys.executable, "-c", "pass"],
    "cellbench --help": [sys.executable, "-m", "cellbench.cli", "--help"],
    "cellbench --version": [sys.executable, "-m", "cellbench.cli", "--version"],
    "cellbench analyze --help": [sys.executable, "-m", "cellbench.cli", "analyze", "--help"],
}


def time_once(argv: list[str]) -> float:
    """Wall time / s of one run of ``argv`` (its output discarded); raises if it fails."""
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs of each command (15)")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for argv in COMMANDS.values():  # warm the file cache: the first run reads from disk
        time_once(argv)
    for _ in range(args.repeat):
        for name, argv in COMMANDS.items():
            times[name].append(time_once(argv))
    reference = statistics.median(next(iter(times.values())))
    print(f"{'command':<28} {'median / s':>10} {'fastest / s':>11} {'x reference':>11}")
    for name, ts in times.items():
        median = statistics.median(ts)
        print(f"{name:<28} {median:>10.3f} {min(ts):>11.3f} {median / reference:>11.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
