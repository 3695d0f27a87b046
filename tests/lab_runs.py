"""Runs for the lab-wide (catalog, archive, batch) tests, and a live writer process.

As a script: ``python lab_runs.py ROOT --channels 64 --hz 10 --seconds S [--seal-every S]``
records one run at ``channels x hz`` rows per second in real time (one batch per tick, unix times
of now) and prints ``run PATH`` once the folder exists and ``ack N`` (total rows) after each batch.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import polars as pl

from cellbench.core.schema import Cell, RunMeta
from cellbench.daq.store import create_run, utc_now_iso


def meta(run_id: str | None = None, *, name: str = "lab test cell") -> RunMeta:
    return RunMeta(
        run_id=run_id or f"lab-{uuid.uuid4().hex[:10]}",
        start_time=utc_now_iso(),
        protocol={"name": "lab cycling"},
        station={"name": "bench-7"},
        cell=Cell(name=name, chemistry="Li|LPSCl|NMC811", active_mass_g=0.01),
        extra={"host": "pc-7"},
    )


def cycling_frame(
    cycles: int = 3,
    points: int = 200,
    *,
    channel: str = "ch1",
    t0_unix: float | None = None,
    capacity_ah: float = 0.002,
    fade: float = 0.01,
) -> pl.DataFrame:
    """CC charge then CC discharge per cycle, ``points`` samples per half, 1 mA."""
    t0 = time.time() - 3600 if t0_unix is None else t0_unix
    frames = []
    t = 0.0
    for c in range(1, cycles + 1):
        q = capacity_ah * (1 - fade * (c - 1))
        dur = q / 1e-3 * 3600
        for half, sign in ((0, 1.0), (1, -1.0)):
            tt = t + np.linspace(0, dur, points, endpoint=False)
            soc = np.linspace(0, 1, points) if sign > 0 else np.linspace(1, 0, points)
            frames.append(
                pl.DataFrame(
                    {
                        "channel": channel,
                        "test_time_second": tt,
                        "unix_time_second": t0 + tt,
                        "voltage_volt": 3.4 + 0.8 * soc + 0.05 * sign,
                        "current_ampere": np.full(points, sign * 1e-3),
                        "cycle_count": np.full(points, c, dtype=np.int32),
                        "step_count": np.full(points, 2 * c - 1 + half, dtype=np.int32),
                        "step_index": np.full(points, half, dtype=np.int32),
                        "temperature_celsius": np.full(points, 25.0),
                    }
                )
            )
            t += dur
    return pl.concat(frames)


def spectrum_frame(
    r0: float = 20.0, r1: float = 50.0, c1: float = 1e-6, *, t0_unix: float = 1.7e9
) -> pl.DataFrame:
    """One impedance sweep of R0 + (R1 || C1), 1 MHz to 1 Hz, 10 points per decade."""
    f = np.logspace(6, 0, 61)
    z = r0 + r1 / (1 + 2j * np.pi * f * r1 * c1)
    t = np.arange(f.size, dtype=float)
    return pl.DataFrame(
        {
            "channel": "ch1",
            "sweep_index": np.zeros(f.size, dtype=np.int32),
            "test_time_second": t,
            "unix_time_second": t0_unix + t,
            "frequency_hertz": f,
            "z_real_ohm": z.real,
            "z_imag_ohm": z.imag,
        }
    )


def make_run(
    root: Path,
    *,
    run_id: str | None = None,
    cycles: int = 3,
    pieces: int = 3,
    close: bool = True,
    spectra: bool = False,
    t0_unix: float | None = None,
):
    """A recorded cycling run in ``root``: samples in ``pieces`` sealed segments, events too.

    Returns the run folder, or ``(folder, writer)`` with ``close=False`` (journal rows left).
    """
    df = cycling_frame(cycles, t0_unix=t0_unix)
    w = create_run(root, meta(run_id))
    w.event("run_start", "started")
    if spectra:
        w.append("spectra", spectrum_frame(t0_unix=float(df["unix_time_second"][0])))
    for i, part in enumerate(np.array_split(np.arange(df.height), pieces)):
        w.append("samples", df[int(part[0]) : int(part[-1]) + 1])
        w.event("note", f"piece {i}", data={"i": i})
        if close or i < pieces - 1:
            w.seal()
    if not close:
        return w.path, w
    w.close()
    return w.path


def live_writer(root: Path, channels: int, hz: float, seconds: float, seal_every: float) -> None:
    w = create_run(root, meta(), seal_interval_s=seal_every)
    print(f"run {w.path}", flush=True)
    names = [f"ch{i:02d}" for i in range(channels)]
    period = 1.0 / hz
    start = time.time()
    n = 0
    tick = time.monotonic()
    while time.time() - start < seconds:
        now = time.time()
        k = np.arange(channels)
        w.append(
            "samples",
            pl.DataFrame(
                {
                    "channel": names,
                    "test_time_second": np.full(channels, now - start),
                    "unix_time_second": np.full(channels, now),
                    "voltage_volt": 3.7 + 1e-4 * k,
                    "current_ampere": np.full(channels, 1e-3),
                    "cycle_count": np.ones(channels, dtype=np.int32),
                    "step_count": np.ones(channels, dtype=np.int32),
                    "step_index": np.zeros(channels, dtype=np.int32),
                }
            ),
        )
        n += channels
        if n // channels % 10 == 1:
            w.event("note", f"{n} rows", data={"rows": n})
        print(f"ack {n} {now:.3f}", flush=True)
        tick += period
        time.sleep(max(0.0, tick - time.monotonic()))
    w.close()
    print("closed", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--hz", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--seal-every", type=float, default=1.0)
    a = ap.parse_args()
    live_writer(a.root, a.channels, a.hz, a.seconds, a.seal_every)
    sys.exit(0)
