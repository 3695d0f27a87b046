"""Benchmark: the acquisition engine logging 64 channels x 10 Hz, beside a bare logging loop.

Setup (honest about what is measured):

* 64 simulated Keithley 2450 SMUs, each a real loopback SCPI socket server (``drivers.sim``), run
  in a **separate process** (``--serve``), so the logger's CPU figure does not include them. All
  64 sit on one simulated cell at open circuit (the engine sources 0 A, as in an OCV step).
* **cellbench**: ``Engine`` with a 64-channel station (one runner thread and one pyvisa-py
  socket per SMU), an OCV protocol sampled every 0.1 s, the run store, its recorder thread
  batching every 0.25 s, the store's fsync thread (1 s). Real time (no time scaling).
* **reference**: the same 64 drivers polled by one plain loop at 10 Hz, each reading written as a
  CSV line, ``flush`` + ``fsync`` once a second — the least a logger can do.

Figures (medians are not needed: one long steady window each):

* CPU of the logger process (``time.process_time``: all its threads) as % of one core;
* rows per second actually recorded;
* latency from the moment a reading came back from the instrument to the moment it is
  kill-9-safe (cellbench: its batch was appended to the journal; reference: written to the
  file), p50 and p99; and to the moment it is fsynced (power-cut safe).

Run:  python bench/logger.py                 (about 1 min)
      python bench/logger.py --seconds 10     (quicker)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

CHANNELS = 64
RATE_HZ = 10.0


# ------------------------------------------------------------------------- simulator process


def serve(channels: int) -> None:
    """Child process: start the simulators, print their addresses, run until stdin closes."""
    from cellbench.core.clock import ScaledClock
    from cellbench.drivers.sim.bench import start_simulators

    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    station = {
        "simulation": {"cell": str(fixtures / "sim" / "sulfide_full_cell.toml")},
        "instrument": [
            {"name": f"smu{k:02d}", "driver": "keithley2450", "address": "sim"}
            for k in range(channels)
        ],
    }
    bench = start_simulators(station, fixtures, clock=ScaledClock(1.0))
    print(json.dumps(bench.addresses), flush=True)
    sys.stdin.read()  # until the parent closes the pipe
    bench.stop()


def cpu_seconds_of(pid: int) -> float:
    """utime + stime of another process (Linux /proc), s."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------- cellbench


def run_engine(addresses: dict[str, str], seconds: float, warmup: float, out: Path) -> dict:
    from cellbench.core.clock import WallClock
    from cellbench.daq.engine import Engine, EngineOptions
    from cellbench.daq.protocol import parse_protocol
    from cellbench.daq.recorder import LatencyLog
    from cellbench.daq.station import parse_station
    from cellbench.daq.store import RunWriter

    lines = ["[cell]", 'name = "bench"', ""]
    for name, address in addresses.items():
        lines += [
            "[[instrument]]",
            f'name = "{name}"',
            'driver = "keithley2450"',
            f'address = "{address}"',
            'roles = ["source"]',
            f'channel = "{name}"',
            "",
        ]
    station = parse_station("\n".join(lines), source="bench-station")
    total = warmup + seconds + 2.0
    protocol = parse_protocol(
        f'name = "logger bench"\nsample_interval = "{1 / RATE_HZ:g} s"\n'
        f'[[step]]\ntype = "ocv"\nduration = "{total:g} s"\n',
        source="bench-protocol",
    )
    # When did each fsync finish? (bench instrumentation, not part of the store's API)
    fsyncs: list[float] = []
    original = RunWriter._sync_all

    def timed_sync(self: RunWriter) -> None:
        original(self)
        fsyncs.append(time.monotonic())

    RunWriter._sync_all = timed_sync  # type: ignore[method-assign]
    latency = LatencyLog()
    engine = Engine(
        protocol, station, out, clock=WallClock(), latency=latency, options=EngineOptions()
    )
    try:
        engine.start()
        time.sleep(warmup)
        n0, w0, c0 = len(latency.measured), time.monotonic(), time.process_time()
        time.sleep(seconds)
        n1, w1, c1 = len(latency.measured), time.monotonic(), time.process_time()
        status = engine.wait()
    finally:
        RunWriter._sync_all = original  # type: ignore[method-assign]
    measured = np.asarray(latency.measured[n0:n1])
    appended = np.asarray(latency.appended[n0:n1])
    synced_at = np.asarray(fsyncs)
    idx = np.searchsorted(synced_at, appended, side="left")
    ok = idx < synced_at.size
    return {
        "status": status,
        "cpu_pct": 100.0 * (c1 - c0) / (w1 - w0),
        "rows_per_s": (n1 - n0) / (w1 - w0),
        "safe_s": appended - measured,
        "fsync_s": synced_at[idx[ok]] - measured[ok],
    }


# ------------------------------------------------------------------------------- reference


