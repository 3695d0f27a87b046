"""Benchmark: serial drivers against their pty simulators, beside bare pyserial on the same port.

For each simulated serial instrument: the median round trip of one query through the cellbench
driver (transport lock, terminations, typed parsing, validation) and through bare pyserial
(``write`` + ``read_until``) on the same pseudo-terminal; and the time of an impedance sweep
(Hioki IM3590 point by point, PalmSens EmStat MethodSCRIPT EIS; 100 kHz..1 Hz, 10 points per
decade, 51 points) through the driver and through bare pyserial sending the same bytes. The
simulated cell runs 10^6 x faster than real time so measurement times are negligible: the figures
are the software and pty overheads.

Run:  python bench/serial_instruments.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

import serial

from cellbench.core.clock import ScaledClock
from cellbench.drivers.espec import EspecChamber
from cellbench.drivers.hioki_im3590 import HiokiIM3590, format_number, log_frequencies
from cellbench.drivers.mark10 import Mark10Gauge
from cellbench.drivers.palmsens_emstat import PalmSensEmStat
from cellbench.drivers.sim.cell import CellParams, SimCell
from cellbench.drivers.sim.chamber_gauge import EspecSimulator, Mark10Simulator
from cellbench.drivers.sim.emstat import EmStatSimulator
from cellbench.drivers.sim.hioki import IM3590Simulator


def median_time(action, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        action()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def raw_port(address: str) -> serial.Serial:
    return serial.Serial(address, 9600, timeout=2.0)


def raw_query(port: serial.Serial, command: bytes, end: bytes) -> bytes:
    port.write(command)
    return port.read_until(end)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200, help="queries per figure (median)")
    parser.add_argument("--sweeps", type=int, default=5, help="sweeps per figure (median)")
    args = parser.parse_args()
    cell = SimCell(CellParams(), clock=ScaledClock(1e6), seed=1)
    rows: list[tuple[str, float, float]] = []

    with EspecSimulator(cell) as sim:
        with EspecChamber(sim.address, timeout_s=2.0) as drv:
            cb = median_time(drv.read_temperature_celsius, args.repeat)
        with raw_port(sim.address) as port:
            ref = median_time(lambda: raw_query(port, b"TEMP?\r\n", b"\r\n"), args.repeat)
        rows.append(("espec TEMP? round trip, ms", cb * 1e3, ref * 1e3))

    with Mark10Simulator(cell) as sim:
        with Mark10Gauge(sim.address, timeout_s=2.0, area_cm2=0.785) as drv:
            cb = median_time(drv.read_pressure_megapascal, args.repeat)
        with raw_port(sim.address) as port:
            ref = median_time(lambda: raw_query(port, b"?\r", b"\r\n"), args.repeat)
        rows.append(("mark10 ? round trip, ms", cb * 1e3, ref * 1e3))

    frequencies = log_frequencies(100e3, 1.0, 10)
    with IM3590Simulator(cell, noise_relative=1e-3) as sim:
        with HiokiIM3590(sim.address, timeout_s=2.0) as drv:
            cb = median_time(drv.identify, args.repeat)
            cb_sweep = median_time(lambda: drv.sweep(100e3, 1.0, 10, 0.01), args.sweeps)
        with raw_port(sim.address) as port:
            ref = median_time(lambda: raw_query(port, b"*IDN?\r\n", b"\r\n"), args.repeat)

            def raw_sweep() -> None:
                for f in frequencies:  # the driver's lines: external trigger, *TRG per point
                    port.write(f":FREQ {format_number(f)}\r\n*TRG\r\n".encode())
                    raw_query(port, b":MEAS?\r\n", b"\r\n")

            ref_sweep = median_time(raw_sweep, args.sweeps)
        rows.append(("im3590 *IDN? round trip, ms", cb * 1e3, ref * 1e3))
        rows.append(
            (f"im3590 sweep {len(frequencies)} points, ms", cb_sweep * 1e3, ref_sweep * 1e3)
        )

    with EmStatSimulator(cell, noise_relative=1e-3) as sim:
        with PalmSensEmStat(sim.address, timeout_s=2.0) as drv:
            cb_sweep = median_time(lambda: drv.sweep(100e3, 1.0, 10, 0.01), args.sweeps)
            script = drv.eis_script((100e3, 1.0), len(frequencies), 0.01, 0.0)
        with raw_port(sim.address) as port:

            def raw_eis() -> None:
                port.write(("e\n" + "\n".join(script) + "\n\n").encode())
                while port.readline() != b"\n":
                    pass

            ref_sweep = median_time(raw_eis, args.sweeps)
        rows.append((f"emstat EIS {len(frequencies)} points, ms", cb_sweep * 1e3, ref_sweep * 1e3))

    width = max(len(r[0]) for r in rows)
    print(f"{'metric (median)':<{width}} | {'cellbench':>9} | {'pyserial':>9} | ratio")
    print("-" * (width + 36))
    for name, cb, ref in rows:
        print(f"{name:<{width}} | {cb:9.3f} | {ref:9.3f} | {cb / ref:5.2f}")


if __name__ == "__main__":
    main()
