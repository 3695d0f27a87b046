"""Per-cycle summary of a 10-million-row cycling run: cellbench beside PyProBE, same data, one run.

    python bench/cycling.py [--rows 10000000] [--repeat 7]

The synthetic run is 1 s logging of CC-CV charge, rest, CC discharge, rest (10 000 rows a
cycle, so 1000 cycles at 10 M rows) with a slow capacity fade and voltage noise. Both tools get
the data in memory, in their own format, before timing starts:

* cellbench: a ``samples`` frame; :func:`cellbench.analysis.cycling.cycle_summary` integrates
  current and power itself (capacity, energy, efficiencies, mean voltages, DC resistance).
* PyProBE (``pyprobe-data``): a ``Procedure`` over a LazyFrame with the columns its cycler
  importers produce, including the cycler's cumulative ``Capacity [Ah]``, which is computed
  for it outside the timing; ``pyprobe.analysis.cycling.summary`` then takes per-cycle charge
  and discharge capacity from it (max - min), SOH and Coulombic efficiency.

So cellbench does strictly more work per run (two integrals and more aggregates). The eager
``cycle_summary`` (blocked numpy kernel) is the headline figure; the pure polars query behind
``cycle_summary_lazy`` is shown on a second row.

PyProBE pins ``polars<2`` while cellbench runs on polars 2, so PyProBE usually lives in its own
virtual environment: set ``CELLBENCH_PYPROBE_PYTHON`` to that interpreter (default
``~/.cache/cellbench/pyprobe-venv/bin/python`` when it exists; make it with
``python -m venv ~/.cache/cellbench/pyprobe-venv && ~/.cache/cellbench/pyprobe-venv/bin/pip
install pyprobe-data``). The bench then starts it once as a worker on the same data (a parquet
file written before timing) and alternates runs of the two tools, so that load from other
processes hits both alike. Times are medians of ``--repeat`` runs after one warm-up each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl

ROWS_PER_CYCLE = 10_000
# (step number, rows, kind) of one cycle: PyProBE infers cycles where the step number falls.
TEMPLATE = ((1, 300, "rest"), (2, 3500, "cc+"), (3, 1200, "cv+"), (4, 300, "rest"),
            (5, 4400, "cc-"), (6, 300, "rest"))  # fmt: skip
DEFAULT_PYPROBE_PYTHON = Path.home() / ".cache" / "cellbench" / "pyprobe-venv" / "bin" / "python"


def synthetic_run(rows: int, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(cellbench samples frame, PyProBE frame) of the same run."""
    n_cycles = max(1, rows // ROWS_PER_CYCLE)
    n = n_cycles * ROWS_PER_CYCLE
    i_t, v_t, step_t = [], [], []
    for step, k, kind in TEMPLATE:
        x = np.linspace(0.0, 1.0, k, endpoint=False)
        if kind == "rest":
            i_t.append(np.zeros(k))
            v_t.append(np.full(k, 3.6 if step == 1 else (4.15 if step == 4 else 3.05)))
        elif kind == "cc+":
            i_t.append(np.full(k, 1.0))
            v_t.append(3.5 + 0.7 * x)
        elif kind == "cv+":
            i_t.append(1.0 * np.exp(-4 * x))
            v_t.append(np.full(k, 4.2))
        else:
            i_t.append(np.full(k, -1.0))
            v_t.append(4.1 - 1.1 * x)
        step_t.append(np.full(k, step))
    i_tpl, v_tpl, step_tpl = (np.concatenate(a) for a in (i_t, v_t, step_t))
    cycle = np.repeat(np.arange(1, n_cycles + 1, dtype=np.int32), ROWS_PER_CYCLE)
    fade = 1.0 - 2e-4 * (cycle - 1)
    current = np.tile(i_tpl, n_cycles) * fade
    rng = np.random.default_rng(seed)
    voltage = np.tile(v_tpl, n_cycles) + 2e-4 * rng.standard_normal(n)
    t = np.arange(n, dtype=np.float64)
    step = np.tile(step_tpl, n_cycles).astype(np.int32)
    step_count = np.cumsum(np.diff(step, prepend=0) != 0).astype(np.int32)
    samples = pl.DataFrame(
        {
            "channel": pl.repeat("ch1", n, eager=True),
            "test_time_second": t,
            "unix_time_second": t + 1.7e9,
            "voltage_volt": voltage,
            "current_ampere": current,
            "cycle_count": cycle,
            "step_count": step_count,
            "step_index": step,
        }
    )
    # The cycler's running net charge, as PyProBE's importers deliver it (trapezoid, Ah).
    dq = np.zeros(n)
    dq[1:] = 0.5 * (current[1:] + current[:-1]) / 3600.0
    pyprobe_frame = pl.DataFrame(
        {
            "Time [s]": t,
            "Step": step,
            "Cycle": cycle,
            "Event": step_count.astype(np.uint64),
            "Current [A]": current,
            "Voltage [V]": voltage,
            "Capacity [Ah]": np.cumsum(dq),
        }
    )
    return samples, pyprobe_frame


# ------------------------------------------------------------------------------ PyProBE side


def _pyprobe_summary(frame: pl.DataFrame) -> pl.DataFrame:
    from pyprobe.analysis import cycling as pp_cycling
    from pyprobe.filters import Procedure

    proc = Procedure(lf=frame.lazy(), info={}, readme_dict={})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "cycles will be inferred from the step numbers"
        return pp_cycling.summary(proc).data


def _worker(parquet: str) -> None:
    """Line protocol on stdin/stdout: ``run`` -> seconds; ``result`` -> JSON capacities."""
    from loguru import logger

    logger.remove()  # PyProBE logs every call at INFO
    frame = pl.read_parquet(parquet)
    out = None
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "run":
            t0 = time.perf_counter()
            out = _pyprobe_summary(frame)
            print(time.perf_counter() - t0, flush=True)
        elif cmd == "result" and out is not None:
            print(json.dumps(out["Charge Capacity [Ah]"].to_list()), flush=True)


class _PyProBE:
    """PyProBE in this process (when it imports and works) or in its own interpreter."""

    def __init__(self, frame: pl.DataFrame, tmp: Path):
        self.frame = frame
        self.proc: subprocess.Popen[str] | None = None
        self.note = ""
        self.out: pl.DataFrame | None = None
        try:
            _pyprobe_summary(frame.head(ROWS_PER_CYCLE * 2))
            self.mode = "in-process"
            return
        except ImportError:
            pass
        except Exception as exc:  # e.g. PyProBE's polars<2 code on polars 2
            self.note = f"in-process failed ({type(exc).__name__}); "
        python = os.environ.get("CELLBENCH_PYPROBE_PYTHON") or (
            str(DEFAULT_PYPROBE_PYTHON) if DEFAULT_PYPROBE_PYTHON.exists() else ""
        )
        if not python:
            raise RuntimeError(self.note + "not installed (set CELLBENCH_PYPROBE_PYTHON)")
        parquet = tmp / "pyprobe.parquet"
        frame.write_parquet(parquet)
        self.proc = subprocess.Popen(
            [python, __file__, "--pyprobe-worker", str(parquet)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self._read() != "ready":
            raise RuntimeError(f"PyProBE worker ({python}) did not start")
        self.mode = f"worker: {python}"

    def _read(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"PyProBE worker exited with {self.proc.wait()}")
        return line

    def run(self) -> float:
        if self.proc is None:
            t0 = time.perf_counter()
            self.out = _pyprobe_summary(self.frame)
            return time.perf_counter() - t0
        assert self.proc.stdin is not None
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return float(self._read())

    def charge_capacity(self) -> np.ndarray:
        if self.proc is None:
            assert self.out is not None
            return self.out["Charge Capacity [Ah]"].to_numpy()
        assert self.proc.stdin is not None
        self.proc.stdin.write("result\n")
        self.proc.stdin.flush()
        return np.array(json.loads(self._read()), dtype=float)

    def close(self) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


# ------------------------------------------------------------------------------------ main


def main() -> None:
    from cellbench.analysis.cycling import cycle_summary, cycle_summary_lazy

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    t0 = time.perf_counter()
    samples, pp_frame = synthetic_run(args.rows)
    print(
        f"{samples.height:,} rows, {samples['cycle_count'].max()} cycles "
        f"(generated in {time.perf_counter() - t0:.1f} s); polars {pl.__version__}, "
        f"{os.cpu_count()} CPUs"
    )

    with tempfile.TemporaryDirectory() as tmp:
        pp: _PyProBE | None = None
        pp_note = ""
        try:
            pp = _PyProBE(pp_frame, Path(tmp))
        except Exception as exc:
            pp_note = f"n/a ({exc})"

        def cb_run() -> float:
            start = time.perf_counter()
            cb_run.out = cycle_summary(samples)  # type: ignore[attr-defined]
            return time.perf_counter() - start

        def query_run() -> float:
            start = time.perf_counter()
            cycle_summary_lazy(samples).collect()
            return time.perf_counter() - start

        cb_times, q_times, pp_times = [], [], []
        cb_run()  # warm-up
        query_run()
        if pp is not None:
            pp.run()
        for _ in range(args.repeat):  # alternate, so all see the same machine load
            cb_times.append(cb_run())
            q_times.append(query_run())
            if pp is not None:
                pp_times.append(pp.run())
        cb_charge = cb_run.out["charge_capacity_ampere_hour"].to_numpy()  # type: ignore[attr-defined]
        if pp is not None:
            pp_charge = pp.charge_capacity()
            if pp_charge.size == cb_charge.size:
                diff = float(np.max(np.abs(pp_charge - cb_charge) / cb_charge))
                pp_note = f"{pp.mode}; per-cycle charge capacity agrees within {diff:.1e}"
            else:
                pp_note = f"{pp.mode}; cycle counts differ: {pp_charge.size} vs {cb_charge.size}"
            pp.close()

    cb_s = statistics.median(cb_times)
    pp_s = statistics.median(pp_times) if pp_times else None
    rows = samples.height
    print()
    head = f"per-cycle summary, {rows:,} rows"
    print(f"{head:<44}{'cellbench':>12}{'PyProBE':>12}{'ratio':>10}")
    pp_txt = f"{pp_s:.3f}" if pp_s is not None else "n/a"
    ratio = f"{pp_s / cb_s:.1f}x" if pp_s is not None else "n/a"
    print(f"{'median time, s':<44}{cb_s:>12.3f}{pp_txt:>12}{ratio:>10}")
    pp_rate = f"{rows / pp_s / 1e6:.1f}" if pp_s is not None else "n/a"
    print(f"{'throughput, million rows/s':<44}{rows / cb_s / 1e6:>12.1f}{pp_rate:>12}{ratio:>10}")
    q_s = statistics.median(q_times)
    q_ratio = f"{pp_s / q_s:.1f}x" if pp_s is not None else "n/a"
    print(f"{'median time, s (polars query, lazy API)':<44}{q_s:>12.3f}{pp_txt:>12}{q_ratio:>10}")
    print(f"\nPyProBE: {pp_note}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--pyprobe-worker":
        _worker(sys.argv[2])
    else:
        main()
