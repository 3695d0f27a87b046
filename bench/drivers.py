"""Benchmark: instrument round trips through cellbench against the bare wire, in the same run.

    python bench/drivers.py [--queries 2000] [--sweeps 50]

The simulators run in a separate process (``cellbench sim serve fixtures/stations/
sim_pellet.toml``: Keithley 2450 and E4990A on loopback TCP, Espec chamber on a pty), so the
client process times only the client, as against a real instrument. Each figure alternates a
cellbench operation and its reference operation, so load from elsewhere hits both alike.

1. ``*IDN?`` round trip: cellbench ``Transport.query`` (pyvisa + pyvisa-py underneath) beside a
   plain pyvisa-py ``resource.query`` and a raw socket (``sendall`` + ``recv`` to the newline).
2. A measurement: ``Keithley2450.measure()`` (one compound ``:READ? ...;:OUTP?`` query, parsed
   into a Reading) beside the same line over a raw socket.
3. An E4990A sweep of 50 points (1 kHz..10 MHz): ``KeysightE4990A.sweep()`` (configure, error
   check, trigger, ``*OPC?``, three data queries, a polars frame) beside the same lines over a raw
   socket. The simulated sweep takes ~0.1 s of simulated time = 0.1 ms at the station's time
   scale 1000, so the figure is protocol + driver overhead; a real E4990A adds its measurement
   time (seconds at low frequency).
4. Serial: ``SerialTransport.query("TEMP?")`` to the simulated Espec chamber over its pty beside
   raw ``os.write``/``os.read`` on the same pty.

Figures: p50 and p99 of per-operation wall times, ms; ratio = cellbench p50 / reference p50.
"""

from __future__ import annotations

import argparse
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Callable

import numpy as np

from cellbench.drivers.e4990a import KeysightE4990A
from cellbench.drivers.keithley2450 import Keithley2450
from cellbench.drivers.transport import open_transport, resource_manager, visa_library

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


STATION = os.path.join(ROOT, "fixtures", "stations", "sim_pellet.toml")