def run_reference(addresses: dict[str, str], seconds: float, warmup: float, out: Path) -> dict:
    from cellbench.drivers.registry import open_instrument

    drivers = [
        open_instrument("keithley2450", address, name=name) for name, address in addresses.items()
    ]
    for d in drivers:
        d.output_off()  # 0 A source: the same measurement path as the engine's OCV step
    path = out / "reference.csv"
    safe: list[float] = []
    synced: list[float] = []
    with open(path, "w", encoding="ascii") as fh:
        fh.write("channel,unix_time_second,voltage_volt,current_ampere\n")
        start = time.monotonic()
        end = start + warmup + seconds
        tick = start
        last_sync = start
        pending: list[float] = []
        c0 = w0 = None
        n0 = 0
        while True:
            now = time.monotonic()
            if c0 is None and now - start >= warmup:
                c0, w0, n0 = time.process_time(), now, len(safe)
            if now >= end:
                break
            for d in drivers:
                r = d.measure()
                t = time.monotonic()
                fh.write(
                    f"{d.name},{time.time():.6f},{r.voltage_volt:.9g},{r.current_ampere:.9g}\n"
                )
                safe.append(time.monotonic() - t)  # in the page cache once write() returns
                pending.append(t)
            fh.flush()
            if now - last_sync >= 1.0:
                os.fsync(fh.fileno())
                done = time.monotonic()
                synced.extend(done - t for t in pending)
                pending.clear()
                last_sync = done
            tick += 1.0 / RATE_HZ
            delay = tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                tick = time.monotonic()
        c1, w1 = time.process_time(), time.monotonic()
    for d in drivers:
        d.close()
    return {
        "status": "completed",
        "cpu_pct": 100.0 * (c1 - c0) / (w1 - w0),
        "rows_per_s": (len(safe) - n0) / (w1 - w0),
        "safe_s": np.asarray(safe[n0:]),
        "fsync_s": np.asarray(synced),
    }


# ------------------------------------------------------------------------------------ main


def pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=CHANNELS)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window, s")
    parser.add_argument("--warmup", type=float, default=3.0, help="not measured, s")
    parser.add_argument("--serve", type=int, metavar="N", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    sim = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(args.channels)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        addresses = json.loads(sim.stdout.readline())
        with tempfile.TemporaryDirectory(prefix="cellbench-logger-bench-") as tmp:
            sim_c0 = cpu_seconds_of(sim.pid)
            t0 = time.monotonic()
            ours = run_engine(addresses, args.seconds, args.warmup, Path(tmp))
            sim_cpu = 100 * (cpu_seconds_of(sim.pid) - sim_c0) / (time.monotonic() - t0)
            ref = run_reference(addresses, args.seconds, args.warmup, Path(tmp))
    finally:
        sim.stdin.close()
        sim.wait(timeout=30)

    target = args.channels * RATE_HZ
    print(
        f"\n{args.channels} channels x {RATE_HZ:g} Hz ({target:g} rows/s target), "
        f"{args.seconds:g} s measured after {args.warmup:g} s warm-up; "
        f"simulators in another process (their CPU: {sim_cpu:.0f} % of a core)"
    )
    print(f"cellbench run status: {ours['status']}\n")
    rows = [
        ("logger CPU, % of one core", ours["cpu_pct"], ref["cpu_pct"]),
        ("rows recorded per s", ours["rows_per_s"], ref["rows_per_s"]),
        (
            "latency p50 to kill-9-safe, ms",
            1e3 * pct(ours["safe_s"], 50),
            1e3 * pct(ref["safe_s"], 50),
        ),
        (
            "latency p99 to kill-9-safe, ms",
            1e3 * pct(ours["safe_s"], 99),
            1e3 * pct(ref["safe_s"], 99),
        ),
        (
            "latency p50 to fsynced, ms",
            1e3 * pct(ours["fsync_s"], 50),
            1e3 * pct(ref["fsync_s"], 50),
        ),
        (
            "latency p99 to fsynced, ms",
            1e3 * pct(ours["fsync_s"], 99),
            1e3 * pct(ref["fsync_s"], 99),
        ),
    ]
    print(f"{'figure':34} | {'cellbench':>10} | {'bare loop':>10} | {'ratio':>6}")
    print(f"{'-' * 34}-|-{'-' * 10}-|-{'-' * 10}-|-{'-' * 6}")
    for name, a, b in rows:
        ratio = a / b if b else float("nan")
        print(f"{name:34} | {a:10.3g} | {b:10.3g} | {ratio:6.2f}")
    print(
        "\ntargets: CPU < 10 % of one core, p99 sample-to-store < 1500 ms "
        f"(kill-9-safe {1e3 * pct(ours['safe_s'], 99):.0f} ms, fsynced "
        f"{1e3 * pct(ours['fsync_s'], 99):.0f} ms)"
    )


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
