"""start_simulators: one cell shared by every simulator; errors name the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellbench.core.clock import ScaledClock
from cellbench.drivers.registry import DRIVERS, UnknownDriverError, open_instrument
from cellbench.drivers.sim.bench import (
    SIMULATORS,
    StationSimulationError,
    load_simulator,
    start_simulators,
)

ROOT = Path(__file__).resolve().parents[1]


def test_every_driver_has_a_simulator_and_both_import():
    assert set(SIMULATORS) == set(DRIVERS)
    for name in SIMULATORS:
        assert callable(load_simulator(name))


def test_shared_cell_between_smu_and_impedance_analyzer():
    station = {
        "simulation": {
            "cell_params": {"name": "inline pellet", "interface_asr_ohm_cm2": 80.0},
            "seed": 4,
        },
        "instrument": [
            {"name": "smu", "driver": "keithley2450", "address": "sim"},
            {"name": "eis", "driver": "e4990a", "address": "sim"},
            {"name": "real", "driver": "keithley2450", "address": "TCPIP::10.1.2.3::5025::SOCKET"},
        ],
    }
    clock = ScaledClock(1000.0)
    with start_simulators(station, ROOT, clock=clock) as bench:
        assert set(bench.simulators) == {"smu", "eis"}
        assert bench.cell.clock is clock and bench.cell.params.name == "inline pellet"
        assert bench.address_of(station["instrument"][2]) == "TCPIP::10.1.2.3::5025::SOCKET"
        smu = open_instrument("keithley2450", bench.addresses["smu"], timeout_s=2.0)
        eis = open_instrument("e4990a", bench.addresses["eis"], timeout_s=5.0)
        smu.source_current(1e-4, voltage_limit_volt=1.0)
        assert bench.cell.mode == "current"  # the SMU drives the same cell the analyzer sees
        smu.safe_state()
        frame = eis.sweep(1e3, 1e6, 2, 0.05)
        assert frame.height == 7
        bench.faults("smu").inject("no_reply")
        assert bench.faults("smu").armed("no_reply")
        smu.close()
        eis.close()
    assert bench.simulators == {}


def test_errors_name_the_problem():
    with pytest.raises(StationSimulationError, match=r"\[simulation\]"):
        start_simulators(
            {"instrument": [{"name": "a", "driver": "e4990a", "address": "sim"}]}, ROOT
        )
    station = {
        "simulation": {"cell": "fixtures/sim/llzo_symmetric.toml"},
        "instrument": [{"name": "x", "driver": "nosuch", "address": "sim"}],
    }
    with pytest.raises(UnknownDriverError, match="nosuch"):
        start_simulators(station, ROOT)
    with pytest.raises(UnknownDriverError, match="keithley2450"):
        open_instrument("keithly2450", "TCPIP::1.2.3.4::5025::SOCKET")
