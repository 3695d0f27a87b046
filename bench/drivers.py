"""Benchmark: instrument round trips through cellbench against the bare wire, in the same run.

    python bench/drivers.py [--queries 2000] [--sweeps 30]

Against the simulated Keithley 2450 and Keysight E4990A on loopback TCP (and a pty for serial):

1. ``*IDN?`` round trip: cellbench ``Transport.query`` (pyvisa + pyvisa-py underneath) beside a
   plain pyvisa-py ``resource.query`` and a raw socket (``sendall`` + ``recv`` to the newline):
   what the cellbench layer costs, and what VISA costs over the socket itself.
2. A measurement: ``Keithley2450.measure()`` (one compound ``:READ? ...;:OUTP?`` query, parsed
   into a Reading) beside the same line over a raw socket.
3. An E4990A sweep of 50 points (1 kHz..10 MHz): ``KeysightE4990A.sweep()`` (configure, error
   check, trigger, ``*OPC?``, three data queries) beside the same command lines sent over a raw
   socket. The simulator's sweep itself takes no time here (``sweep_time_factor=0``), so the
   figure is pure protocol + driver overhead; a real E4990A adds its measurement time.
4. Serial: ``SerialTransport.query`` over a pty beside raw ``os.write``/``os.read`` on the pty.

Figures are medians (p50) and 99th percentiles of per-operation wall times; simulators run in
this process (their threads compete for the same cores as the client — as in a test).
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import sys
import threading
import time
import tty
from collections.abc import Callable

import numpy as np

from cellbench.drivers.e4990a import KeysightE4990A
from cellbench.drivers.keithley2450 import Keithley2450
from cellbench.drivers.sim.cell import SimCell, load_cell_params
from cellbench.drivers.sim.clock import ScaledClock
from cellbench.drivers.sim.e4990a_sim import E4990ASimulator
from cellbench.drivers.sim.keithley2450_sim import Keithley2450Simulator
from cellbench.drivers.transport import open_transport, resource_manager, visa_library

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(fn: Callable[[], object], repeat: int, warmup: int = 20) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(repeat)
    for k in range(repeat):
        t0 = time.perf_counter()
        fn()
        out[k] = time.perf_counter() - t0
    return out


class RawSocket:
    """The reference: one TCP socket, newline-terminated lines, nothing else."""

    def __init__(self, address: str):
        _, host, port, _ = address.split("::")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def write(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def query(self, line: str) -> str:
        self.write(line)
        while b"\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        reply, _, self.buffer = self.buffer.partition(b"\n")
        return reply.decode()

    def close(self) -> None:
        self.sock.close()


def row(what: str, ours: np.ndarray, ref: np.ndarray, ref_name: str) -> str:
    p50, p99 = np.percentile(ours, 50) * 1e3, np.percentile(ours, 99) * 1e3
    r50, r99 = np.percentile(ref, 50) * 1e3, np.percentile(ref, 99) * 1e3
    return (
        f"| {what} | {p50:.3f} / {p99:.3f} | {ref_name}: {r50:.3f} / {r99:.3f} | {p50 / r50:.2f} |"
    )


def pty_echo() -> tuple[str, Callable[[], None]]:
    """A pty whose far end answers every CR-terminated line with ``OK``; returns (path, stop)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()

    def serve() -> None:
        buffer = b""
        while not stop.is_set():
            ready, _, _ = select.select([master], [], [], 0.05)
            if not ready:
                continue
            buffer += os.read(master, 4096)
            while b"\r" in buffer:
                _, _, buffer = buffer.partition(b"\r")
                os.write(master, b"OK\r")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def close() -> None:
        stop.set()
        thread.join(1)
        os.close(master)
        os.close(slave)

    return os.ttyname(slave), close


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=2000, help="round trips per figure")
    parser.add_argument("--sweeps", type=int, default=30, help="E4990A sweeps per figure")
    args = parser.parse_args()

    params = load_cell_params(os.path.join(ROOT, "fixtures", "sim", "sulfide_full_cell.toml"))
    cell = SimCell(params, clock=ScaledClock(1000.0), seed=0)
    rows: list[str] = []
    with (
        Keithley2450Simulator(cell) as smu_sim,
        E4990ASimulator(cell, sweep_time_factor=0.0) as eis_sim,
    ):
        # 1. *IDN? round trip
        transport = open_transport(smu_sim.address, timeout_s=2.0)
        ours = timed(lambda: transport.query("*IDN?"), args.queries)
        transport.close()
        resource = resource_manager().open_resource(
            smu_sim.address, read_termination="\n", write_termination="\n", timeout=2000
        )
        plain = timed(lambda: resource.query("*IDN?"), args.queries)
        resource.close()
        raw = RawSocket(smu_sim.address)
        bare = timed(lambda: raw.query("*IDN?"), args.queries)
        rows.append(row("`*IDN?` round trip, cellbench Transport", ours, plain, "pyvisa query"))
        rows.append(row("`*IDN?` round trip, cellbench Transport", ours, bare, "raw socket"))
        rows.append(row("`*IDN?` round trip, plain pyvisa-py", plain, bare, "raw socket"))

        # 2. a measurement
        smu = Keithley2450(smu_sim.address, timeout_s=2.0)
        smu.source_current(1e-4, voltage_limit_volt=4.3)
        line = ':READ? "defbuffer1", READ, SOUR, REL;:OUTP?'
        ours = timed(smu.measure, args.queries)
        bare = timed(lambda: raw.query(line), args.queries)
        rows.append(row("Keithley2450.measure()", ours, bare, "raw socket, same line"))
        smu.safe_state()
        smu.close()

        # 3. E4990A sweep, 50 points
        eis = KeysightE4990A(eis_sim.address, timeout_s=5.0)
        ppd = 49 / 4  # 1 kHz..10 MHz = 4 decades -> 50 points
        frame = eis.sweep(1e3, 1e7, ppd, 0.1)
        assert frame.height == 50, frame.height
        lines = [
            ":SENS1:SWE:TYPE LOG",
            ":SENS1:FREQ:STAR 1000",
            ":SENS1:FREQ:STOP 10000000",
            ":SENS1:SWE:POIN 50",
            ":SOUR1:MODE VOLT",
            ":SOUR1:VOLT 0.1",
            ":SOUR1:BIAS:STAT OFF",
        ]
        eraw = RawSocket(eis_sim.address)

        def raw_sweep() -> None:
            for text in lines:
                eraw.write(text)
            eraw.query(":SYST:ERR?")
            eraw.write(":TRIG:SING")
            eraw.query("*OPC?")
            for trace in (1, 2):
                eraw.write(f":CALC1:PAR{trace}:SEL")
                np.array(eraw.query(":CALC1:SEL:DATA:FDAT?").split(","), dtype=float)
            np.array(eraw.query(":SENS1:FREQ:DATA?").split(","), dtype=float)

        ours = timed(lambda: eis.sweep(1e3, 1e7, ppd, 0.1), args.sweeps, warmup=3)
        bare = timed(raw_sweep, args.sweeps, warmup=3)
        rows.append(
            row(
                "E4990A 50-point sweep, KeysightE4990A.sweep()",
                ours,
                bare,
                "raw socket, same lines",
            )
        )
        eis.close()
        eraw.close()
        raw.close()

    # 4. serial over a pty
    path, stop = pty_echo()
    serial_t = open_transport(path, timeout_s=2.0, read_termination="\r", write_termination="\r")
    ours = timed(lambda: serial_t.query("*IDN?"), args.queries)
    serial_t.close()
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)

    def raw_pty() -> None:
        os.write(fd, b"*IDN?\r")
        got = b""
        while not got.endswith(b"\r"):
            select.select([fd], [], [], 1.0)
            got += os.read(fd, 64)

    bare = timed(raw_pty, args.queries)
    os.close(fd)
    stop()
    rows.append(row("pty query, cellbench SerialTransport", ours, bare, "raw os.read/write"))

    print(
        f"cellbench drivers bench — {args.queries} round trips, {args.sweeps} sweeps; "
        "times in ms (p50 / p99); ratio = cellbench p50 / reference p50"
    )
    print()
    print("| figure | cellbench p50 / p99 | reference p50 / p99 | ratio |")
    print("| --- | --- | --- | --- |")
    for text in rows:
        print(text)
    print()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, VISA library "
        f"{visa_library()!r}; simulators run in this process"
    )


if __name__ == "__main__":
    main()
