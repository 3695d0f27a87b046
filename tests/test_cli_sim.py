"""``cellbench sim serve``: starts the station's simulators, prints addresses, stops on SIGTERM."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cellbench.cli.main import main
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
        [sys.executable, "-m", "cellbench.cli", "sim", "serve", str(STATION)],
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


def test_console_commands_drive_the_running_bench():
    from cellbench.cli.sim import console_command
    from cellbench.daq.station import load_station
    from cellbench.drivers.sim.bench import start_simulators

    station = load_station(STATION)
    with start_simulators(station.raw, station.base_dir) as bench:
        assert (
            console_command(bench, "fault smu1 no_reply count=2 on=READ?")
            == "armed no_reply on smu1 (2 command(s))"
        )
        armed = bench.faults("smu1").armed("no_reply")
        assert armed[0].on == "READ?" and armed[0].remaining == 2
        console_command(bench, 'fault zanalyzer error_queue code=-222 message="Data out of range"')
        assert bench.faults("zanalyzer").armed()[0].message == "Data out of range"
        assert console_command(bench, "fault gauge late_reply forever delay=0.5").endswith(
            "(until cleared)"
        )
        console_command(bench, "clear")
        assert all(not sim.faults.armed() for sim in bench.simulators.values())
        console_command(bench, "pressure 12.5")
        console_command(bench, "chamber 60")
        truth = json.loads(console_command(bench, "truth"))
        assert truth["pressure_megapascal"] == 12.5
        assert truth["chamber_setpoint_celsius"] == 60.0
        for bad in (
            "fault nosuch no_reply",
            "fault smu1 melt",
            "fault smu1 no_reply x=1",
            "reboot",
        ):
            with pytest.raises(ValueError):
                console_command(bench, bad)
