"""Benchmark: a 64-channel status poll of a Maccor (MacNet) and a Neware (BTS API) cycler through
cellbench's drivers, beside a bare socket exchanging the same messages, in the same run.

    python bench/cyclers.py [--polls 30]

The simulators run in a child process (``cellbench sim serve`` of a 64-channel Maccor station
and a 64-channel BTS station written to a temporary folder), so this process times only the
client. One full poll reads all 64 channels once:

1. Maccor: 64 ``MaccorChannel.status()`` calls, (4, 7) JSON-RPC each, every channel on its own
   connection as the engine opens them, beside one bare socket sending the same 64 JSON requests
   and reading each reply to its closing brace (``json.loads``, nothing else).
2. Neware: 64 ``NewareChannel.inquire()`` calls (one ``inquire`` per channel, as the engine
   polls a channel), beside one bare socket sending the same 64 XML messages and reading each
   reply to BTS's ``\\n\\n#\\r\\n`` terminator (no parsing).

Figures: p50 and p99 of the time per full poll, ms; ratio = cellbench p50 / bare p50. Polls
alternate (cellbench, bare, cellbench, ...) so load from elsewhere hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable

import numpy as np

from cellbench.drivers.maccor import MaccorChannel
from cellbench.drivers.neware import HEADER, TERMINATION, NewareChannel
from cellbench.drivers.transport import json_object_end
from drivers import timed_pair  # bench/drivers.py: per-call times of ours and the reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CELL = os.path.join(ROOT, "fixtures", "sim", "sulfide_full_cell.toml")
CHANNELS = 64

STATION = """
[cell]
nominal_capacity_ah = 0.002
[simulation]
cell = "{cell}"
time_scale = 1.0
[[instrument]]
name = "maccor"
driver = "maccor"
address = "sim"
roles = ["source"]
channel = "a"
[instrument.simulator]
channels = 64
[[instrument]]
name = "bts"
driver = "neware"
address = "sim"
roles = ["source"]
channel = "b"
[instrument.options]
pipeline = "21-1-1"
[instrument.simulator]
subdevices = 8
channels_per_subdevice = 8
"""


def start_simulators(folder: str) -> tuple[subprocess.Popen, dict[str, str]]:
    path = os.path.join(folder, "cyclers64.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(STATION.format(cell=CELL))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cellbench.cli", "sim", "serve", path],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    addresses: dict[str, str] = {}
    assert proc.stdout is not None
    while len(addresses) < 2:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("the simulators did not start")
        if line.startswith("#"):
            continue
        name, _, address = line.strip().split("\t")
        addresses[name] = address
    return proc, addresses


def endpoint(address: str) -> tuple[str, int]:
    parts = address.split("::")
    return parts[1], int(parts[2])


def bare_maccor(sock: socket.socket) -> Callable[[], None]:
    messages = [
        json.dumps(
            {"jsonrpc": "2.0", "method": "MacNet",
             "params": {"FClass": 4, "FNum": 7, "Chan": k}, "id": k + 1},
            separators=(",", ":"),
        ).encode()
        for k in range(CHANNELS)
    ]  # fmt: skip

    def poll() -> None:
        buffer = bytearray()
        for message in messages:
            sock.sendall(message)
            while (end := json_object_end(buffer)) is None:
                buffer.extend(sock.recv(65536))
            json.loads(bytes(buffer[:end]))
            del buffer[:end]

    return poll


def bare_neware(sock: socket.socket, pipelines: list[str]) -> Callable[[], None]:
    term = TERMINATION.encode()
    messages = []
    for p in pipelines:
        dev, sub, chl = p.split("-")
        messages.append(
            (
                HEADER + '<cmd>inquire</cmd><list count = "1"><inquire ip="127.0.0.1" '
                f'devtype="27" devid="{dev}" subdevid="{sub}" chlid="{chl}" aux="0" '
                'barcode="1">true</inquire></list></bts>' + TERMINATION
            ).encode()
        )

    def poll() -> None:
        buffer = b""
        for message in messages:
            sock.sendall(message)
            while term not in buffer:
                buffer += sock.recv(65536)
            buffer = buffer[buffer.index(term) + len(term) :]

    return poll


def row(label: str, ours: np.ndarray, ref: np.ndarray) -> None:
    p50a, p99a = np.percentile(ours, [50, 99]) * 1e3
    p50b, p99b = np.percentile(ref, [50, 99]) * 1e3
    print(
        f"| {label} | {p50a:.2f} ms (p99 {p99a:.2f}) | {p50b:.2f} ms (p99 {p99b:.2f}) "
        f"| {p50a / p50b:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--polls", type=int, default=30, help="full polls per figure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        proc, addresses = start_simulators(folder)
        try:
            maccor = [
                MaccorChannel(addresses["maccor"], channel=k, control="monitor")
                for k in range(CHANNELS)
            ]
            pipelines = [f"21-{s}-{c}" for s in range(1, 9) for c in range(1, 9)]
            bts = [NewareChannel(addresses["bts"], pipeline=p) for p in pipelines]
            for ch in bts:
                ch.identify()  # device info read once per channel (as at the run's start)
            with (
                socket.create_connection(endpoint(addresses["maccor"])) as ms,
                socket.create_connection(endpoint(addresses["bts"])) as ns,
            ):
                for s in (ms, ns):
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                ns.sendall(
                    (HEADER + "<cmd>connect</cmd><username>admin</username><password>neware"
                     "</password><type>bfgs</type></bts>" + TERMINATION).encode()
                )  # fmt: skip
                ns.recv(65536)
                print(f"| 64-channel status poll ({args.polls} polls) | cellbench | bare socket "
                      "| ratio |")  # fmt: skip
                print("| --- | --- | --- | --- |")
                a, b = timed_pair(
                    lambda: [c.status() for c in maccor], bare_maccor(ms), args.polls, warmup=3
                )
                row("Maccor MacNet (4, 7) x 64", a, b)
                a, b = timed_pair(
                    lambda: [c.inquire() for c in bts],
                    bare_neware(ns, pipelines),
                    args.polls,
                    warmup=3,
                )
                row("Neware BTS inquire x 64", a, b)
            for ch in [*maccor, *bts]:
                ch.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