def timed_pair(
    ours: Callable[[], object], ref: Callable[[], object], repeat: int, warmup: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Per-call wall times of ``ours`` and ``ref``, alternating call by call."""
    for _ in range(warmup):
        ours()
        ref()
    a, b = np.empty(repeat), np.empty(repeat)
    for k in range(repeat):
        t0 = time.perf_counter()
        ours()
        t1 = time.perf_counter()
        ref()
        t2 = time.perf_counter()
        a[k], b[k] = t1 - t0, t2 - t1
    return a, b


def start_simulators() -> tuple[subprocess.Popen, dict[str, str]]:
    """``cellbench sim serve`` in a child process; its name -> address lines."""
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "cellbench.cli", "sim", "serve", STATION],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    addresses = {}
    while len(addresses) < 4:
        try:
            name, _driver, address = lines.get(timeout=60).rstrip("\n").split("\t")
        except queue.Empty:
            proc.kill()
            log.seek(0)
            raise SystemExit(f"cellbench sim serve did not start:\n{log.read()}") from None
        addresses[name] = address
    return proc, addresses


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=2000, help="round trips per figure")
    parser.add_argument("--sweeps", type=int, default=50, help="E4990A sweeps per figure")
    args = parser.parse_args()
    n = args.queries
    proc, addresses = start_simulators()
    rows: list[str] = []
    try:
        smu_address, eis_address = addresses["smu1"], addresses["zanalyzer"]
        # 1. *IDN? round trip
        transport = open_transport(smu_address, timeout_s=2.0)
        resource = resource_manager().open_resource(
            smu_address, read_termination="\n", write_termination="\n", timeout=2000
        )
        raw = RawSocket(smu_address)
        ours, ref = timed_pair(lambda: transport.query("*IDN?"), lambda: resource.query("*IDN?"), n)
        rows.append(row("`*IDN?`, cellbench Transport", ours, ref, "plain pyvisa-py query"))
        ours, ref = timed_pair(lambda: transport.query("*IDN?"), lambda: raw.query("*IDN?"), n)
        rows.append(row("`*IDN?`, cellbench Transport", ours, ref, "raw socket"))
        ours, ref = timed_pair(lambda: resource.query("*IDN?"), lambda: raw.query("*IDN?"), n)
        rows.append(row("`*IDN?`, plain pyvisa-py (not cellbench)", ours, ref, "raw socket"))
        # the same resource through VisaTransport (what a named VISA library gets)
        visa_t = open_transport(smu_address, timeout_s=2.0, library=visa_library())
        ours, ref = timed_pair(lambda: visa_t.query("*IDN?"), lambda: resource.query("*IDN?"), n)
        rows.append(row("`*IDN?`, cellbench VisaTransport", ours, ref, "plain pyvisa-py query"))
        visa_t.close()
        transport.close()
        resource.close()

        # 2. a measurement
        smu = Keithley2450(smu_address, timeout_s=2.0)
        smu.source_current(1e-5, voltage_limit_volt=1.0)
        line = ':READ? "defbuffer1", READ, SOUR, REL;:OUTP?'
        ours, ref = timed_pair(smu.measure, lambda: raw.query(line), n)
        rows.append(row("Keithley2450.measure()", ours, ref, "raw socket, same line"))
        smu.safe_state()
        smu.close()
        raw.close()

        # 2b. a source set-up (6 writes and a query): the default raw-socket transport sets
        # TCP_NODELAY; through pyvisa-py's public API it cannot (0.8: no setter registered),
        # so each write after the first waits on Nagle's algorithm and the delayed ACK
        timings = {}
        for label, options in (("SocketTransport", {}), ("VisaTransport", {"library": "@py"})):
            smu = Keithley2450(
                smu_address, transport=open_transport(smu_address, timeout_s=2.0, **options)
            )
            samples = []
            for k in range(max(10, n // 20)):
                t0 = time.perf_counter()
                smu.source_current(1e-5 * (1 + k % 2), voltage_limit_volt=1.0 + 0.1 * (k % 2))
                samples.append(time.perf_counter() - t0)
            timings[label] = np.asarray(samples)
            smu.safe_state()
            smu.close()
        rows.append(
            row(
                "Keithley2450.source_current(), SocketTransport",
                timings["SocketTransport"],
                timings["VisaTransport"],
                "VisaTransport (pyvisa-py)",
            )
        )

        # 3. E4990A sweep, 50 points
        eis = KeysightE4990A(eis_address, timeout_s=5.0)
        ppd = 49 / 4  # 1 kHz..10 MHz = 4 decades -> 50 points
        assert eis.sweep(1e3, 1e7, ppd, 0.1).height == 50
        lines = [
            ":SENS1:SWE:TYPE LOG",
            ":SENS1:FREQ:STAR 1000",
            ":SENS1:FREQ:STOP 10000000",
            ":SENS1:SWE:POIN 50",
            ":SOUR1:MODE VOLT",
            ":SOUR1:VOLT 0.1",
            ":SOUR1:BIAS:STAT OFF",
        ]
        eraw = RawSocket(eis_address)

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

        ours, ref = timed_pair(lambda: eis.sweep(1e3, 1e7, ppd, 0.1), raw_sweep, args.sweeps, 3)
        rows.append(row("E4990A 50-point sweep()", ours, ref, "raw socket, same lines"))
        eis.close()
        eraw.close()

        # 4. serial: the simulated Espec chamber behind its pty
        path = addresses["chamber"]
        serial_t = open_transport(
            path,
            timeout_s=2.0,
            read_termination="\r\n",
            write_termination="\r\n",
            exclusive=False,
        )
        fd = os.open(os.path.realpath(path), os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd)

        def raw_pty() -> None:
            os.write(fd, b"TEMP?\r\n")
            got = b""
            while not got.endswith(b"\r\n"):
                select.select([fd], [], [], 1.0)
                got += os.read(fd, 256)

        ours, ref = timed_pair(lambda: serial_t.query("TEMP?"), raw_pty, n)
        rows.append(row("pty `TEMP?`, cellbench SerialTransport", ours, ref, "raw os.write/read"))
        serial_t.close()
        os.close(fd)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)

    print(
        f"cellbench drivers bench: {n} round trips, {args.sweeps} sweeps per figure; "
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
        f"{visa_library()!r}; simulators in a child process"
    )


if __name__ == "__main__":
    main()
