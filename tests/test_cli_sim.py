"""``cellbench sim serve``: starts the station's simulators, prints addresses, stops on SIGTERM."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cellbench.daq.cli import main
from cellbench.drivers.registry import open_instrument

ROOT = Path(__file__).resolve().parents[1]
STATION = ROOT / "fixtures" / "stations" / "sim_pellet.toml"


def _read_lines(proc: subprocess.Popen, count: int, timeout_s: float) -> list[str]:
    """``count`` stdout lines, waiting at most ``timeout_s`` (a reader thread never blocks us)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    out: list[str] = []
    while len(out) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {out} within {timeout_s} s"
        try:
            out.append(lines.get(timeout=remaining))
        except queue.Empty:
            continue
    return out


def test_sim_serve_prints_addresses_and_stops_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "cellbench.daq.cli", "sim", "serve", str(STATION)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines = _read_lines(proc, 4, timeout_s=30.0)
        rows = {line.split("\t")[0]: line.split("\t") for line in lines}
        assert set(rows) == {"smu1", "zanalyzer", "chamber", "gauge"}
        assert rows["smu1"][1] == "keithley2450"
        assert rows["smu1"][2].startswith("TCPIP::127.0.0.1::")
        assert Path(rows["chamber"][2]).exists()
        smu = open_instrument("keithley2450", rows["smu1"][2], name="smu1", timeout_s=2.0)
        assert "MODEL 2450" in smu.identify()
        smu.close()
        eis = open_instrument("e4990a", rows["zanalyzer"][2], timeout_s=5.0)
        assert eis.sweep(1e3, 1e6, 2, 0.1).height == 7
        eis.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
    assert code == 0


def test_sim_serve_without_simulated_instruments(tmp_path, capsys):
    station = tmp_path / "real.toml"
    station.write_text(
        '[cell]\nname = "c"\nchemistry = "x"\narea_cm2 = 1.0\n\n'
        '[[instrument]]\nname = "smu"\ndriver = "keithley2450"\n'
        'address = "TCPIP::10.0.0.5::5025::SOCKET"\nroles = ["source"]\nchannel = "c1"\n'
    )
    assert main(["sim", "serve", str(station)]) == 1
    assert "no instrument has address" in capsys.readouterr().err


def test_sim_serve_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["sim", "serve", "--help"])
    assert info.value.code == 0
    assert "TCPIP::127.0.0.1::PORT::SOCKET" in capsys.readouterr().out
