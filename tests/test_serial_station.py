"""Every serial driver opened through the registry on simulators that share one cell."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cellbench.drivers.registry import open_instrument
from cellbench.drivers.roles import (
    ImpedanceAnalyzer,
    PressureGauge,
    SourceMeter,
    TemperatureController,
)
from cellbench.drivers.sim.bench import start_simulators

STATION = {
    "cell": {"name": "pellet", "area_cm2": 0.785},
    "simulation": {
        "cell_params": {"area_cm2": 0.785, "thermal_tau_s": 100.0},
        "time_scale": 2000.0,
        "seed": 3,
    },
    "instrument": [
        {
            "name": "eis1",
            "driver": "im3590",
            "address": "sim",
            "simulator": {"noise_relative": 1e-3},
        },
        {"name": "acir", "driver": "bt3562", "address": "sim"},
        {"name": "pstat", "driver": "emstat", "address": "sim"},
        {"name": "chamber", "driver": "espec", "address": "sim"},
        {"name": "gauge", "driver": "mark10", "address": "sim", "options": {"area_cm2": 0.785}},
    ],
}


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    bench = start_simulators(STATION, tmp_path_factory.mktemp("station"))
    instruments = {
        item["name"]: open_instrument(
            item["driver"],
            bench.addresses[item["name"]],
            name=item["name"],
            timeout_s=0.5,
            **item.get("options", {}),
        )
        for item in STATION["instrument"]
    }
    yield bench, instruments
    for instrument in instruments.values():
        instrument.safe_state()
        instrument.close()
    bench.stop()


def test_addresses_share_one_link_folder(station):
    bench, _ = station
    folders = {address.rsplit("/", 1)[0] for address in bench.addresses.values()}
    assert len(folders) == 1
    assert sorted(a.rsplit("/", 1)[1] for a in bench.addresses.values()) == sorted(
        ["eis1", "acir", "pstat", "chamber", "gauge"]
    )


def test_roles(station):
    _, inst = station
    assert isinstance(inst["eis1"], ImpedanceAnalyzer)
    assert isinstance(inst["pstat"], ImpedanceAnalyzer) and isinstance(inst["pstat"], SourceMeter)
    assert isinstance(inst["chamber"], TemperatureController)
    assert isinstance(inst["gauge"], PressureGauge)
    for instrument in inst.values():
        assert instrument.identify()


def test_instruments_see_the_same_cell(station):
    bench, inst = station
    cell = bench.cell
    assert inst["gauge"].read_pressure_megapascal() == pytest.approx(
        cell.pressure_megapascal, rel=1e-3
    )
    hioki = inst["eis1"].sweep(10e3, 100.0, 2, 0.01)
    emstat = inst["pstat"].sweep(10e3, 100.0, 2, 0.01)
    np.testing.assert_allclose(hioki["frequency_hertz"], emstat["frequency_hertz"], rtol=1e-6)
    z_h = hioki["z_real_ohm"].to_numpy() + 1j * hioki["z_imag_ohm"].to_numpy()
    z_e = emstat["z_real_ohm"].to_numpy() + 1j * emstat["z_imag_ohm"].to_numpy()
    assert np.abs(z_h - z_e).max() / np.abs(z_e).max() < 1e-2
    r_1khz = inst["acir"].read_resistance_ohm()
    assert r_1khz == pytest.approx(cell.impedance(1000.0)[0].real, rel=1e-2)


def test_heating_the_chamber_lowers_the_measured_resistance(station):
    _, inst = station
    cold = inst["acir"].read_resistance_ohm()
    inst["chamber"].set_temperature_celsius(70.0)
    time.sleep(0.5)  # 1000 s simulated: 10 thermal time constants
    assert inst["chamber"].read_temperature_celsius() == pytest.approx(70.0, abs=0.5)
    hot = inst["acir"].read_resistance_ohm()
    assert hot < 0.8 * cold  # Arrhenius electrolyte conducts better when hot
    inst["chamber"].safe_state()
