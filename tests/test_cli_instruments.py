"""``cellbench instruments`` against running serial simulators (explicit --probe addresses)."""

from __future__ import annotations

import time

import pytest
from serial_sim_support import make_cell

from cellbench.cli.main import main
from cellbench.drivers.discovery import by_id_names, identify, list_visa_resources
from cellbench.drivers.sim.chamber_gauge import EspecSimulator, Mark10Simulator
from cellbench.drivers.sim.emstat import EmStatSimulator
from cellbench.drivers.sim.hioki import BT3562Simulator, IM3590Simulator


@pytest.fixture(scope="module")
def simulators():
    cell = make_cell()
    sims = {
        cls.driver: cls(cell).start()
        for cls in (
            IM3590Simulator,
            BT3562Simulator,
            EspecSimulator,
            Mark10Simulator,
            EmStatSimulator,
        )
    }
    yield sims
    for sim in sims.values():
        sim.stop()


def test_identify_each_simulator(simulators):
    expected = {
        "im3590": "HIOKI,IM3590,250123456,V2.01",
        "bt3562": "HIOKI,BT3562,250654321,V1.10",
        "espec": "P5.01 SIMULATED",
        "mark10": "lbF",
        "emstat": "tes4_hr 1.3",
    }
    for driver, sim in simulators.items():
        result = identify(sim.address, timeout_s=0.3)
        assert result.ok, (driver, result)
        assert result.driver == driver
        assert expected[driver] in result.identity
        assert sim.errors == []


def test_identify_reports_absent_and_silent_addresses(tmp_path):
    result = identify(str(tmp_path / "nothing-here"), timeout_s=0.2)
    assert not result.ok and "cannot open" in result.error
    result = identify("TCPIP::127.0.0.1::1::SOCKET", timeout_s=0.2)
    assert not result.ok and result.tried == ("scpi",)


def test_command_lists_and_identifies_probes(simulators, capsys):
    addresses = [sim.address for sim in simulators.values()]
    argv = ["instruments", "--only-probe", "--timeout", "0.3"]
    for address in addresses:
        argv += ["--probe", address]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ADDRESS", "KIND", "USB", "NAME", "DRIVER", "IDENTITY"]
    rows = {line.split()[0]: line for line in out[1:]}
    for driver, sim in simulators.items():
        assert sim.address in rows
        assert f" {driver} " in rows[sim.address]


def test_no_identify_sends_nothing(simulators, capsys):
    sim = simulators["espec"]
    before = len(sim.received)
    assert main(["instruments", "--no-identify", "--no-visa", "--probe", sim.address]) == 0
    out = capsys.readouterr().out
    assert sim.address in out and "IDENTITY" not in out
    time.sleep(0.05)
    assert len(sim.received) == before


def test_visa_listing_is_bounded():
    started = time.monotonic()
    ports, note = list_visa_resources(timeout_s=3.0)
    assert time.monotonic() - started < 4.0
    assert all(p.kind == "visa" and not p.address.startswith("ASRL") for p in ports)
    assert isinstance(note, str)


def test_by_id_names_follow_symlinks(tmp_path):
    target = tmp_path / "ttyUSB7"
    target.write_text("")
    folder = tmp_path / "by-id"
    folder.mkdir()
    (folder / "usb-FTDI_FT232R_USB_UART_A10KXYZ-if00-port0").symlink_to(target)
    (folder / "usb-other").symlink_to(tmp_path / "ttyUSB8")
    names = by_id_names(str(target), folder=str(folder))
    assert names == (str(folder / "usb-FTDI_FT232R_USB_UART_A10KXYZ-if00-port0"),)


def test_help_and_bad_timeout(capsys):
    with pytest.raises(SystemExit) as info:
        main(["instruments", "--help"])
    assert info.value.code == 0
    assert "--probe" in capsys.readouterr().out
    assert main(["instruments", "--only-probe", "--timeout", "0"]) == 1
    assert "--timeout must be > 0" in capsys.readouterr().err


def test_absent_probe_address_is_one_error_line_and_exit_1(tmp_path, capsys):
    absent = str(tmp_path / "ttyUSB9")
    assert main(["instruments", "--only-probe", "--timeout", "0.2", "--probe", absent]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"cellbench: error: cannot open serial port {absent}: "
        f"no such device (is the adapter plugged in?) (at {absent})"
    ]
